"""The App's run manager: launches engine subprocesses, re-attaches to runs that are still going,
and tails each run's files on its own thread.

A tail thread folds events into the run's `RunModel` and posts at most one `RunUpdated` until the
UI has handled it (toolong's watcher idea): however fast the engine writes, the UI gets one
message per redraw, never a backlog. Nothing here belongs to a screen, so switching modes or
closing a tab never stops a run or its tailing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from textual.message import Message

from fbt_engine import paths
from fbt_engine.config.presets import collect
from fbt_engine.store.events import EventTail, LineTail
from fbt_engine.store.index import index_stamp
from fbt_engine.store.runs import RESUMABLE, RunNotFound, RunStore, new_run_id, process_alive

from fbt_tui.model import RunModel

POLL_S = 0.1  # an event reaches the screen within a poll and a DRAW_INTERVAL_S (< 0.5 s)
STOP_GRACE_S = 30.0  # SIGINT lets the engine finish its step and save; after this, SIGKILL
_ERR_TAIL = 40
STALE_LAUNCH_S = 600.0


class RunUpdated(Message):
    """New data in a run's model (coalesced: one until the UI acknowledges it)."""

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id


class RunEnded(Message):
    def __init__(self, run_id: str, status: str):
        super().__init__()
        self.run_id, self.status = run_id, status


class LaunchFailed(Message):
    """The engine refused to start: a bad preset, missing data or device (before its run folder
    existed), or a resume it would not make (`kept`: the run and its tab stay as they were)."""

    def __init__(self, run_id: str, preset: str, code: int, errors: str, kept: bool = False):
        super().__init__()
        self.run_id, self.preset, self.code, self.errors, self.kept = run_id, preset, code, errors, kept


class TailFailed(Message):
    def __init__(self, run_id: str, error: str):
        super().__init__()
        self.run_id, self.error = run_id, error


@dataclass
class RunHandle:
    run_id: str
    model: RunModel
    preset: str = ""
    proc: subprocess.Popen | None = None  # ours; None when re-attached or opened from history
    pid: int | None = None
    pid_start: int | None = None
    live: bool = False  # a process may still write to the run
    stop_requested: bool = False
    update_pending: threading.Event = field(default_factory=threading.Event, repr=False)
    stop_tailing: threading.Event = field(default_factory=threading.Event, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.live and self.model.is_active


@dataclass
class Attachable:
    """A run going on without a handle here, and whether it is a resume (a segment after its first)."""
    handle: RunHandle
    resumed: bool


class RunManager:
    def __init__(self, post: Callable[[Message], object], home: Path | None = None):
        self.post = post
        self.home = home or paths.data_home()
        self.handles: dict[str, RunHandle] = {}

    # -- starting, attaching, opening ------------------------------------------------------------

    @property
    def launch_dir(self) -> Path:
        return self.home / "tui"

    def launch(self, preset: Path, sets: list[str]) -> RunHandle:
        run_id = new_run_id()
        # named as the engine will name it, from its first frame (the preset's stem until its first event)
        name = collect(preset, sets).config.run.name or run_id
        cmd = ["run", str(preset), "--id", run_id, *(arg for item in sets for arg in ("--set", item))]
        return self._spawn(run_id, name, preset.stem, cmd)

    def resume(self, run_id: str) -> RunHandle:
        """`fbt run --resume` for a run that stopped (interrupted, crashed or failed), tailed anew
        from its first event: its tab shows the whole history, then the new segment."""
        store = RunStore(self.home)
        try:
            meta = store.read_meta(run_id)
            status = meta.get("status")
            if store.run_dir(run_id).parent == store.trash_dir:  # the engine refuses it: said now, in the app's words
                raise ValueError(f"run {run_id} is in the trash: restore it in History first (v shows the trash, "
                                 "r restores)")
            if status not in RESUMABLE:  # said now, not after a preparation
                why = "another process runs it" if status == "running" else "nothing to resume"
                raise ValueError(f"run {run_id} is {status}: {why}")
            # as its last segment ran: a resume says its processes too
            last = next((e for e in reversed(store.events(run_id))  # (an older fbt's resume says none)
                         if e["type"] in ("run_started", "resume") and "processes" in e), {})
            if (world := int(last.get("processes") or 1)) > 1:  # the app starts one process
                raise ValueError(f"run {run_id} ran on {world} processes: resume it as it ran, with "
                                 f"fbt run --resume {run_id} --nproc-per-node {world}")
        finally:
            store.close()
        old = self.handles.get(run_id)  # its tail stops once the new one is running
        handle = self._spawn(run_id, meta.get("name", run_id), Path(meta.get("preset") or "").stem,
                             ["run", "--resume", run_id], resuming=int(meta.get("segments", 1)) + 1)
        if old is not None:
            old.stop_tailing.set()
        return handle

    def _spawn(self, run_id: str, name: str, preset: str, args: list[str], resuming: int | None = None) -> RunHandle:
        self.launch_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "fbt_engine", *args, "--json", "--quiet"]
        with open(self._out(run_id), "wb") as out, open(self._err(run_id), "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                                    env={**os.environ, "FBT_HOME": str(self.home), "PYTHONUNBUFFERED": "1"})
        model = RunModel(run_id, name=name, status="starting", resuming=resuming)
        return self._start(RunHandle(run_id, model, preset=preset, proc=proc, pid=proc.pid, live=True))

    def running_elsewhere(self) -> tuple[list[Attachable], list[str]]:
        """Runs of this host that meta.json calls running, whose process is alive and which no
        handle here tails live: at start-up those an earlier app left going, later those that a
        headless `fbt run` (or another app) started or resumed; each to `attach` on the app's
        thread, which alone changes `handles`. Also the ids of runs whose process is gone (now
        marked crashed, as History shows them). Reads only: a worker thread may call it."""
        store = RunStore(self.home)
        try:
            crashed = store.detect_crashes()
            found = [item for row in store.list(status="running") if row.host == socket.gethostname()
                     and not self._tails_live(row.id) and (item := self._attachable(row.id, store)) is not None]
        finally:
            store.close()
        self._clean_launch_dir()
        return found, crashed

    def _tails_live(self, run_id: str) -> bool:
        held = self.handles.get(run_id)
        return held is not None and held.live

    def _attachable(self, run_id: str, store: RunStore) -> Attachable | None:
        try:
            meta = store.read_meta(run_id)
            handle = self._handle(run_id, meta)
        except (RunNotFound, OSError, ValueError, TypeError):  # trashed or unreadable since it was listed
            return None
        if not handle.live:  # ended since it was listed
            return None
        return Attachable(handle, resumed=int(meta.get("segments") or 1) > 1)

    def attach(self, found: Attachable) -> RunHandle | None:
        """Tail a run `running_elsewhere` found, unless a handle here took it meanwhile (a resume
        from the app); a handle that showed it stopped stops tailing."""
        if self._tails_live(found.handle.run_id):
            return None
        held = self.handles.get(found.handle.run_id)
        if held is not None:
            held.stop_tailing.set()
        return self._start(found.handle)

    def index_stamp(self) -> tuple[int, ...]:
        """What changes when a run starts, resumes or ends anywhere (see running_elsewhere)."""
        return index_stamp(paths.index_path(self.home))

    def _clean_launch_dir(self) -> None:
        """Launch logs of runs no longer going: the events file or the error modal said it all.
        Recent ones are kept: another fbt may be starting that run right now."""
        if not self.launch_dir.is_dir():
            return
        for path in self.launch_dir.iterdir():
            try:
                stale = path.stem not in self.handles and time.time() - path.stat().st_mtime > STALE_LAUNCH_S
            except FileNotFoundError:  # its run's end, or another app, cleaned it meanwhile
                continue
            if stale:
                path.unlink(missing_ok=True)

    def open(self, run_id: str) -> RunHandle:
        """A run from the store: tailed live when its process is still going, read once otherwise."""
        if run_id in self.handles:
            return self.handles[run_id]
        store = RunStore(self.home)
        try:
            meta = store.read_meta(run_id)
        finally:
            store.close()
        return self._start(self._handle(run_id, meta))

    @staticmethod
    def _handle(run_id: str, meta: dict) -> RunHandle:
        """A handle that tails the run live when its process is still going, or reads it once."""
        pid, start = int(meta.get("pid") or 0), meta.get("pid_start")
        live = (meta.get("status") == "running" and meta.get("host") == socket.gethostname()
                and pid > 0 and process_alive(pid, start))
        model = RunModel(run_id, name=meta.get("name", run_id), status=meta.get("status", "running"))
        return RunHandle(run_id, model, preset=Path(meta.get("preset") or "").stem, pid=pid if live else None,
                         pid_start=start if live else None, live=live)

    def _start(self, handle: RunHandle) -> RunHandle:
        self.handles[handle.run_id] = handle
        handle.thread = threading.Thread(target=self._tail, args=(handle,), name=f"tail-{handle.run_id}", daemon=True)
        handle.thread.start()
        return handle

    # -- stopping and forgetting -----------------------------------------------------------------

    def active(self) -> list[RunHandle]:
        # a copy first: stop_all reads it from a worker thread while the app's may change `handles`
        return [h for h in list(self.handles.values()) if h.active]

    def stop(self, run_id: str, sig: int = signal.SIGINT) -> bool:
        """Ask the engine to stop after its current step (it saves and exits 130)."""
        handle = self.handles.get(run_id)
        if handle is None or not handle.active or handle.pid is None:
            return False
        handle.stop_requested = True
        if handle.proc is None and not process_alive(handle.pid, handle.pid_start):
            return False  # the pid is no longer our run's: never signal a stranger
        try:
            # Our launches lead their own session, so the group holds any worker processes too.
            if os.getpgid(handle.pid) == handle.pid:
                os.killpg(handle.pid, sig)
            else:
                os.kill(handle.pid, sig)
        except (ProcessLookupError, PermissionError):  # gone already, or another user's process
            return False
        return True

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every active run and wait for them (call from a worker thread)."""
        running = self.active()
        for h in running:
            self.stop(h.run_id)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(not self._exited(h) for h in running):
            time.sleep(POLL_S)
        for h in running:
            if not self._exited(h):
                self.stop(h.run_id, signal.SIGKILL)
        for h in running:
            if h.thread is not None:
                h.thread.join(timeout=5)

    def forget(self, run_id: str) -> None:
        """Stop tailing a run that is not active (its tab was closed)."""
        handle = self.handles.get(run_id)
        if handle is not None and not handle.active:
            handle.stop_tailing.set()
            del self.handles[run_id]

    def shutdown(self) -> None:
        """Stop every tail thread. Runs themselves keep going: they have their own session."""
        handles = list(self.handles.values())
        for h in handles:
            h.stop_tailing.set()
        for h in handles:
            if h.thread is not None:
                h.thread.join(timeout=1)

    # -- the tail thread -------------------------------------------------------------------------

    def _out(self, run_id: str) -> Path:
        return self.launch_dir / f"{run_id}.out"

    def _err(self, run_id: str) -> Path:
        return self.launch_dir / f"{run_id}.err"

    def _tail(self, h: RunHandle) -> None:
        store = RunStore(self.home)  # sqlite connections belong to the thread that made them
        try:
            self._tail_run(h, store)
        except Exception as exc:  # a tail that dies must say so, not leave a frozen tab
            h.live = False
            self.post(TailFailed(h.run_id, f"{type(exc).__name__}: {exc}"))
        finally:
            store.close()

    def _tail_run(self, h: RunHandle, store: RunStore) -> None:
        folder = self._wait_for_folder(h, store)
        if folder is None:
            return
        events, log = EventTail(folder / "events.jsonl"), LineTail(folder / "stdout.log")
        while True:
            exited = self._exited(h)  # before reading, so the last read sees the final lines
            if self._read(h, events, log):
                self._notify(h)
            if exited or not h.live:
                self._finish(h, store, events, log)
                return
            if h.stop_tailing.wait(POLL_S):
                return

    def _wait_for_folder(self, h: RunHandle, store: RunStore) -> Path | None:
        while True:
            try:
                return store.run_dir(h.run_id)
            except RunNotFound:
                pass
            if h.proc is None or h.proc.poll() is not None:
                try:  # it may have appeared just before the process ended
                    return store.run_dir(h.run_id)
                except RunNotFound:
                    self._launch_failed(h)
                    return None
            if h.stop_tailing.wait(POLL_S):
                return None

    def _read(self, h: RunHandle, events: EventTail, log: LineTail) -> bool:
        new_events, new_lines = events.poll(), log.poll()
        h.model.add_events(new_events)
        h.model.add_log(new_lines)
        if events.broken and not h.model.broken_events:
            with h.model.lock:
                h.model.broken_events = True
                h.model.version += 1
            h.model.add_log([f"events.jsonl has a corrupt line after event {h.model.events_seen}; "
                             "showing everything before it"])
            return True
        return bool(new_events or new_lines)

    def _notify(self, h: RunHandle) -> None:
        if not h.update_pending.is_set():
            h.update_pending.set()
            self.post(RunUpdated(h.run_id))

    def acknowledge(self, run_id: str) -> None:
        """The UI took the last RunUpdated: the next change may post another."""
        handle = self.handles.get(run_id)
        if handle is not None:
            handle.update_pending.clear()

    def _exited(self, h: RunHandle) -> bool:
        if h.proc is not None:
            return h.proc.poll() is not None
        if h.pid is not None:
            return not process_alive(h.pid, h.pid_start)
        return True

    def _finish(self, h: RunHandle, store: RunStore, events: EventTail, log: LineTail) -> None:
        was_live = h.live
        h.live = False
        self._read(h, events, log)
        if h.model.resuming is not None and h.proc is not None:
            self._resume_ended_early(h, store)
            return
        meta = store.read_meta(h.run_id)
        status = meta.get("status", "crashed")
        if status == "running" and was_live:
            status = store.close_run(h.run_id)  # the process is gone: crashed, curves kept
        if status == "crashed" and was_live:  # the engine could not say so in its own log
            h.model.add_log([f"{time.strftime('%H:%M:%S')} the engine's process is gone: crashed; u resumes "
                             "from its last checkpoint"])
        err = self._err(h.run_id)  # from this app or an earlier one that launched the run
        if status == "crashed" and err.is_file() and err.stat().st_size:
            h.model.add_log(["engine stderr:", *_tail_lines(err)])
        else:
            err.unlink(missing_ok=True)
        self._out(h.run_id).unlink(missing_ok=True)  # the events file holds the same lines
        h.model.set_status(status)
        self._notify(h)
        if was_live:
            self.post(RunEnded(h.run_id, status))

    def _resume_ended_early(self, h: RunHandle, store: RunStore) -> None:
        """A resume from the app whose process ended before its segment began: refused (a config
        problem, a run another process took), failed while preparing, stopped, or killed. The run
        is as the store has it; the engine's stderr says why, unless the user stopped it."""
        errors = "\n".join(_tail_lines(self._err(h.run_id))) or f"the engine exited with code {h.proc.returncode}"
        self._out(h.run_id).unlink(missing_ok=True)
        self._err(h.run_id).unlink(missing_ok=True)
        status = store.read_meta(h.run_id).get("status", "crashed")
        h.model.set_status(status)
        self._notify(h)
        if h.stop_requested:
            self.post(RunEnded(h.run_id, status))
        else:
            self.post(LaunchFailed(h.run_id, h.preset, h.proc.returncode, errors, kept=True))

    def _launch_failed(self, h: RunHandle) -> None:
        h.live = False
        code = h.proc.returncode if h.proc is not None else -1
        errors = "\n".join(_tail_lines(self._err(h.run_id))) or f"the engine exited with code {code}"
        self._out(h.run_id).unlink(missing_ok=True)
        self._err(h.run_id).unlink(missing_ok=True)
        h.model.set_status("cancelled" if h.stop_requested else "failed to start")
        # the app's thread forgets the handle when it takes the message: it alone changes `handles`
        if not h.stop_requested:
            self.post(LaunchFailed(h.run_id, h.preset, code, errors))
        else:
            self.post(RunEnded(h.run_id, "cancelled"))


def _tail_lines(path: Path, n: int = _ERR_TAIL) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    errors = [line for line in lines if line.startswith("error:")]
    return errors or [line for line in lines if line.strip()][-n:]

