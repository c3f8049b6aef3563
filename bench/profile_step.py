#!/usr/bin/env python3
"""Where one FBT training step spends its time: torch.profiler over a few steps of a preset, with
the step cut into labelled parts (teacher forward, student forward, fusion, losses, backward,
optimiser) and the top operators by self time.

    python bench/profile_step.py [--preset mlp_to_cnn] [--device cpu|cuda] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mlp_to_cnn")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    os.environ["FBT_HOME"] = tempfile.mkdtemp(prefix="fbt-profile-")
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from throughput import distillation_phase

    from fbt_engine.config.presets import resolve
    from fbt_engine.train.engine import prepare, select_device
    from fbt_engine.train.loop import fit_channels

    resolved = resolve(args.preset, [*args.sets, f'run.device="{args.device}"'])
    p = prepare(resolved, select_device(resolved.config.run.device))
    phase = distillation_phase(p, Path(tempfile.mkdtemp()))
    method = p.method
    batches = iter(p.data.train.epoch(0))

    def step(profiled: bool) -> None:
        with record_function("data (device batch + augmentation)"):
            x, y = next(batches)
            x = fit_channels(x, p.student.in_chans)
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
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step(True)
    # on CUDA the labelled parts' CPU times are only how fast Python queued them: read their device time
    sort = "self_device_time_total" if args.device == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=55)
    print(f"# {args.preset}, method {resolved.config.method.name}, batch {resolved.config.data.batch_size}, "
          f"{args.device}, {args.steps} steps (the labelled forwards are profiled separately from the "
          "step's own forward, so they add up to more than one step)")
    print(table)
    print("command: python bench/profile_step.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
