"""Runs on one CPU split its cores between them. torch gives each process a thread per core, and
runs that each take every core wait on one another's threads: two `mlp_to_cnn` runs at once on
two cores took 114 s with two threads each, 33 s with one (bench/cpu_share.sh, docs/PERF.md). A CPU run
left to choose its threads (OMP_NUM_THREADS unset, not compiled, one process) signs in to a folder
of its fbt home, and while it trains computes with its threads ÷ the runs signed in, counted again
every few seconds as runs come and go. Runs whose threads are set otherwise neither sign in nor
are counted."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import torch

from fbt_engine import paths
from fbt_engine.formats import counted
from fbt_engine.store.runs import process_alive, process_start_ticks

RECOUNT_S = 2.0  # how often a run counts the others: a second run's start is felt within this
ENTRY = re.compile(r"(\d+)-(\d+|None)@(.+)", re.ASCII)  # pid-start ticks@host


class CpuShare:
    """This process's place among the CPU runs of its machine; `alone` is the threads it takes
    when no other run is signed in."""

    def __init__(self, folder: Path, alone: int):
        self.folder, self.alone = folder, alone
        folder.mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname()
        pid = os.getpid()
        self.entry = folder / f"{pid}-{process_start_ticks(pid)}@{self.host}"
        self.entry.touch()
        self._next_count = 0.0
        try:
            self.joined = self.take()  # said once the run has a log: a run started second takes its share at once
        except OSError:
            self.close()  # not counted by others for a share it did not take
            raise

    @classmethod
    def claim(cls, device: torch.device, world: int, compiled: bool) -> "CpuShare | None":
        """A share for a run on `device`, or None where its threads are not fbt's to change: set by
        the user (OMP_NUM_THREADS; torchrun sets it too), or fixed in the kernels torch.compile
        generated for a CPU. A folder that cannot be written leaves the run every thread."""
        if device.type != "cpu" or world > 1 or compiled or "OMP_NUM_THREADS" in os.environ:
            return None
        try:
            return cls(paths.cpu_share_dir(), torch.get_num_threads())
        except OSError:
            return None

    def runs(self) -> int:
        """The CPU runs signed in on this host, this one included; a killed run's entry is removed."""
        count = 0
        for entry in self.folder.iterdir():
            signed = ENTRY.fullmatch(entry.name)
            if signed is None or signed[3] != self.host:
                continue
            if process_alive(int(signed[1]), None if signed[2] == "None" else int(signed[2])):
                count += 1
            else:
                entry.unlink(missing_ok=True)
        return max(1, count)  # this run's own entry, even if someone removed the file

    def take(self) -> str | None:
        """Take this run's share of the cores now; what changed, in words, or None."""
        runs = self.runs()
        threads = max(1, self.alone // runs)
        if threads == torch.get_num_threads():
            return None
        torch.set_num_threads(threads)  # the calling thread's: this is called where the run computes
        if runs == 1:
            return f"alone on the CPU again: computing with {counted(threads, 'thread')}"
        return f"{runs} fbt runs share the CPU: computing with {counted(threads, 'thread')} of {self.alone}"

    def recount(self) -> str | None:
        """`take()` every RECOUNT_S seconds; cheap enough to ask at every step."""
        now = time.monotonic()
        if now < self._next_count:
            return None
        self._next_count = now + RECOUNT_S
        try:
            return self.take()
        except OSError:  # the folder gone: keep the threads this run has
            return None

    def close(self) -> None:
        """Signed out, with every thread back: a caller of the engine in its own process goes on
        with the threads it had."""
        self.entry.unlink(missing_ok=True)
        torch.set_num_threads(self.alone)
