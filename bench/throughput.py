#!/usr/bin/env python3
"""Training throughput of fbt's engine against the references it must beat, in one process,
interleaved A/B/C per repeat so that drift hits every variant alike:

  engine   fbt's real loop (run_phase: data on the device, batched augmentation, logging, events)
  classic  the same loop fed by the classic pipeline (per-image torchvision/PIL in DataLoader workers)
  bare     the same method's loss (compiled when fbt's loop is), optimiser and schedule on one
           pre-made device batch: no data, no logging, no bookkeeping for the log

for the methods scratch, kd, ofa_logit and fbt, all eager (`train.compile="off"` unless a --set
says otherwise). Prints images/s, peak GPU memory and the ratios the targets are about (fbt/kd
step cost, engine/bare, engine/classic), and fbt's achieved TFLOP/s (FLOPs of one step from
torch.utils.flop_counter) against the card's bf16 peak.

    python bench/throughput.py --device cpu                       # mlp_to_cnn at its preset batch
    python bench/throughput.py --device cuda --preset paper/cifar100_vit_s_to_resnet18 \\
        --batch 128 --set data.root='"/data/cifar100"'
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("scratch", "kd", "ofa_logit", "fbt")
INTERVAL = 5  # steps between fbt's log steps (where its loop reads back), and between the bare loop's syncs
# dense bf16 peak (TFLOP/s) by a substring of the device name; data, not a guess per call
BF16_PEAK = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}


def build(preset: str, method: str, sets: list[str], device: str, pipeline: str, steps: int, batch: int):
    """A prepared run (data, models, method) whose training epoch is exactly `steps` steps."""
    from fbt_engine.config.presets import resolve
    from fbt_engine.train.engine import prepare, select_device

    # eager like the bare loop (a --set may say otherwise): compiled speed is what an epoch shows, and
    # eight compilations would outlast the GPU check
    extra = ['train.compile="off"', *sets, f'method.name="{method}"', f'data.pipeline="{pipeline}"', f"data.batch_size={batch}",
             f"data.subset={steps * batch}", f'run.device="{device}"', f"train.log_every={INTERVAL}"]
    if pipeline == "classic":
        extra.append(f"data.workers={max(1, (os.cpu_count() or 2) - 1)}")
    resolved = resolve(preset, extra)
    return prepare(resolved, select_device(resolved.config.run.device))


def distillation_phase(p, run_dir: Path):
    """The distillation phase of `p` for one epoch, with the preset's optimiser and a cosine schedule."""
    from fbt_engine.train.engine import _phase
    from fbt_engine.train.optim import OptimSpec

    o = p.resolved.config.optim
    return _phase("distillation", p.method, p, 1, OptimSpec(o.name, o.lr, o.weight_decay, o.momentum), 0.0,
                  "cosine", 0.01, 0.0, o.grad_clip, run_dir, "", "student")


def engine_phase(p, home: Path):
    """(the distillation phase, its reporter) of a bench run in `home`, as fbt's loop runs it."""
    from fbt_engine.store.runs import RunStore
    from fbt_engine.train.engine import to_config_table
    from fbt_engine.train.report import HumanOutput, Reporter

    store = RunStore(home)
    run_dir = store.create(config=to_config_table(p.resolved.config), preset_raw=b"", preset_source="bench",
                           name="bench", tags=["bench"], extra_meta={})
    phase = distillation_phase(p, run_dir)
    phase.is_main = False  # writes no checkpoints (the paper pair's would be ~400 MB a measurement)
    return phase, Reporter(store, run_dir.name, False, HumanOutput(quiet=True))


def run_engine(phase, reporter) -> None:
    from fbt_engine.train.loop import LoopState, StopFlag, run_phase

    with StopFlag() as stop:
        run_phase(phase, LoopState(), reporter, stop)
    reporter.finish("finished", 0)


def engine_rate(p, home: Path) -> tuple[float, float]:
    """(images/s, peak GiB) of fbt's own loop over one epoch, warm-up interval excluded."""
    phase, reporter = engine_phase(p, home)
    _reset_peak(p.device)
    run_engine(phase, reporter)
    events = reporter.store.events(reporter.run_id)
    for e in events:
        if e["type"] == "warning":  # e.g. a compile that failed: that loop's rates are eager ones
            print(f"warning ({p.resolved.config.method.name}): {e['message']}", file=sys.stderr)
    rates = [e["img_s"] for e in events if e["type"] == "step"][1:]
    return statistics.median(rates), _peak(p.device)


def bare_rate(p, steps: int, home: Path) -> tuple[float, float]:
    import torch

    from fbt_engine.config.schema import CUDA_GRAPH_MODES
    from fbt_engine.train.loop import fit_channels

    phase = distillation_phase(p, home)  # saves nothing there

    def total_loss(x, y):  # the method's loss, none of the log's bookkeeping
        return sum(p.method(x, y).losses.values())

    # compiled as fbt's loop is, when a --set asks for it
    mode = phase.compile_mode
    forward = total_loss if mode is None else torch.compile(total_loss, mode=mode)
    x, y = next(iter(p.data.train.epoch(0)))
    x = fit_channels(x, p.student.in_chans, phase.memory_format).clone()
    if y.is_floating_point():
        y = y.clone()
    p.method.train()
    _reset_peak(p.device)
    # timed by intervals of steps, synchronised only at their ends as fbt's loop is at its log steps:
    # a sync per step would idle the device while Python queues the next step
    times = []
    for i in range(INTERVAL * max(2, -(-steps // INTERVAL))):
        if i % INTERVAL == 0:
            _sync(p.device)
            times.append(time.perf_counter())
        if mode in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()
        with phase.autocast():
            loss = forward(x, y)
        phase.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if phase.grad_clip:
            torch.nn.utils.clip_grad_norm_(p.method.parameters(), phase.grad_clip)
        phase.optimizer.step()
        phase.scheduler.step()
    _sync(p.device)
    times.append(time.perf_counter())
    intervals = [b - a for a, b in zip(times, times[1:])][1:]  # the first interval warms up
    return INTERVAL * len(x) / statistics.median(intervals), _peak(p.device)


def step_flops(p) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x, y = next(iter(p.data.train.epoch(0)))
    from fbt_engine.train.loop import fit_channels

    x = fit_channels(x, p.student.in_chans)
    with FlopCounterMode(display=False) as counter:
        out = p.method(x, y)
        sum(out.losses.values()).backward()
    p.method.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device) -> float:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--preset", default="mlp_to_cnn")
    ap.add_argument("--batch", type=int, default=0, help="batch size (default: the preset's)")
    ap.add_argument("--steps", type=int, default=30, help="steps per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--no-classic", action="store_true", help="skip the classic-pipeline variant")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra preset overrides")
    args = ap.parse_args()
    if args.steps < 2 * INTERVAL:  # the first interval of each measurement warms up and is not counted
        ap.error(f"--steps: at least {2 * INTERVAL}, got {args.steps}")
    if args.repeats < 1:
        ap.error(f"--repeats: at least 1, got {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="fbt-throughput-") as tmp:
        os.environ["FBT_HOME"] = tmp
        return measure(args, Path(tmp))


def measure(args: argparse.Namespace, home: Path) -> int:
    import torch

    from fbt_engine.config.presets import resolve

    batch = args.batch or resolve(args.preset, args.sets).config.data.batch_size
    methods = args.methods.split(",")
    variants = ["engine", "bare"] + ([] if args.no_classic else ["classic"])
    rates: dict[tuple[str, str], list[float]] = {}
    peaks: dict[tuple[str, str], float] = {}
    prepared = {(m, v): build(args.preset, m, args.sets, args.device, "classic" if v == "classic" else "device",
                              args.steps, batch) for m in methods for v in variants}
    # every measurement compiles its own step (when compiling); past torch's recompile limit (8 for
    # one function) dynamo would run the rest eagerly, and the table would compare unlike things
    torch._dynamo.config.recompile_limit = max(8, 2 * len(prepared) * args.repeats)
    for _ in range(args.repeats):
        for m in methods:
            for v in variants:
                p = prepared[(m, v)]
                rate, peak = bare_rate(p, args.steps, home) if v == "bare" else engine_rate(p, home)
                rates.setdefault((m, v), []).append(rate)
                peaks[(m, v)] = max(peaks.get((m, v), 0.0), peak) if peak == peak else peak
    med = {k: statistics.median(v) for k, v in rates.items()}
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# throughput: {args.preset}, batch {batch}, {device_name}, torch {torch.__version__}")
    print(f"{'method':10s} " + " ".join(f"{v + ' img/s':>14s}" for v in variants) + f" {'engine/bare':>12s}"
          + ("" if args.no_classic else f" {'engine/classic':>15s}") + f" {'peak GiB':>9s}")
    for m in methods:
        row = f"{m:10s} " + " ".join(f"{med[(m, v)]:14.0f}" for v in variants)
        row += f" {med[(m, 'engine')] / med[(m, 'bare')]:12.2f}"
        if not args.no_classic:
            row += f" {med[(m, 'engine')] / med[(m, 'classic')]:15.2f}"
        peak = peaks[(m, "engine")]
        row += f" {peak:9.2f}" if peak == peak else f" {'–':>9s}"
        print(row)
    if "fbt" in methods and "kd" in methods:
        for v in ("bare", "engine"):
            print(f"fbt/kd step cost ({v}): {med[('kd', v)] / med[('fbt', v)]:.2f}×")
    if "fbt" in methods:
        flops = step_flops(prepared[("fbt", "bare")])
        achieved = flops * med[("fbt", "bare")] / batch / 1e12
        peak = next((v for k, v in BF16_PEAK.items() if k in device_name), None)
        print(f"fbt: {flops / batch / 1e9:.2f} GFLOP per image per step; {achieved:.2f} TFLOP/s achieved (bare loop)"
              + (f" = {100 * achieved / peak:.1f} % of the {peak:.0f} TFLOP/s bf16 peak" if peak else ""))
    print("command: python bench/throughput.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    from fbt_engine.config.presets import PresetError
    from fbt_engine.train.engine import EngineError
    from fbt_engine.train.loop import Interrupted

    try:
        raise SystemExit(main())
    except (PresetError, EngineError) as exc:  # a bad --set or missing data: said in a line, like `fbt run`
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except (KeyboardInterrupt, Interrupted):  # Ctrl-C, or the GPU check's time limit (a loop stops at its step)
        raise SystemExit("throughput: interrupted before the table was complete") from None
