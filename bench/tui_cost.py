"""What the dashboard costs a run (issue 5 target: < 2 % of its throughput).

A real engine subprocess (`fbt run <preset>`) trains with and without the TUI attached, in pairs
run off/on and on/off alternately; with the TUI, the app (headless, Textual's run_test at
160×48) re-attaches to the run as soon as its folder exists and shows its dashboard live, exactly
as when a user opens `fbt` next to a running run. Throughput is the distillation epochs' img/s
from the run's own `epoch` events, the first epoch left out (warm-up); the cost is the mean of the
pairs' costs. The teacher is trained once, before the trials, into the bench's own data home. It
also prints the app's own CPU use from the end of the first distillation epoch to the engine's
exit (this process's CPU time over wall time: the UI thread and the tailing thread together; the
run's ending is in it).

    .venv/bin/python bench/tui_cost.py [--preset mlp_to_cnn] [--epochs 3] [--pairs 3] [--set KEY=VALUE …]
                                       [--engine-threads N]

--engine-threads 1 on a 2-core machine leaves the app a core of its own, as a GPU machine does
(its engine runs one Python thread feeding the GPU, beside many idle cores): what remains is the
cost of the app itself, not of two processes sharing too few cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fbt_engine.store.events import read_events

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Trial:
    """What every run of the bench trains: a preset and its overrides (e.g. the full dataset on a GPU,
    where the embedded 5,000 images last 0.1 s an epoch)."""

    preset: str
    sets: tuple[str, ...]
    engine_threads: int | None = None  # torch's CPU threads in the engine process; None = its default


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child only calls it
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the engine's process before it starts: killed when the bench dies, even by SIGKILL."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def engine(run: Trial, epochs: int) -> Iterator[subprocess.Popen]:
    """`fbt run` in its own session (a Ctrl-C meant for the bench does not reach it), killed with
    its whole process group if the bench ends first (an error, a Ctrl-C, a time limit's SIGINT)."""
    sets = [arg for kv in [*run.sets, f"train.epochs={epochs}"] for arg in ("--set", kv)]
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


def distillation_img_s(run_dir: Path) -> float:
    epochs = [e for e in read_events(run_dir / "events.jsonl")
              if e["type"] == "epoch" and e["phase"] == "distillation"]
    if len(epochs) < 2:
        raise SystemExit(f"{run_dir.name}: fewer than two distillation epochs; raise --epochs")
    return statistics.mean(e["img_s"] for e in epochs[1:])


def newest_run(home: Path, before: set[str]) -> Path | None:
    runs = home / "runs"
    fresh = [p for p in runs.iterdir() if p.name not in before] if runs.exists() else []
    return next((p for p in fresh if (p / "events.jsonl").exists()), None)


def existing(home: Path) -> set[str]:
    runs = home / "runs"
    return {p.name for p in runs.iterdir()} if runs.exists() else set()


def trial_without(home: Path, run: Trial, epochs: int) -> float:
    before = existing(home)
    with engine(run, epochs) as proc:
        if proc.wait() != 0:
            raise SystemExit("the engine failed; run the same command by hand to see why")
    return distillation_img_s(newest_run(home, before))


async def trial_with(home: Path, run: Trial, epochs: int) -> tuple[float, float]:
    """(the run's img/s, the app's CPU use as a fraction of one core after the first epoch)."""
    from fbt_tui.app import FbtApp
    from fbt_tui.widgets.run_view import RunView

    before = existing(home)
    with engine(run, epochs) as proc:
        while newest_run(home, before) is None and proc.poll() is None:  # the app re-attaches to running runs
            await asyncio.sleep(0.05)
        app = FbtApp(start_mode="presets")
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                def counted() -> bool:  # the epochs whose img/s count: after the first distillation epoch
                    views = app.screen.query(RunView)
                    return bool(views) and views.first().model.best is not None

                while proc.poll() is None and not counted():
                    await pilot.pause(0.2)
                if proc.returncode:
                    raise SystemExit("the engine failed; run the same command by hand to see why")
                if not counted():
                    raise SystemExit("the app never showed the run's first distillation epoch; raise --epochs")
                wall, cpu = time.perf_counter(), time.process_time()
                while proc.poll() is None:
                    await pilot.pause(0.2)
                app_cpu = (time.process_time() - cpu) / max(time.perf_counter() - wall, 1e-9)
        finally:
            app.cleanup()
        if proc.wait() != 0:
            raise SystemExit("the engine failed; run the same command by hand to see why")
    return distillation_img_s(newest_run(home, before)), app_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="mlp_to_cnn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3, help="off/on pairs, interleaved")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a preset override for every run")
    parser.add_argument("--engine-threads", type=int, help="torch CPU threads of the engine (default: torch's)")
    args = parser.parse_args()
    run = Trial(args.preset, tuple(args.sets), args.engine_threads)
    with tempfile.TemporaryDirectory(prefix="fbt-tui-cost-") as tmp:
        home = Path(tmp)
        os.environ["FBT_HOME"] = str(home)
        t = time.perf_counter()
        trial_without(home, run, 2)  # trains and caches the teacher
        print(f"teacher cached in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        off, on, app_cpu = [], [], []
        for i in range(args.pairs):
            # every other pair runs the TUI first, so that a second run's advantage (warm caches)
            # or a drift cancels out of the mean instead of passing for a cost or a gain
            tui_first = i % 2 == 1
            if not tui_first:
                off.append(trial_without(home, run, args.epochs))
            rate, cpu = asyncio.run(trial_with(home, run, args.epochs))
            if tui_first:
                off.append(trial_without(home, run, args.epochs))
            on.append(rate)
            app_cpu.append(cpu)
            print(f"pair {i + 1}{' (TUI first)' if tui_first else ''}: without {off[-1]:.0f} img/s, with the TUI "
                  f"{on[-1]:.0f} img/s (app: {cpu:.1%} of a core)", file=sys.stderr)
    costs = [1 - b / a for a, b in zip(off, on)]
    cost = statistics.mean(costs)
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"{platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
          f"load {os.getloadavg()[0]:.1f} · Python {platform.python_version()}")
    threads = f", engine on {args.engine_threads} torch thread(s)" if args.engine_threads else ""
    print(f"{args.preset}, {args.epochs} epochs{threads}, img/s of distillation epochs 2..{args.epochs}:")
    print(f"  without the TUI  {statistics.mean(off):8.0f}  ({', '.join(f'{v:.0f}' for v in off)})")
    print(f"  TUI attached     {statistics.mean(on):8.0f}  ({', '.join(f'{v:.0f}' for v in on)})")
    spread = (f", standard error {100 * statistics.stdev(costs) / len(costs) ** 0.5:.2f} %"
              if len(costs) > 1 else "")
    print(f"  cost of the TUI  {cost * 100:7.1f} %   (mean of the pairs' costs{spread}; target < 2 %)")
    print(f"  per pair (%): {', '.join(f'{100 * c:+.1f}' for c in costs)}")
    print(f"  the app's own CPU after epoch 1: {statistics.mean(app_cpu):.1%} of one core "
          f"({', '.join(f'{v:.1%}' for v in app_cpu)})")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C, or the GPU check's time limit
        raise SystemExit("tui_cost: interrupted before it measured every pair") from None
