"""A run's metrics as the dashboard needs them, folded from its events: no widgets, no threads.

The tail thread folds events in; the UI thread asks for decimated copies. Both go through
`RunModel.lock`, so a redraw never sees a half-applied batch of events.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fbt_engine.formats import cpu_name

DISTILL, TEACHER, EVAL = "distillation", "teacher_training", "eval"
FINAL_EVENTS = {"run_finished": "finished", "run_failed": "failed", "run_interrupted": "interrupted"}
WHO = ("student", "teacher", "fusion")
PAIRS = (("ts", "T–S"), ("tf", "T–F"), ("fs", "F–S"))
POOLED_METRICS = ("cka", "cos", "retrieval", "norm_ratio")
SPARK = "▁▂▃▄▅▆▇█"
LOG_LINES = 2000
FOLD_SLICE = 2000  # events folded per hold of the lock (a few ms)


def loss_group(term: str) -> str:
    """The plot a loss term belongs to: the pair it transfers between, or CE.

    Baselines transfer teacher → student only, so their single distillation term joins T–S."""
    if term in ("ce", "fusion/ce"):
        return "CE"
    prefix = term.split("/", 1)[0]
    return dict(PAIRS).get(prefix, "T–S")


class Series:
    """Two growable float arrays; x never decreases within a series."""

    def __init__(self, capacity: int = 256):
        self._x = np.empty(capacity)
        self._y = np.empty(capacity)
        self.n = 0

    def append(self, x: float, y: float | None) -> None:
        if self.n == len(self._x):
            self._x = np.resize(self._x, 2 * self.n)
            self._y = np.resize(self._y, 2 * self.n)
        self._x[self.n] = x
        self._y[self.n] = math.nan if y is None else y
        self.n += 1

    def truncate_after(self, x_max: float) -> None:
        self.n = int(np.searchsorted(self._x[: self.n], x_max, side="right"))

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]


def decimate(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """At most 2·buckets points that keep every bucket's minimum and maximum, so spikes survive
    (a plain stride would drop them). Copies, always: the caller may draw them on another thread."""
    n = len(x)
    if buckets < 1 or n <= 2 * buckets:
        return x.copy(), y.copy()
    size = math.ceil(n / buckets)
    padded = math.ceil(n / size) * size
    ys = np.full(padded, np.nan)
    ys[:n] = y
    ys = ys.reshape(-1, size)  # the last bucket is padded with NaN, which never wins below
    nan = np.isnan(ys)
    lo = np.argmin(np.where(nan, np.inf, ys), axis=1)
    hi = np.argmax(np.where(nan, -np.inf, ys), axis=1)
    base = np.arange(len(ys)) * size
    idx = np.stack([np.minimum(lo, hi), np.maximum(lo, hi)], axis=1).ravel() + np.repeat(base, 2)
    idx = np.unique(np.minimum(idx, n - 1))
    return x[idx], y[idx]


def sparkline(values: list[float | None], width: int = 12) -> str:
    vals = [v for v in values[-width:] if v is not None and math.isfinite(v)]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    # a span of at least 2 % of the values' size: 0.951 and 0.949 are a flat line, not the full height
    span, mid = max(hi - lo, 0.02 * max(abs(lo), abs(hi))), (hi + lo) / 2
    if span <= 0:
        return SPARK[len(SPARK) // 2] * len(vals)
    top = len(SPARK) - 1
    return "".join(SPARK[min(top, max(0, round((0.5 + (v - mid) / span) * top)))] for v in vals)


def trend(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if len(vals) < 2:
        return ""
    delta = round(vals[-1] - vals[-2], 3)  # as shown: no "↑+0.000"
    return f"↑{delta:+.3f}" if delta > 0 else f"↓{delta:+.3f}" if delta < 0 else "→ 0.000"


@dataclass
class PhaseInfo:
    epochs: int = 0
    steps_per_epoch: int = 0
    from_step: int = 0
    started: float = 0.0  # time of its phase event, for the ETA

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass
class Curve:
    label: str
    x: np.ndarray
    y: np.ndarray
    total: int  # points before decimation


@dataclass
class Panel:
    """One plot's worth of curves, already decimated."""

    title: str
    curves: list[Curve]

    @property
    def shown(self) -> int:
        return sum(len(c.x) for c in self.curves)

    @property
    def total(self) -> int:
        return sum(c.total for c in self.curves)


@dataclass
class AlignmentRow:
    label: str
    cka: list[float | None]
    cos: float | None = None
    retrieval: float | None = None
    norm_ratio: float | None = None


@dataclass
class RunModel:
    run_id: str
    name: str = ""
    status: str = "starting"
    # the segment a resume from the app is starting: until its event, the earlier segments' ends
    # (interrupted, crashed) are history, and the run reads as starting
    resuming: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    loss_terms: list[str] = field(default_factory=list)
    uses_teacher: bool = True
    phase: str = ""
    phases: dict[str, PhaseInfo] = field(default_factory=dict)
    evaluating: int | None = None  # the epoch under evaluation (0: the frozen teacher's); None between
    epoch: int = 0
    step: int = 0
    img_s: float | None = None
    lr: float | None = None
    loss: float | None = None  # the total, from the latest step event
    stepped_at: float | None = None  # that event's time
    outcome: dict[str, Any] = field(default_factory=dict)  # the final event, once there is one
    gpu_mem_gb: float | None = None
    threads: int | None = None  # a CPU run's, as its last step said: fewer while other runs share the CPU
    warnings: list[str] = field(default_factory=list)  # the run's warning events' messages, in order
    broken_events: bool = False
    version: int = 0
    events_seen: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _losses: dict[tuple[str, str], Series] = field(default_factory=dict, repr=False)
    _val_loss: dict[str, Series] = field(default_factory=dict, repr=False)
    _acc: dict[tuple[str, str], Series] = field(default_factory=dict, repr=False)
    _stages: list[dict[str, Any]] = field(default_factory=list, repr=False)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES), repr=False)
    log_serial: int = 0  # lines ever added; the view appends the ones it has not shown

    # -- folding ----------------------------------------------------------------------------------

    def add_events(self, events: list[dict[str, Any]]) -> None:
        """In slices, so a redraw waiting for the lock never waits for a whole long run's file."""
        for start in range(0, len(events), FOLD_SLICE):
            batch = events[start:start + FOLD_SLICE]
            with self.lock:
                for ev in batch:
                    self._add(ev)
                self.events_seen += len(batch)
                self.version += 1

    def add_log(self, lines: list[str]) -> None:
        if not lines:
            return
        with self.lock:
            self.log.extend(lines)
            self.log_serial += len(lines)
            self.version += 1

    def set_status(self, status: str) -> None:
        """What the store says once the process is gone: a resume that never began ends here too."""
        with self.lock:
            self.resuming = None
            if status != self.status:
                self.status = status
                self.version += 1

    def _add(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        phase = ev.get("phase", DISTILL)
        if kind == "phase" and phase == EVAL:
            self.evaluating = int(ev.get("epoch") or 0)
            return
        self.evaluating = None  # every other event comes after the evaluation it follows
        if kind == "run_started":
            self.config = ev.get("config") or {}
            self.name = (self.config.get("run") or {}).get("name") or self.name
            self.device = ev.get("device") or {}
            self.params = ev.get("params") or {}
            self.data = ev.get("data") or {}
            self.loss_terms = list(ev.get("loss_terms") or [])
            self.uses_teacher = bool(ev.get("uses_teacher", True))
            if self.status == "starting" and self.resuming is None:
                self.status = "running"
        elif kind == "phase" and not ev.get("skipped"):  # skipped: a teacher loaded, no phase runs
            self.phase = phase
            self.phases[phase] = PhaseInfo(int(ev.get("epochs") or 0), int(ev.get("steps_per_epoch") or 0),
                                           int(ev.get("from_step") or 0), float(ev.get("time") or 0.0))
            # the epoch its last step lies in, as its step events said before a stop, and the first
            # from the start: "epoch 0/4" while the first one runs read as if nothing did
            self.step = int(ev.get("from_step") or 0)
            spe = int(ev.get("steps_per_epoch") or 0)
            self.epoch = max(1, -(-self.step // spe)) if spe else 0
            self.loss = self.lr = self.img_s = self.stepped_at = None  # the last phase's, until this one logs a step
        elif kind == "step":
            x = float(ev["step"])
            self._series(self._losses, (phase, "loss")).append(x, ev.get("loss"))
            for term, value in (ev.get("losses") or {}).items():
                self._series(self._losses, (phase, term)).append(x, value)
            self.phase, self.step, self.epoch = phase, int(ev["step"]), int(ev.get("epoch") or self.epoch)
            self.img_s, self.lr, self.loss = ev.get("img_s"), ev.get("lr"), ev.get("loss")
            self.stepped_at = ev.get("time")
            self.gpu_mem_gb = ev.get("gpu_mem_gb", self.gpu_mem_gb)  # the engine's peak, on CUDA
            self.threads = ev.get("threads", self.threads)
        elif kind == "epoch":
            epoch = int(ev.get("epoch") or 0)
            self.threads = ev.get("threads", self.threads)
            if ev.get("val_loss") is not None or "val_loss" in (ev.get("nonfinite") or []):
                self._series(self._val_loss, phase).append(float(ev.get("step") or 0), ev.get("val_loss"))
            for who in WHO:
                top1 = (ev.get(who) or {}).get("top1")
                if top1 is not None:
                    self._series(self._acc, (phase, who)).append(float(epoch), top1)
            self.phase, self.epoch = phase, epoch
            self.step = int(ev.get("step") or self.step)
        elif kind == "stages":
            self._stages.append(ev)
        elif kind == "warning":
            self.warnings.append(str(ev.get("message", "")))
        elif kind == "resume":
            self._supersede(phase, int(ev.get("from_step") or 0))
            self.device = ev.get("device") or self.device  # where this segment runs (older engines: unsaid)
            self.threads = None  # the segment's device says them until its first step
            if ev.get("segment") == self.resuming:
                self.resuming = None
            self.status = "running" if self.resuming is None else "starting"
            self.outcome = {}
        elif kind in FINAL_EVENTS:  # (a warning's line comes with stdout.log, which the engine writes it to)
            if self.resuming is None:  # else an earlier segment's end, which the resume under way goes on from
                self.status = FINAL_EVENTS[kind]
                self.outcome = ev
            if kind == "run_failed" and ev.get("traceback"):  # the log has the one-line reason already
                self._log_line(f"{ev.get('error')} traceback:")
                for line in ev["traceback"].splitlines():
                    self._log_line("  " + line)

    def _log_line(self, line: str) -> None:
        self.log.append(line)
        self.log_serial += 1

    def _supersede(self, phase: str, from_step: int) -> None:
        """What `effective()` does to a whole file, done to the series already folded."""
        for (p, _), s in self._losses.items():
            if p == phase:
                s.truncate_after(from_step)
        if phase in self._val_loss:
            self._val_loss[phase].truncate_after(from_step)
        info = self.phases.get(phase)
        spe = info.steps_per_epoch if info else 0
        last_epoch = from_step // spe if spe else 0
        for (p, _), s in self._acc.items():
            if p == phase:
                s.truncate_after(last_epoch)
        self._stages = [e for e in self._stages if e.get("phase", DISTILL) != phase or e.get("step", 0) <= from_step]

    @property
    def best(self) -> tuple[float, int] | None:
        """(top-1, epoch) of the student's best distillation epoch so far (the first to reach it)."""
        with self.lock:
            x, y = self._xy(self._acc.get((DISTILL, "student")))
            if not len(y) or np.isnan(y).all():
                return None
            i = int(np.nanargmax(y))
            return float(y[i]), int(x[i])

    def teacher_score(self) -> tuple[float, int] | None:
        """(top-1, epoch) of a teacher trained in the run, at its latest scored epoch: its final
        weights are what is cached and distilled from, not its best epoch's."""
        with self.lock:
            x, y = self._xy(self._acc.get((TEACHER, "teacher")))
            scored = np.flatnonzero(~np.isnan(y))
            return (float(y[scored[-1]]), int(x[scored[-1]])) if len(scored) else None

    @staticmethod
    def _xy(series: Series | None) -> tuple[np.ndarray, np.ndarray]:
        return (series.x, series.y) if series else (np.empty(0), np.empty(0))

    @staticmethod
    def _series(table: dict, key) -> Series:
        if key not in table:
            table[key] = Series()
        return table[key]

    # -- reading ----------------------------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self.status in ("starting", "running")

    @property
    def view_phase(self) -> str:
        """The phase the curves show: distillation once it has begun, the teacher's before."""
        with self.lock:
            if any(p == DISTILL for p, _ in self._losses) or self.phase == DISTILL:
                return DISTILL
            return TEACHER if self.phase == TEACHER else DISTILL

    def groups(self) -> list[str]:
        """The loss plots this run has, in a fixed order; while a teacher trains, those it logs
        (its CE): the pair plots would stay empty for the whole phase."""
        phase = self.view_phase
        with self.lock:
            present = {loss_group(t) for p, t in self._losses if t != "loss" and p == phase}
            if phase == DISTILL:
                present |= {loss_group(t) for t in self.loss_terms}
        return [g for g in ("T–S", "T–F", "F–S", "CE") if g in present]

    def panel(self, group: str, buckets: int) -> Panel:
        """Curves of one plot: a loss group, "loss" (the weighted total) or "top1" (accuracies). The
        validation loss, a cross-entropy, is drawn with the CE terms it compares with: beside the
        total of eight weighted terms it was a flat line at the bottom."""
        phase = self.view_phase
        with self.lock:
            if group == "top1":
                picked = [(who, self._acc.get((phase, who))) for who in WHO]
                title = "top-1 % / epoch"
            elif group == "loss":
                picked = [("train", self._losses.get((phase, "loss")))]
                title = "loss / step"
            else:
                picked = [(t, s) for (p, t), s in self._losses.items() if p == phase and t != "loss"
                          and loss_group(t) == group]
                if group == "CE":
                    picked.append(("val", self._val_loss.get(phase)))
                title = f"{group} / step"
            curves = [Curve(label, *decimate(s.x, s.y, buckets), s.n) for label, s in picked if s is not None and s.n]
        if phase == TEACHER and group != "top1":
            title += " (teacher training)"
        return Panel(title, curves)

    def point_count(self) -> int:
        with self.lock:
            return sum(s.n for s in self._losses.values()) + sum(s.n for s in self._val_loss.values())

    def alignment(self) -> list[AlignmentRow]:
        """Per-stage CKA (teacher vs student) and the pooled pair stats, with their history."""
        with self.lock:
            events = [e for e in self._stages if e.get("phase", DISTILL) == DISTILL]
        if not events:
            return []
        rows = []
        for k in range(1, 5):
            history = [next((s.get("cka_ts") for s in e.get("stages", []) if s.get("stage") == k), None)
                       for e in events]
            rows.append(AlignmentRow(f"stage {k} T–S", history))
        last_pooled = events[-1].get("pooled") or {}
        for key, label in PAIRS:
            if key not in last_pooled:
                continue
            history = [((e.get("pooled") or {}).get(key) or {}).get("cka") for e in events]
            stats = last_pooled[key] or {}
            rows.append(AlignmentRow(f"pooled {label}", history, stats.get("cos"), stats.get("retrieval"),
                                     stats.get("norm_ratio")))
        return rows

    def before_first_log(self, now: float) -> float | None:
        """How long the current training phase has gone without a logged step (a compile, or the
        first `log_every` steps of a slow model: no event either way). None when the run is not
        active or the phase has logged a step."""
        with self.lock:
            info = self.phases.get(self.phase)
            if (not self.is_active or info is None or not info.total_steps or self.step > info.from_step
                    or info.from_step >= info.total_steps or self.evaluating is not None):
                return None  # (resumed at its last step, or evaluating: no step is to come)
            return max(0.0, now - info.started)

    @property
    def compiled(self) -> bool:
        return self.device.get("compile", "off") != "off"

    @property
    def log_every(self) -> int:
        return int((self.config.get("train") or {}).get("log_every") or 0)

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Remaining time of the current phase at its pace to its last logged step (evaluations
        included), counted down since that step: paced to now, it grew while no step came (an
        evaluation, the app closed and opened again), 0:45 becoming 5:09 one step after a resume.
        None once the countdown has run out: the run goes slower than its pace said."""
        with self.lock:
            info = self.phases.get(self.phase)
            if not self.is_active or self.resuming is not None or info is None or not info.total_steps:
                return None  # (resuming: the pace so far is the stopped segment's)
            if self.evaluating is not None and self.step >= info.total_steps:
                return None  # only the last evaluation is left, whose length the pace does not tell
            done = self.step - info.from_step
            if done <= 0 or self.stepped_at is None:
                return None
            pace = (self.stepped_at - info.started) / done
            left = pace * (info.total_steps - self.step) - ((now or time.time()) - self.stepped_at)
            return left if left >= 0 else None

    @property
    def epochs_total(self) -> int:
        info = self.phases.get(self.phase)
        return info.epochs if info else int((self.config.get("train") or {}).get("epochs") or 0)

    @property
    def steps_total(self) -> int:
        info = self.phases.get(self.phase)
        return info.total_steps if info else 0

    def steps_per_epoch(self) -> int:
        """The steps of an epoch of the phase the curves show (0 where no phase said)."""
        with self.lock:
            info = self.phases.get(self.view_phase)
            return info.steps_per_epoch if info else 0

    def device_name(self) -> str:
        """The device the run computes on, with a CPU run's threads as its last step said."""
        if self.device.get("type") == "cpu" and self.threads is not None:
            return cpu_name(self.threads, self.device.get("cores"))
        return str(self.device.get("name", ""))

    def pair_label(self) -> str:
        teacher = (self.config.get("teacher") or {}).get("model", "")
        student = (self.config.get("student") or {}).get("model", "")
        return f"{teacher} → {student}" if teacher and self.uses_teacher else student
