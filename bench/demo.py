#!/usr/bin/env python3
"""The engine-foundation targets on this machine:

- `fbt --help` wall time (target < 0.3 s; median of 10),
- the README demo, `fbt run presets/mlp_to_cnn.toml`, from an empty data home (teacher phase +
  distillation; target < 2 min on two CPU cores) and again with the teacher cached (target < 1 min),
- every other shipped preset with its teacher cached (target: about a minute each),
- the engine's own overhead per step: the distillation steps' time inside fbt (data on the
  device, augmentation, logging, run store) against a bare loop of the same method, optimiser
  and schedule on pre-made device tensors (target < 5 %).

    python bench/demo.py [--presets mlp_to_cnn,vit_to_cnn,…] [--skip-demo]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PRESETS = ("mlp_to_cnn", "vit_to_cnn", "cnn_to_vit", "cnn_to_mlp", "cnn_to_cnn")
FBT = [sys.executable, "-m", "fbt_engine"]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start, result


def help_time() -> float:
    fbt = REPO / ".venv" / "bin" / "fbt"
    cmd = [str(fbt)] if fbt.exists() else [*FBT]
    return statistics.median(timed([*cmd, "--help"], dict(os.environ))[0] for _ in range(10))


def run_preset(name: str, home: Path) -> tuple[float, dict]:
    env = {**os.environ, "FBT_HOME": str(home)}
    seconds, result = timed([*FBT, "run", str(REPO / "presets" / f"{name}.toml"), "--json", "--quiet"], env)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr}")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    return seconds, events


def engine_step_time(events: list[dict]) -> float:
    """Seconds per distillation step inside fbt: training time of each epoch over its steps
    (the epoch's first interval, with warm-up effects, is included as the engine sees it)."""
    epochs = [e for e in events if e["type"] == "epoch" and e["phase"] == "distillation"]
    steps = next(e for e in events if e["type"] == "phase" and e["phase"] == "distillation")["steps_per_epoch"]
    return statistics.median(e["epoch_time"] / steps for e in epochs)


def bare_step_time(name: str, home: Path, steps: int = 40) -> float:
    """The same method, optimiser and schedule on pre-made device tensors: no data pipeline, no
    logging, no store."""
    os.environ["FBT_HOME"] = str(home)
    import torch

    from fbt_engine.config.presets import resolve
    from fbt_engine.train.engine import _phase, prepare
    from fbt_engine.train.loop import fit_channels

    p = prepare(resolve(REPO / "presets" / f"{name}.toml"))
    o = p.resolved.config.optim
    from fbt_engine.train.optim import OptimSpec

    phase = _phase("distillation", p.method, p, 1, OptimSpec(o.name, o.lr, o.weight_decay, o.momentum),
                   0.0, "cosine", 0.01, 0.0, o.grad_clip, Path(tempfile.mkdtemp()), "", "student")
    batches = [(fit_channels(x, p.student.in_chans).contiguous(), y) for x, y in p.data.train.epoch(0)]
    p.method.train()
    times = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        start = time.perf_counter()
        out = p.method(x, y)
        loss = sum(out.losses.values())
        phase.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        phase.optimizer.step()
        phase.scheduler.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[5:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--skip-demo", action="store_true", help="skip the cold (teacher-training) demo run")
    args = p.parse_args()
    rows = [("fbt --help", f"{help_time():.3f} s", "< 0.3 s")]
    home = Path(tempfile.mkdtemp(prefix="fbt-bench-"))
    names = args.presets.split(",")
    if not args.skip_demo:
        cold, _ = run_preset("mlp_to_cnn", home)
        rows.append(("demo, empty data home (teacher + distillation)", f"{cold:.1f} s", "< 120 s"))
    for name in names:
        run_preset(name, home)  # makes sure the teacher is cached
        warm, events = run_preset(name, home)
        target = "< 60 s" if name == "mlp_to_cnn" else "≈ 60 s"
        rows.append((f"{name}, teacher cached", f"{warm:.1f} s", target))
        engine = engine_step_time(events)
        bare = bare_step_time(name, home)
        rows.append((f"{name}: step in fbt / bare loop", f"{engine * 1e3:.0f} / {bare * 1e3:.0f} ms "
                     f"(overhead {100 * (engine / bare - 1):+.1f} %)", "< 5 %"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':{width}s}  value  (target)")
    for label, value, target in rows:
        print(f"{label:{width}s}  {value}  ({target})")
    print(f"\ncommand: python bench/demo.py {' '.join(sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
