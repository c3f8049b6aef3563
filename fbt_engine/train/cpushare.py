"""Runs on one CPU split its cores between them. torch gives each process a thread per core, and
runs that each take every core wait on one another's threads: two `mlp_to_cnn` runs at once on
two cores took 114 s with two threads each, 33 s with one (bench/cpu_share.sh, docs/PERF.md).
Every CPU run signs in to a folder of its fbt home. One left to choose its threads (OMP_NUM_THREADS
unset, not compiled, one process) trains with the threads the others leave ÷ the runs that share,
counted again every few seconds as runs come and go; one whose threads are set otherwise keeps
them, and its entry says how many it holds."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fbt_engine import paths
from fbt_engine.formats import counted
from fbt_engine.store.runs import process_alive, process_start_ticks

RECOUNT_S = 2.0  # how often a run counts the others: a second run's start is felt within this
ENTRY = re.compile(r"(\d+)-(\d+|None)-\d+@(.+)", re.ASCII)  # pid-start ticks-serial@host
_serials = itertools.count()  # a caller of the engine may hold two shares in one process


@dataclass(frozen=True)
class Census:
    sharing: int  # the runs that split what is left, this one included
    fixed_runs: int  # the runs whose threads are set otherwise
    fixed_threads: int  # and the threads those hold

    @property
    def runs(self) -> int:
        return self.sharing + self.fixed_runs


class CpuShare:
    """This process's place among the CPU runs of its machine: `alone`, the threads it takes when
    no other run is signed in; `fixed`, whether it keeps them whatever the others do."""

    def __init__(self, folder: Path, alone: int, fixed: bool = False):
        self.folder, self.alone, self.fixed = folder, alone, fixed
        self.host = socket.gethostname()
        pid = os.getpid()
        self.entry = folder / f"{pid}-{process_start_ticks(pid)}-{next(_serials)}@{self.host}"
        self._sign_in()
        self._next_count = 0.0
        try:
            # said once the run has a log: a run started second takes its share at once
            self.joined = None if fixed else self.take()
        except BaseException:  # an unreadable folder, a Ctrl-C: not counted by others for a share it did not take
            self.close()
            raise

    def _sign_in(self) -> None:
        """The entry, whole at once: half-written, a run that holds its threads read as one that shares."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{self.entry.name}.tmp"
        tmp.write_text(str(self.alone) if self.fixed else "")
        os.replace(tmp, self.entry)

    @classmethod
    def claim(cls, device: torch.device, world: int, compiled: bool) -> "CpuShare | None":
        """This run's share where it runs on a CPU. Its threads are fbt's to change unless set by
        the user (OMP_NUM_THREADS; the launcher sets it for torchrun's processes) or fixed in the
        kernels torch.compile generated for a CPU. A folder that cannot be written: no share."""
        if device.type != "cpu":
            return None
        fixed = world > 1 or compiled or "OMP_NUM_THREADS" in os.environ
        try:
            return cls(paths.cpu_share_dir(), torch.get_num_threads(), fixed)
        except OSError:
            return None

    def census(self) -> Census:
        """The CPU runs signed in on this host, this one among those that share (only they count);
        a killed run's entry is removed."""
        sharing = fixed_runs = fixed_threads = 0
        for entry in self.folder.iterdir():
            signed = ENTRY.fullmatch(entry.name)
            if signed is None or signed[3] != self.host or entry == self.entry:
                continue
            if not process_alive(int(signed[1]), None if signed[2] == "None" else int(signed[2])):
                with contextlib.suppress(OSError):  # removed meanwhile by another run's census, or no file
                    entry.unlink()
                continue
            try:
                held = entry.read_bytes().strip()
            except OSError:  # signed out since the listing, or no entry of a run's (a folder)
                continue
            if held.isdigit():  # bytes: ASCII digits only
                fixed_runs, fixed_threads = fixed_runs + 1, fixed_threads + int(held)
            else:
                sharing += 1
        return Census(sharing + 1, fixed_runs, fixed_threads)

    def take(self) -> str | None:
        """Take this run's share of the cores now; what changed, in words, or None. An entry that
        someone removed is made again: the others would take this run's cores as well."""
        if not self.entry.exists():
            self._sign_in()
        census = self.census()
        threads = max(1, (self.alone - census.fixed_threads) // census.sharing)
        if threads == torch.get_num_threads():
            return None
        torch.set_num_threads(threads)  # the calling thread's: this is called where the run computes
        if census.runs == 1:
            return f"alone on the CPU again: computing with {counted(threads, 'thread')}"
        return f"{census.runs} fbt runs share the CPU: computing with {counted(threads, 'thread')} of {self.alone}"

    def recount(self) -> str | None:
        """`take()` every RECOUNT_S seconds; cheap enough to ask at every step."""
        now = time.monotonic()
        if self.fixed or now < self._next_count:
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
