"""events.jsonl: one JSON object per line, "type" first, non-finite numbers as null.

Writers append and flush every line (a crash loses at most the line being written) and fsync at
epoch ends. Readers take every complete, valid line and stop caring at the first broken one, so
a truncated or corrupt tail never hides what came before it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

EVENT_TYPES = (
    "run_started", "phase", "step", "epoch", "stages", "checkpoint", "resume", "warning",
    "run_finished", "run_failed", "run_interrupted",
)


def _clean(value: Any, path: str, nonfinite: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        nonfinite.append(path)
        return None
    if isinstance(value, dict):
        return {k: _clean(v, f"{path}.{k}" if path else k, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, f"{path}.{i}", nonfinite) for i, v in enumerate(value)]
    return value


def encode(event_type: str, payload: dict[str, Any]) -> str:
    """One line of JSON; NaN/Inf become null and their dotted keys are listed under "nonfinite"."""
    nonfinite: list[str] = []
    body = _clean(payload, "", nonfinite)
    obj = {"type": event_type, "time": payload.get("time", time.time()), **body}
    if nonfinite:
        obj["nonfinite"] = nonfinite
    return json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n"


class EventWriter:
    def __init__(self, path: Path):
        self.path = path
        _drop_partial_line(path)
        self._fh: IO[str] = open(path, "a", encoding="utf-8")

    def write(self, event_type: str, **payload: Any) -> dict[str, Any]:
        line = encode(event_type, payload)
        self._fh.write(line)
        self._fh.flush()
        return json.loads(line)

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()


def _drop_partial_line(path: Path) -> None:
    """Cut a line left half-written by a crash before appending: glued to the next event it
    would make one corrupt line, and readers stop there, hiding everything a resume appends."""
    try:
        fh = open(path, "r+b")
    except FileNotFoundError:
        return
    with fh:
        size = fh.seek(0, os.SEEK_END)
        if not size:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        end = size
        while end > 0:  # back to just after the last newline, a block at a time
            start = max(0, end - 65536)
            fh.seek(start)
            cut = fh.read(end - start).rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return
            end = start
        fh.truncate(0)


def parse_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.endswith("\n"):
            return  # a line still being written, or cut by a crash
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            return
        if not isinstance(obj, dict) or "type" not in obj:
            return
        yield obj


def read_events(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return list(parse_lines(fh))
    except FileNotFoundError:
        return []


def last_event_time(path: Path, tail_bytes: int = 65536) -> float | None:
    """The time of the file's last complete event, read from its end: a crashed run's last sign
    of life when it came after its last heartbeat (every few seconds)."""
    try:
        with open(path, "rb") as fh:
            start = max(0, fh.seek(0, os.SEEK_END) - tail_bytes)
            fh.seek(start)
            lines = fh.read().decode("utf-8", errors="replace").splitlines(keepends=True)
    except FileNotFoundError:
        return None
    for line in reversed(lines[1:] if start else lines):  # past the file's start, the seek may cut the first
        events = list(parse_lines([line]))
        if events and isinstance(events[0].get("time"), (int, float)):
            return float(events[0]["time"])
    return None


@dataclass
class LineTail:
    """The complete new lines of a growing text file since the last poll. A line still being
    written is read again at the next poll, not kept: a resume may cut a line that a crash left
    half-written, and what it appends then starts where that line did."""

    path: Path
    offset: int = 0

    def poll(self) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return complete.decode("utf-8", errors="replace").split("\n")[:-1]


@dataclass
class EventTail:
    """Incremental reader: each poll() returns the complete new events since the last one."""

    path: Path
    broken: bool = False  # a corrupt line was met; nothing after it is read
    lines: LineTail = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.lines = LineTail(self.path)

    @property
    def offset(self) -> int:
        return self.lines.offset

    def poll(self) -> list[dict[str, Any]]:
        if self.broken:
            return []
        lines = [line + "\n" for line in self.lines.poll()]
        events = list(parse_lines(lines))
        if len(events) < len(lines):
            self.broken = True
        return events


def training_phase(event: dict[str, Any]) -> str:
    """The training phase an event belongs to: an evaluation's is the phase it scores."""
    phase = event.get("phase", "distillation")
    return event.get("during", phase) if phase == "eval" else phase


def effective(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events as one continuous history. A `resume` event (phase p, from_step s) supersedes
    the earlier segments' step/epoch/stages/checkpoint events, and evaluations, of phase p past
    step s: they are dropped here, never silently mixed with the resumed segment's."""
    events = list(events)
    resumes = [(i, ev.get("phase", "distillation"), int(ev.get("from_step", 0)))
               for i, ev in enumerate(events) if ev["type"] == "resume"]
    if not resumes:
        return events
    out = []
    for i, ev in enumerate(events):
        step = ev.get("step")
        superseded = (
            (ev["type"] in ("step", "epoch", "stages", "checkpoint") or ev.get("phase") == "eval")
            and step is not None
            and any(i < at and training_phase(ev) == phase and step > from_step
                    for at, phase, from_step in resumes)
        )
        if not superseded:
            out.append(ev)
    return out
