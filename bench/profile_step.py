#!/usr/bin/env python3
"""Where an FBT training step spends its time, by torch.profiler, in one of two views:

  (default) one step cut into labelled parts (teacher forward, student forward, fusion, losses,
            backward, optimiser) and the top operators, on a fixed batch
  --loop    fbt's own training loop, eager unless a --set compiles it (run_phase: device data and
            augmentation, the step, the loss bookkeeping) over `--steps` steps of an epoch: the
            wall time per step against the time the device was busy, which says whether the step
            is bound by the host (Python queuing kernels) or by the device, and the top operators
            by host time and by device time
  --explain the graphs and graph breaks torch.compile makes of the training step (no profiling)

    python bench/profile_step.py [--preset mlp_to_cnn] [--device cpu|cuda] [--steps 10] [--loop | --explain]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

LOOP_SKIPPED = 10  # steps of the loop run before the profiled ones: allocator, cuDNN and autocast warm up
LOOP_WARMUP = 3  # steps the profiler traces and throws away
LOOP_BODY = "loop body"  # the profiler's range around each step's body, from its batch to the next
BATCH = "batch"  # the profiler's range around the making of each batch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mlp_to_cnn")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--steps", type=int, default=10)
    view = ap.add_mutually_exclusive_group()
    view.add_argument("--loop", action="store_true", help="profile fbt's training loop instead of one step")
    view.add_argument("--explain", action="store_true", help="count torch.compile's graphs and breaks in the step")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fbt-profile-") as home:
        os.environ["FBT_HOME"] = home
        table = (profile_loop(args, Path(home)) if args.loop else explain_step(args, Path(home)) if args.explain
                 else profile_step(args))
    print(table)
    print("command: python bench/profile_step.py " + " ".join(sys.argv[1:]))
    return 0


def activities(device: str) -> list:
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])


def top(prof, sort: str) -> str:
    return prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=55)


def profile_step(args: argparse.Namespace) -> str:
    from torch.profiler import profile, record_function

    from throughput import distillation_phase

    from fbt_engine.config.presets import resolve
    from fbt_engine.train.engine import prepare, select_device

    resolved = resolve(args.preset, [*args.sets, f'run.device="{args.device}"'])
    p = prepare(resolved, select_device(resolved.config.run.device))
    phase = distillation_phase(p, Path(os.environ["FBT_HOME"]))
    method = p.method
    batches = iter(p.data.train.epoch(0))

    def step(profiled: bool) -> None:
        with record_function("data (device batch + augmentation)"):
            x, y = next(batches)
            x = phase.inputs(x)
        with phase.autocast():
            if hasattr(method, "fusion") and profiled:
                with record_function("teacher forward"):
                    t = method.teacher_features(x)
                with record_function("student forward"):
                    s = method.student_features(x)
                with record_function("fusion forward (L2G + borrowed stage 4 + head)"):
                    method.fusion_output(s, t)
            with record_function("method forward (all, incl. losses)"):
                out = method(x, y)
        loss = sum(out.losses.values())
        with record_function("backward"):
            phase.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("optimiser + schedule"):
            phase.optimizer.step()
            phase.scheduler.step()

    method.train()
    for _ in range(3):
        step(False)
    with profile(activities=activities(args.device)) as prof:
        for _ in range(args.steps):
            step(True)
    # on CUDA the labelled parts' CPU times are only how fast Python queued them: read their device time
    sort = "self_device_time_total" if args.device == "cuda" else "self_cpu_time_total"
    return (f"# {args.preset}, method {resolved.config.method.name}, batch {resolved.config.data.batch_size}, "
            f"{args.device}, {args.steps} steps (the labelled forwards are profiled separately from the "
            f"step's own forward, so they add up to more than one step"
            + ("; on CUDA a labelled part's device time runs from its first kernel's start to its last "
               "kernel's end, the device's idle gaps between them included" if args.device == "cuda" else "")
            + f")\n{top(prof, sort)}")


def explain_step(args: argparse.Namespace, home: Path) -> str:
    """What torch.compile makes of the step fbt's loop compiles (TrainStep.forward): its graphs, and why
    it breaks between them. A break leaves the ops around it to be launched one by one."""
    import torch._dynamo

    from throughput import engine_phase

    from fbt_engine.config.presets import resolve
    from fbt_engine.train.engine import prepare, select_device
    from fbt_engine.train.loop import TrainStep

    resolved = resolve(args.preset, [*args.sets, f'run.device="{args.device}"'])
    p = prepare(resolved, select_device(resolved.config.run.device))
    phase, reporter = engine_phase(p, home)
    x, y = next(iter(p.data.train.epoch(0)))
    x = phase.inputs(x)  # as TrainStep brings it to its compiled forward
    p.method.train()
    with phase.autocast():
        found = torch._dynamo.explain(TrainStep(phase, reporter).forward)(x, y)
    reporter.finish("finished", 0)
    reasons = "".join(f"\n  - {b.reason}" for b in found.break_reasons)
    return (f"# {args.preset}, method {resolved.config.method.name}, batch {resolved.config.data.batch_size}, "
            f"{args.device}: {found.graph_count} graph(s), {found.graph_break_count} break(s){reasons}")


def profile_loop(args: argparse.Namespace, home: Path) -> str:
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import profile, schedule

    from throughput import build, engine_phase, run_engine

    from fbt_engine.config.presets import resolve

    cfg = resolve(args.preset, args.sets).config
    # the epoch outlasts the profiled steps by one, so that the epoch's evaluation is never traced
    steps = LOOP_SKIPPED + LOOP_WARMUP + args.steps + 1
    p = build(args.preset, cfg.method.name, args.sets, args.device, "device", steps, cfg.data.batch_size)
    if len(p.data.train) < steps:
        raise SystemExit(f"profile_step: the data gives {len(p.data.train)} batches of {cfg.data.batch_size}, the loop "
                         f"needs {steps} ({LOOP_SKIPPED + LOOP_WARMUP} before the profiled ones, 1 after); lower --steps or "
                         "the batch, or use a larger dataset")
    phase, reporter = engine_phase(p, home)
    if phase.compile_mode is not None:  # as the loop does on CUDA; here on a CPU too, to count what it leaves
        phase.data.train.compile_augmentation(lambda why: print(f"augmentation left eager: {why}", file=sys.stderr))
    stamps: list[float] = []
    window = range(LOOP_SKIPPED + LOOP_WARMUP, LOOP_SKIPPED + LOOP_WARMUP + args.steps + 1)
    with profile(activities=activities(args.device),
                 schedule=schedule(wait=LOOP_SKIPPED, warmup=LOOP_WARMUP, active=args.steps, repeat=1)) as prof:
        epoch = phase.data.train.epoch

        def stepping(*a, **kw):  # batch i of the epoch is the profiler's step i
            batches = epoch(*a, **kw)
            for i in itertools.count():
                with torch.profiler.record_function(BATCH):
                    batch = next(batches, None)
                if batch is None:
                    return
                if i in window:
                    if args.device == "cuda":
                        torch.cuda.synchronize()  # the window's edges only; the steps inside run free
                    stamps.append(time.perf_counter())
                if i:
                    prof.step()
                with torch.profiler.record_function(LOOP_BODY):
                    yield batch

        phase.data.train.epoch = stepping
        run_engine(phase, reporter)
    wall = (stamps[-1] - stamps[0]) / args.steps
    # the device's own events (kernels, copies), as the profiler's table totals them
    busy = (sum(e.self_device_time_total for e in prof.key_averages()
                if e.device_type == DeviceType.CUDA and not e.is_user_annotation) / args.steps / 1e6
            if args.device == "cuda" else None)
    # what the loop body dispatches one by one beside the compiled code: on a GPU, each a launch
    def top_level_ops(within: str) -> float:
        return sum(1 for e in prof.events() if e.name.startswith("aten::")
                   and e.cpu_parent is not None and e.cpu_parent.name == within) / args.steps
    bound = ("" if busy is None else f"; device busy {1e3 * busy:.2f} ms a step ({100 * busy / wall:.0f} % of the wall "
             f"time: {'bound by the host' if busy < 0.8 * wall else 'bound by the device'})")
    how = f"compiled, mode {phase.compile_mode}" if phase.compile_mode else "eager"
    head = (f"# {args.preset}, fbt's loop ({how}, under the profiler, which slows the host), method "
            f"{cfg.method.name}, batch {cfg.data.batch_size}, {args.device}, {args.steps} steps after "
            f"{LOOP_SKIPPED + LOOP_WARMUP}: wall {1e3 * wall:.2f} ms a step{bound}; top-level aten ops a step: "
            f"{top_level_ops(LOOP_BODY):.1f} in the loop body, {top_level_ops(BATCH):.1f} in making the batch "
            "(drawing, gathering, augmenting)")
    tables = [f"## by host time\n{top(prof, 'self_cpu_time_total')}"]
    if args.device == "cuda":
        tables.append(f"## by device time\n{top(prof, 'self_device_time_total')}")
    return "\n".join([head, *tables])


if __name__ == "__main__":
    raise SystemExit(main())
