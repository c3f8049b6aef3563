"""One summary row per run, from its meta.json and events: what History lists and sorts.

`SummaryFold` folds events one at a time, so the engine keeps its row current without re-reading
its own events file; `summarize` folds a whole file for the index rebuild.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fbt_engine.store.events import effective


@dataclass
class RunSummary:
    id: str
    name: str = ""
    status: str = "running"
    method: str = ""
    teacher: str = ""
    student: str = ""
    dataset: str = ""
    subset: int = 0  # data.subset: the training images of a slice, 0 for the whole dataset
    started: float = 0.0
    ended: float | None = None
    duration: float | None = None  # a running run's: to its last heartbeat (see elapsed)
    paused: float = 0.0  # the time between a run's segments, which its duration leaves out
    epochs_done: int = 0
    epochs_total: int = 0
    best_top1: float | None = None
    best_epoch: int | None = None
    final_top1: float | None = None
    teacher_top1: float | None = None
    fusion_top1: float | None = None
    tags: list[str] = field(default_factory=list)
    note: str = ""
    host: str = ""
    trashed: bool = False

    def elapsed(self, now: float) -> float | None:
        """The duration, counted to `now` while the run runs: its row, and so `duration`, is
        refreshed only at epoch ends."""
        if self.status == "running" and self.ended is None and self.started:
            return max(now - self.started - self.paused, self.duration or 0.0)
        return self.duration

    @property
    def pair(self) -> str:
        return f"{self.teacher} → {self.student}" if self.teacher else self.student

    @property
    def data(self) -> str:
        """The dataset, and the slice of it: a subset run's accuracy is on a slice of the
        validation split too, so it does not compare with a whole run's."""
        return f"{self.dataset} (subset {self.subset:,})" if self.subset else self.dataset

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_report(self, now: float) -> dict[str, Any]:
        """What JSON views show: the stored fields, the duration counted to `now` (as elapsed()),
        the pair and the data."""
        return {**self.as_dict(), "duration": self.elapsed(now), "pair": self.pair, "data": self.data}


def _top1(ev: dict[str, Any], who: str) -> float | None:
    value = (ev.get(who) or {}).get("top1")
    return float(value) if value is not None else None


@dataclass
class SummaryFold:
    method: str = ""
    teacher: str = ""
    student: str = ""
    dataset: str = ""
    subset: int = 0
    epochs_total: int = 0
    epochs_done: int = 0
    best_top1: float | None = None
    best_epoch: int | None = None
    final_top1: float | None = None
    teacher_top1: float | None = None
    fusion_top1: float | None = None
    between_segments: float = 0.0  # seconds from each segment's last event to the resume after it
    last_time: float | None = None

    def add(self, ev: dict[str, Any]) -> None:
        """A new event (the engine's own, as it writes them)."""
        self.clock(ev)
        self.fold(ev)

    def clock(self, ev: dict[str, Any]) -> None:
        """The time between segments, which is not the run's: a run resumed a day later did not
        take a day. It ends when the resumed segment's process started (`launched`; an older
        fbt's resume event has only its own time): its preparation is the run's, as the first
        segment's is. Every event counts here, those a resume supersedes too (they took time)."""
        time = ev.get("time")
        if ev["type"] == "resume" and time is not None and self.last_time is not None:
            self.between_segments += max(0.0, ev.get("launched", time) - self.last_time)
        self.last_time = time if time is not None else self.last_time

    def fold(self, ev: dict[str, Any]) -> None:
        if ev["type"] == "run_started":
            cfg = ev.get("config", {})
            self.method = cfg.get("method", {}).get("name", "")
            self.teacher = cfg.get("teacher", {}).get("model", "") if ev.get("uses_teacher", True) else ""
            self.student = cfg.get("student", {}).get("model", "")
            self.dataset = cfg.get("data", {}).get("name", "")
            self.subset = int(cfg.get("data", {}).get("subset") or 0)
            self.epochs_total = cfg.get("train", {}).get("epochs", 0)
        elif ev["type"] == "phase" and ev.get("phase") == "distillation" and "epochs" in ev:
            self.epochs_total = int(ev["epochs"])  # a resume may change train.epochs (--set train.epochs=N)
            if _top1(ev, "teacher") is not None:  # measured before the first step: a run that fails early has it
                self.teacher_top1 = _top1(ev, "teacher")
        elif ev["type"] == "epoch" and ev.get("phase", "distillation") == "distillation":
            epoch = int(ev.get("epoch", 0))
            self.epochs_done = max(self.epochs_done, epoch)
            top1 = _top1(ev, "student")
            if top1 is not None:
                self.final_top1 = top1
                if self.best_top1 is None or top1 > self.best_top1:
                    self.best_top1, self.best_epoch = top1, epoch
            self.teacher_top1 = _top1(ev, "teacher") if _top1(ev, "teacher") is not None else self.teacher_top1
            fusion = _top1(ev, "fusion")
            if fusion is not None and (self.fusion_top1 is None or fusion > self.fusion_top1):
                self.fusion_top1 = fusion

    def summary(self, meta: dict[str, Any], trashed: bool = False) -> RunSummary:
        started, ended = meta.get("started", 0.0), meta.get("ended")
        end = ended if ended is not None else meta.get("heartbeat")
        return RunSummary(
            id=meta["id"], name=meta.get("name", ""), status=meta.get("status", "running"),
            method=self.method, teacher=self.teacher, student=self.student, dataset=self.dataset,
            subset=self.subset, started=started, ended=ended,
            duration=(end - started - self.between_segments) if end and started else None,
            paused=self.between_segments,
            epochs_done=self.epochs_done, epochs_total=self.epochs_total, best_top1=self.best_top1,
            best_epoch=self.best_epoch, final_top1=self.final_top1, teacher_top1=self.teacher_top1,
            fusion_top1=self.fusion_top1, tags=list(meta.get("tags", [])), note=meta.get("note", ""),
            host=meta.get("host", ""), trashed=trashed,
        )


def fold_events(events: list[dict[str, Any]]) -> SummaryFold:
    fold = SummaryFold()
    kept = {id(ev) for ev in effective(events)}
    for ev in events:
        fold.clock(ev)
        if id(ev) in kept:
            fold.fold(ev)
    return fold


def summarize(meta: dict[str, Any], events: list[dict[str, Any]], trashed: bool = False) -> RunSummary:
    return fold_events(events).summary(meta, trashed)
