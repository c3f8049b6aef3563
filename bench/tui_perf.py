"""TUI speed targets (issue 4), measured headless through Textual's run_test:

  history   History opens in < 300 ms with 1,000 runs in the index
  latency   a new event appears on screen < 0.5 s after the engine writes it
  ui_block  the UI thread never blocks > 50 ms while a run streams 50 step events per second
            (measured with 100,000 points already on the curves)

The "engine" here is a writer process that creates a real run folder through the engine's store
and appends step events at a fixed rate, so the app re-attaches to it as to any running run.

    .venv/bin/python bench/tui_perf.py [--runs 1000] [--rate 50] [--seconds 20] [--preload 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fbt_engine.config.fields import to_table
from fbt_engine.config.presets import collect
from fbt_engine.store.events import EventWriter, read_events
from fbt_engine.store.runs import RunStore, new_run_id

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "presets" / "mlp_to_cnn.toml"
TERMS = ["ce", "fusion/ce", "ts/nce", "ts/logit", "tf/nce", "tf/logit", "fs/nce", "fs/logit"]


def config() -> dict:
    cfg = collect(PRESET).config
    table = to_table(cfg)
    table["method"] = {"name": cfg.method.name, **table["method"]}
    return table


def step_event(writer: EventWriter, step: int) -> None:
    losses = {t: 2.0 + (step % 97) / 97 + i for i, t in enumerate(TERMS)}
    writer.write("step", phase="distillation", step=step, epoch=1 + step // 1000, lr=0.05,
                 loss=sum(losses.values()), losses=losses, img_s=1000.0)


def writer_main(home: Path, rate: float, seconds: float, preload: int) -> None:
    """The fake engine: one running run, `preload` steps at once, then `rate` steps a second."""
    store = RunStore(home)
    run_id = new_run_id()
    cfg = config()
    folder = store.create(config=cfg, preset_raw=PRESET.read_bytes(), preset_source=str(PRESET), name="bench",
                          tags=[], extra_meta={}, run_id=run_id)
    writer = EventWriter(folder / "events.jsonl")
    writer.write("run_started", run_id=run_id, segment=1, config=cfg,
                 device={"type": "cpu", "name": "bench writer", "amp": "off"},
                 params={"student": 1, "teacher": 1, "fusion": 1}, uses_teacher=True,
                 data={"name": "fashion_mnist_5k"}, steps_per_epoch=1000, loss_terms=TERMS)
    writer.write("phase", phase="distillation", epochs=1000, steps_per_epoch=1000, from_step=0)
    for step in range(1, preload + 1):
        step_event(writer, step)
    print(run_id, flush=True)
    step, start, beat = preload, time.time(), time.time()
    while time.time() - start < seconds:
        step += 1
        step_event(writer, step)
        if time.time() - beat > 4:
            store.update_meta(run_id, heartbeat=time.time())
            beat = time.time()
        time.sleep(max(0.0, start + (step - preload) / rate - time.time()))
    writer.close()
    store.update_meta(run_id, status="finished", ended=time.time())
    store.close()


def make_runs(home: Path, n: int) -> None:
    store = RunStore(home)
    cfg, raw = config(), PRESET.read_bytes()
    t0 = time.time() - n * 60
    for i in range(n):
        run_id = new_run_id(t0 + i * 60)
        store.create(config=cfg, preset_raw=raw, preset_source=str(PRESET), name=f"run{i}",
                              tags=["bench"] if i % 3 == 0 else [], extra_meta={}, run_id=run_id)
        store.update_meta(run_id, status="finished" if i % 7 else "failed", ended=t0 + i * 60 + 30)
        store.refresh_index(run_id)
    store.close()


async def bench_history(n: int) -> dict[str, str]:
    """Switching to History (its table is kept loaded), and a cold load of every row from the index.
    Wall time, and the process's CPU time beside it: on a shared machine the wall time also counts
    the time other processes held the cores."""
    from fbt_tui.app import FbtApp
    from fbt_tui.screens.history import HistoryScreen
    from fbt_tui.widgets.run_table import RunTable

    app = FbtApp(start_mode="presets")
    times = {}

    def since(start: tuple[float, float]) -> str:
        return f"{(time.perf_counter() - start[0]) * 1000:.0f} ms (cpu {(time.process_time() - start[1]) * 1000:.0f})"

    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    start = now()
    async with app.run_test(size=(200, 60)) as pilot:
        times["app start → Presets on screen"] = since(start)
        history = app.get_screen("history")
        while history.query_one(RunTable).row_count < n:
            await pilot.pause(0.05)
        for label in ("h → History on screen", "h → History on screen, again"):
            await pilot.press("p")
            await pilot.pause(1.0)
            start = now()
            await pilot.press("h")
            while not isinstance(app.screen, HistoryScreen):
                await asyncio.sleep(0.001)
            await pilot.pause(0)  # the frame that shows it
            times[f"{label} ({n} runs)"] = since(start)
        history.rows, history.shown = [], []  # forget them: the next reload rebuilds the table
        history.query_one(RunTable).clear()
        start = now()
        history.reload()
        while not history.query_one(RunTable).row_count:
            await asyncio.sleep(0.001)
        times["cold load: index → first rows shown"] = since(start)
        while history.query_one(RunTable).row_count < n:
            await asyncio.sleep(0.001)
        await pilot.pause(0)
        times[f"cold load: index → all {n} rows"] = since(start)
    app.cleanup()
    return times


async def bench_stream(home: Path, rate: float, seconds: float, preload: int) -> dict[str, float]:
    from fbt_tui.app import FbtApp
    from fbt_tui.widgets.run_view import RunView

    drawn: dict[str, list[tuple[float, int]]] = {"text": [], "plot": []}  # (when, newest step shown)
    costs: dict[str, list[float]] = {"text": [], "plot": []}
    originals = {"text": RunView._draw_text, "plot": RunView._draw_plot}

    def timed(kind: str):
        def wrapper(self: RunView, *args, **kwargs):
            with self.model.lock:
                step = self.model.step
            t = time.perf_counter()
            painted = originals[kind](self, *args, **kwargs)
            if painted is False:
                return painted  # a plot whose curves had not changed: nothing drawn
            costs[kind].append((time.perf_counter() - t) * 1000)
            if kind == "text" or args[0].id == "plot-loss":
                drawn[kind].append((time.time(), step))
            return painted
        return wrapper

    RunView._draw_text, RunView._draw_plot = timed("text"), timed("plot")  # type: ignore[method-assign]
    writer = subprocess.Popen([sys.executable, __file__, "--writer", str(home), str(rate), str(seconds + 30),
                               str(preload)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    run_id = writer.stdout.readline().strip()
    app = FbtApp(start_mode="dashboard")
    lags: list[float] = []
    busy: list[float] = []  # CPU the UI thread spent in each gap: lag without other processes' share
    try:
        async with app.run_test(size=(200, 60)) as pilot:
            deadline = time.monotonic() + 120
            while not app.screen.query(RunView) or app.screen.query_one(RunView).model.step <= preload:
                assert time.monotonic() < deadline, "the app never caught up with the preloaded events"
                await pilot.pause(0.1)
            await pilot.pause(2.0)
            for kind in drawn:
                drawn[kind].clear()
                costs[kind].clear()
            measure_from = time.time()
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:  # event-loop lag: how long the UI thread was busy
                t, c = time.perf_counter(), time.thread_time()
                await asyncio.sleep(0.005)
                lags.append((time.perf_counter() - t - 0.005) * 1000)
                busy.append((time.thread_time() - c) * 1000)
            points = app.screen.query_one(RunView).model.point_count()
    finally:
        RunView._draw_text, RunView._draw_plot = originals["text"], originals["plot"]  # type: ignore[method-assign]
        writer.kill()
        writer.wait()
        app.cleanup()
    written = {ev["step"]: ev["time"] for ev in read_events(home / "runs" / run_id / "events.jsonl")
               if ev["type"] == "step" and measure_from <= ev["time"] <= measure_from + seconds - 1}
    result: dict[str, float] = {"events streamed": len(written), "points on the curves": points}
    for kind, label in (("text", "status line"), ("plot", "loss curve")):
        latencies = [(next(t for t, s in drawn[kind] if s >= step and t >= wrote) - wrote) * 1000
                     for step, wrote in written.items() if any(s >= step and t >= wrote for t, s in drawn[kind])]
        result[f"{label} latency median ms"] = statistics.median(latencies)
        result[f"{label} latency max ms"] = max(latencies)
        drawn_what = label if kind == "text" else "plot"  # every plot's repaints, not only the loss curve's
        result[f"{drawn_what} repaints/s"] = len(costs[kind]) / seconds
        result[f"{drawn_what} draw cost max ms"] = max(costs[kind])
    result["UI lag p99 ms"] = _p(lags, 99)
    result["UI lag max ms"] = max(lags)
    result["UI thread busy p99 ms (cpu)"] = _p(busy, 99)
    result["UI thread busy max ms (cpu)"] = max(busy)
    return result


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        writer_main(Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--preload", type=int, default=100_000)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FBT_HOME"] = str(Path(tmp) / "history")
        t = time.perf_counter()
        make_runs(Path(os.environ["FBT_HOME"]), args.runs)
        print(f"made {args.runs} runs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        for label, value in asyncio.run(bench_history(args.runs)).items():
            rows.append((label, value, "< 300 ms" if label.startswith("h →") else ""))
        os.environ["FBT_HOME"] = str(Path(tmp) / "stream")
        stream = asyncio.run(bench_stream(Path(os.environ["FBT_HOME"]), args.rate, args.seconds, args.preload))
    targets = {"status line latency max ms": "< 500 ms", "UI lag max ms": "< 50 ms",
               "UI thread busy max ms (cpu)": "< 50 ms"}
    for key, value in stream.items():
        rows.append((key, f"{value:,.1f}" if isinstance(value, float) else f"{value:,}", targets.get(key, "")))
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"{platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
          f"load {os.getloadavg()[0]:.1f} · Python {platform.python_version()}")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':{width}}  {'value':>20}  target")
    for name, value, target in rows:
        print(f"{name:{width}}  {value:>20}  {target}")


if __name__ == "__main__":
    main()
