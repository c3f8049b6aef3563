"""Short human formats shared by the CLI and the TUI, and where what they print goes. No torch,
no textual."""

from __future__ import annotations

import os
import time


def to_devnull(stream) -> None:
    """Point `stream`'s file descriptor at /dev/null: its reader has gone (`fbt … | head`, a
    closed terminal), and neither the next write nor the interpreter's last flush may fail."""
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), stream.fileno())


def usable_cores() -> int | None:
    """The logical cores this process may run on: its CPU set (taskset, a cgroup's cpuset, a Slurm
    job's 4 of a node's 128), where the platform says; else the machine's. (A CPU quota, as
    `docker --cpus=2`, is no CPU set: not seen.)"""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def cpu_name(threads: int | None = None, cores: int | None = None) -> str:
    """A CPU by its logical cores (this process's unless given), and by the threads a run computes
    with when those are fewer (torch takes one per physical core; runs sharing a CPU split them):
    the TUI's header names the idle machine and the run alike."""
    cores = cores or usable_cores()
    shown = counted(cores, "core") if cores else "cores unknown"
    return f"CPU ({shown})" if threads is None or threads == cores else f"CPU ({shown}, {counted(threads, 'thread')})"


def counted(n: int, noun: str) -> str:
    """"1 run", "2 runs": every noun fbt counts takes an s."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def percent(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def best_at(top1: float | None, epoch: int | None) -> str:
    """A best accuracy and the epoch it was at; "–" alone before any evaluation."""
    return "–" if top1 is None else f"{top1:.2f} @{epoch or '–'}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "–"


def os_error(exc: OSError) -> str:
    """An OSError as a line for a person: the file and what went wrong with it, no errno."""
    return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
