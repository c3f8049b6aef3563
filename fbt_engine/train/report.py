"""Everything a run tells the world: events.jsonl, meta.json heartbeat, the index row, stdout.log,
`--json` on stdout, and human progress on stderr (a rich bar on a TTY, a line per epoch otherwise).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fbt_engine.formats import to_devnull
from fbt_engine.store.events import EventWriter, read_events
from fbt_engine.store.runs import RunNotFound, RunStore
from fbt_engine.store.summary import fold_events

HEARTBEAT_S = 5.0


def write_or_drop(stream, text: str) -> None:
    """`text` to stdout or stderr, unless its reader has gone (`fbt run … | head`, a closed
    terminal): the run then goes on without that stream. Everything printed is also in the run's
    files."""
    try:
        stream.write(text)
        stream.flush()
    except OSError:  # BrokenPipeError, or EIO from a terminal that went away
        to_devnull(stream)


class HumanOutput:
    """Progress for a person on stderr."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet
        self._progress = None
        self._task = None

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            write_or_drop(sys.stderr, text + "\n")

    def start_phase(self, label: str, total_steps: int, done: int = 0) -> None:
        self.stop()
        if not self.tty:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                  console=None, transient=False)
        self._progress.start()
        self._task = self._progress.add_task(label, total=total_steps, completed=done, info="")

    def advance(self, steps_done: int, info: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=steps_done, info=info)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class Heartbeat:
    """meta.json's heartbeat, every `period` seconds from a thread of its own: a run that emits
    nothing for minutes (compiling, a long evaluation) still looks alive to a watcher on another
    host, and a running run's duration keeps up."""

    def __init__(self, store: RunStore, run_id: str, period: float = HEARTBEAT_S):
        self.store, self.run_id, self.period = store, run_id, period
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="fbt-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stopped.wait(self.period):
            try:
                self.store.update_meta(self.run_id, heartbeat=time.time())
            except (OSError, ValueError, RunNotFound):  # a full disk, a torn read: the next beat tries again
                pass

    def stop(self) -> None:
        """No beat after this returns: the caller's own last write to meta.json is the last."""
        self._stopped.set()
        self._thread.join()


class Reporter:
    def __init__(self, store: RunStore, run_id: str, json_stdout: bool, human: HumanOutput):
        self.store, self.run_id = store, run_id
        self.dir: Path = store.run_dir(run_id)
        self.json_stdout, self.human = json_stdout, human
        self.fold = fold_events(read_events(self.dir / "events.jsonl"))
        self.writer = EventWriter(self.dir / "events.jsonl")
        self._log = open(self.dir / "stdout.log", "a", encoding="utf-8")
        self._heartbeat = Heartbeat(store, run_id)

    def emit(self, event_type: str, **payload: Any) -> dict[str, Any]:
        event = self.writer.write(event_type, **payload)
        if event_type == "resume":  # it supersedes what it resumes past: the fold starts over, without that
            self.fold = fold_events(read_events(self.dir / "events.jsonl"))
        else:
            self.fold.add(event)
        if self.json_stdout:
            write_or_drop(sys.stdout, json.dumps(event, separators=(",", ":")) + "\n")
        # method, pair, epochs, pauses: before an epoch ends (an evaluation changes none of them)
        if event_type in ("run_started", "resume") or (event_type == "phase" and payload["phase"] != "eval"):
            self.refresh_row()
        return event

    def refresh_row(self) -> None:
        """The run's index row (what `fbt runs ls` and History list) from the events so far."""
        self.store.index.upsert(self.fold.summary(self.store.read_meta(self.run_id)))

    def warn(self, message: str, kind: str | None = None) -> None:
        """A warning event, and the same line on stderr and in stdout.log for whoever runs headless."""
        self.emit("warning", message=message, **({"kind": kind} if kind else {}))
        self.log(f"warning: {message}")

    def warn_once(self, kind: str, message: str) -> None:
        """A warning of a kind this run has not given yet: a resumed segment repeats its checks, not
        their warnings (whose figures may differ by a rounding on another device)."""
        if not any(e["type"] == "warning" and e.get("kind") == kind for e in read_events(self.dir / "events.jsonl")):
            self.warn(message, kind)

    def log(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self._log.write(f"{stamp} {text}\n")
        self._log.flush()
        self.human.line(text)

    def checkpoint_index(self) -> None:
        """At epoch ends: events on disk and the index row."""
        self.writer.sync()
        self.refresh_row()

    def finish(self, status: str, exit_code: int, last_words: str = "") -> None:
        """The run's end, said last: after the progress bar's final frame, not above it."""
        self.human.stop()
        if last_words:
            self.log(last_words)
        self._heartbeat.stop()
        self.writer.close()
        self._log.close()
        now = time.time()
        self.store.update_meta(self.run_id, status=status, exit_code=exit_code, ended=now, heartbeat=now)
        self.refresh_row()


class SilentReporter(Reporter):
    """What processes other than rank 0 report to: rank 0 owns the store, so nothing is written,
    except this rank's failure, left as rank-<r>.error.json for rank 0 and the launcher to report."""

    def __init__(self, run_dir: Path, run_id: str, human: HumanOutput, rank: int):
        self.dir, self.run_id, self.human, self.rank = run_dir, run_id, human, rank
        self.fold = fold_events([])

    def emit(self, event_type: str, **payload: Any) -> dict[str, Any]:
        event = {"type": event_type, **payload}
        self.fold.add(event)
        if event_type == "run_failed":
            (self.dir / f"rank-{self.rank}.error.json").write_text(json.dumps({**payload, "rank": self.rank}))
        return event

    def log(self, text: str) -> None:
        pass

    def checkpoint_index(self) -> None:
        pass

    def finish(self, status: str, exit_code: int, last_words: str = "") -> None:
        self.human.stop()
