"""What the dashboard costs a run (issue 5 target: < 2 % of its throughput).

One real engine subprocess (`fbt run <preset>`) trains for as long as the bench needs, while the
app (headless, Textual's run_test at 160×48, in this process) attaches to it and detaches again,
exactly as when a user opens `fbt` next to a running run and closes it. Throughput is measured in
windows of whole distillation epochs, each entirely with the app showing the run's dashboard or
entirely without the app: images trained over the wall time between two `epoch` events, so each
window holds its epochs' evaluation, stage statistics and checkpoints as well as their steps. An
attach or a detach, and the epoch it falls in, are never measured: the next window starts at the
first epoch event at least --settle seconds after the switch (the app's start-up, which reads the
run's whole history, is a one-off cost; what is measured is the dashboard tailing the run).

Windows come in pairs, without/with and with/without alternately (ABBA), so that the run's drift
cancels out of the mean instead of passing for a cost or a gain; the cost is the mean of the pairs'
costs, with its standard error (the mean plus two standard errors bounds it at 95 % confidence or
more from 10 pairs on). Comparing windows of one run, instead of whole runs, leaves out
what differs from one process to the next (warm-up, memory layout, the machine's state), which on
a 2-core VM was as large as the effect sought.

    .venv/bin/python bench/tui_cost.py [--preset mlp_to_cnn] [--pairs 10] [--window 1] [--settle 1]
                                       [--seconds S] [--set KEY=VALUE …] [--engine-threads N]

--engine-threads 1 on a 2-core machine leaves the app a core of its own, as a GPU machine does
(its engine runs one Python thread feeding the GPU, beside many idle cores): what remains is the
cost of the app itself, not of two processes sharing too few cores.

--seconds S sizes the bench to a time limit (the GPU check's), where an epoch's length is not known
beforehand: after each pair it stops if another pair as long as the longest so far would end past
S seconds from the bench's start, and reports the pairs it has (--pairs is then the most it
measures). The longest, not the last: pairs alternate between holding an attach (the app's start
and its reading of the run's history) and holding a detach.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import itertools
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fbt_engine.store.events import EventTail

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 100_000  # the engine trains until the bench has its windows, then is killed
POLL = 0.05  # seconds between reads of the run's events, alike with and without the app


@dataclass(frozen=True)
class Trial:
    """What the bench's run trains: a preset and its overrides (e.g. the full dataset on a GPU,
    where the embedded 5,000 images last 0.1 s an epoch)."""

    preset: str
    sets: tuple[str, ...]
    engine_threads: int | None = None  # torch's CPU threads in the engine process; None = its default


class OutOfTime(Exception):
    """Another pair would outlast --seconds."""


@dataclass
class Pacer:
    """Counts the windows as they end, and raises OutOfTime at the end of a pair when another pair
    as long as the longest so far would end more than `seconds` after `start` (None: no limit)."""
    seconds: float | None
    start: float = field(default_factory=time.monotonic)
    pair_start: float = 0.0
    longest: float = 0.0
    windows: int = 0

    def measuring(self) -> None:
        self.pair_start = time.monotonic()

    def window_done(self) -> None:
        self.windows += 1
        if self.windows % 2:
            return
        now = time.monotonic()
        self.longest, self.pair_start = max(self.longest, now - self.pair_start), now
        if self.seconds is not None and now + self.longest > self.start + self.seconds:
            raise OutOfTime


@dataclass(frozen=True)
class Window:
    attached: bool
    img_s: float
    app_cpu: float  # this process's CPU time over the window's wall time, as a fraction of one core


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child only calls it
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the engine's process before it starts: killed when the bench dies, even by SIGKILL."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def engine(run: Trial) -> Iterator[subprocess.Popen]:
    """`fbt run` in its own session (a Ctrl-C meant for the bench does not reach it), killed with
    its whole process group when the bench is done with it or ends first (an error, a Ctrl-C, a
    time limit's SIGINT)."""
    sets = [arg for kv in [*run.sets, f"train.epochs={EPOCHS}"] for arg in ("--set", kv)]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(run.engine_threads)} if run.engine_threads else {}))
    proc = subprocess.Popen([sys.executable, "-m", "fbt_engine", "run", str(REPO / "presets" / f"{run.preset}.toml"),
                             *sets, "--quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_die_with_parent, cwd=REPO, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: start_new_session made pgid = pid
            proc.wait()


class Epochs:
    """The run's distillation `epoch` events as they are written."""

    def __init__(self, events: Path, proc: subprocess.Popen):
        self.tail, self.proc = EventTail(events), proc
        self.unread: deque[dict] = deque()

    def _read(self) -> None:
        self.unread += (e for e in self.tail.poll() if e["type"] == "epoch" and e["phase"] == "distillation")

    def skip(self) -> None:
        """Forget the epochs written so far: the next one awaited is written after this call."""
        self._read()
        self.unread.clear()

    async def next(self) -> dict:
        while True:
            self._read()
            if self.unread:
                return self.unread.popleft()
            if self.proc.poll() is not None:
                raise SystemExit(f"the engine ended (exit {self.proc.returncode}) before the bench had its windows; "
                                 "run the same command by hand to see why")
            await asyncio.sleep(POLL)


def run_folders(home: Path) -> set[Path]:
    return set((home / "runs").glob("*/events.jsonl"))


async def run_folder(home: Path, proc: subprocess.Popen, before: set[Path]) -> Path:
    """The folder of the engine's run, once its events file exists."""
    while proc.poll() is None:
        if fresh := run_folders(home) - before:
            return fresh.pop().parent
        await asyncio.sleep(POLL)
    raise SystemExit(f"the engine ended (exit {proc.returncode}) before its run began; "
                     "run the same command by hand to see why")


async def measure(epochs: Epochs, attached: bool, count: int, window: int, settle: float,
                  windows: list[Window], pacer: Pacer) -> None:
    """Appends `count` consecutive windows of `window` epochs each, from the first epoch written at
    least `settle` seconds from now, to `windows` as each ends."""
    await asyncio.sleep(settle)
    epochs.skip()
    start = await epochs.next()
    for _ in range(count):
        cpu, images = time.process_time(), 0.0
        for _ in range(window):
            end = await epochs.next()
            images += end["img_s"] * end["epoch_time"]  # the epoch's training images
        wall = end["time"] - start["time"]
        windows.append(Window(attached, images / wall, (time.process_time() - cpu) / wall))
        print(f"window {len(windows)}: {'with the TUI' if attached else 'without'} {windows[-1].img_s:.0f} img/s",
              file=sys.stderr)
        pacer.window_done()
        start = end


async def with_app(epochs: Epochs, count: int, window: int, settle: float, windows: list[Window],
                   pacer: Pacer) -> None:
    from fbt_tui.app import FbtApp
    from fbt_tui.widgets.run_view import RunView

    app = FbtApp(start_mode="presets")  # re-attaches to the running run and opens its dashboard
    try:
        async with app.run_test(size=(160, 48)):
            def showing() -> bool:  # the run's history read and its first evaluated epoch on screen
                views = app.screen.query(RunView)
                return bool(views) and views.first().model.best is not None

            while not showing():
                if epochs.proc.poll() is not None:
                    raise SystemExit("the engine ended before the app showed its run")
                await asyncio.sleep(POLL)
            await measure(epochs, True, count, window, settle, windows, pacer)
    finally:
        app.cleanup()


def schedule(pairs: int) -> list[bool]:
    """Whether the app is attached in each window: without/with, with/without, … (ABBA)."""
    return [(i % 4) in (1, 2) for i in range(2 * pairs)]


async def measure_run(home: Path, run: Trial, pairs: int, window: int, settle: float, windows: list[Window],
                      pacer: Pacer) -> None:
    """Trains one run and appends its windows to `windows` as each ends (an interrupted bench
    still reports its complete pairs)."""
    before = run_folders(home)
    with engine(run) as proc:
        folder = await run_folder(home, proc, before)
        print(f"engine pid {proc.pid}: run folder {folder}", file=sys.stderr)  # where to look if it stalls
        epochs = Epochs(folder / "events.jsonl", proc)
        await epochs.next()  # the first distillation epoch: warm-up (and, on a GPU, compilation)
        print("first distillation epoch done; measuring", file=sys.stderr)
        pacer.measuring()
        for attached, block in itertools.groupby(schedule(pairs)):
            count = len(list(block))
            await (with_app(epochs, count, window, settle, windows, pacer) if attached
                   else measure(epochs, False, count, window, settle, windows, pacer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mlp_to_cnn")
    parser.add_argument("--pairs", type=int, default=10, help="pairs of windows, without/with the app (ABBA)")
    parser.add_argument("--window", type=int, default=1, help="distillation epochs per window")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds after an attach or a detach before a window may start")
    parser.add_argument("--seconds", type=float, help="end within this many seconds of the start, at a pair's "
                                                       "end (default: no limit)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a preset override for the run")
    parser.add_argument("--engine-threads", type=int, help="torch CPU threads of the engine (default: torch's)")
    parser.add_argument("--home", type=Path, help="the fbt home of the bench's run, whose cached teacher it reuses "
                                                  "(default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    for name in ("pairs", "window"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: at least 1, got {getattr(args, name)}")
    if args.seconds is not None and args.seconds <= 0:
        parser.error(f"--seconds: more than 0, got {args.seconds:g}")
    run = Trial(args.preset, tuple(args.sets), args.engine_threads)
    windows: list[Window] = []
    pacer = Pacer(args.seconds)
    cut = ""
    with contextlib.ExitStack() as stack:
        # absolute: the engine runs in the repository, the bench and the app wherever it was started
        home = (args.home or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fbt-tui-cost-")))).resolve()
        os.environ["FBT_HOME"] = str(home)  # the engine's and the app's
        try:
            asyncio.run(measure_run(home, run, args.pairs, args.window, args.settle, windows, pacer))
        except KeyboardInterrupt:  # Ctrl-C, or the GPU check's time limit: report the pairs measured
            cut = "interrupted"
        except OutOfTime:
            cut = f"stopped by --seconds {args.seconds:g}"
    if len(windows) < 2:
        raise SystemExit("tui_cost: interrupted before it measured a pair")
    pairs = list(zip(windows[::2], windows[1::2]))
    windows = windows[:2 * len(pairs)]
    off = [a if not a.attached else b for a, b in pairs]
    on = [b if not a.attached else a for a, b in pairs]
    costs = [1 - b.img_s / a.img_s for a, b in zip(off, on)]
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"{platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
          f"load {os.getloadavg()[0]:.1f} · Python {platform.python_version()}")
    threads = f", engine on {args.engine_threads} torch thread(s)" if args.engine_threads else ""
    cut = f" ({cut} after {len(pairs)} of {args.pairs} pairs)" if len(pairs) < args.pairs else ""
    print(f"{args.preset}{threads}: one run, {len(windows)} windows of {args.window} distillation epoch(s){cut}, "
          "img/s over each window's wall time:")
    print(f"  without the TUI  {statistics.mean(w.img_s for w in off):8.0f}  ({', '.join(f'{w.img_s:.0f}' for w in off)})")
    print(f"  TUI attached     {statistics.mean(w.img_s for w in on):8.0f}  ({', '.join(f'{w.img_s:.0f}' for w in on)})")
    cost = statistics.mean(costs)
    error = statistics.stdev(costs) / len(costs) ** 0.5 if len(costs) > 1 else None
    spread = (f", standard error {100 * error:.2f} %; mean + 2 standard errors {100 * (cost + 2 * error):.1f} %"
              if error is not None else "")
    print(f"  cost of the TUI  {cost * 100:7.1f} %   (mean of the pairs' costs{spread}; target < 2 %)")
    print(f"  per pair (%): {', '.join(f'{100 * c:+.1f}' for c in costs)}")
    print(f"  this process's CPU, with the app: {statistics.mean(w.app_cpu for w in on):.1%} of one core; "
          f"without: {statistics.mean(w.app_cpu for w in off):.1%}")


if __name__ == "__main__":
    main()
