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
sys.path[:0] = [str(REPO), str(REPO / "bench")]
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


def bare_step_time(name: str, batch: int, steps: int = 40) -> float:
    """Seconds per step of the same method, optimiser and schedule on pre-made tensors on the
    device (no data pipeline, no logging, no store): bench/throughput.py's bare loop."""
    from throughput import bare_rate, build

    p = build(name, "fbt", [], "cpu", "device", steps, batch)
    return batch / bare_rate(p, steps)[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--skip-demo", action="store_true", help="skip the cold (teacher-training) demo run")
    args = p.parse_args()
    rows = [("fbt --help", f"{help_time():.3f} s", "< 0.3 s")]
    home = Path(tempfile.mkdtemp(prefix="fbt-bench-"))
    os.environ["FBT_HOME"] = str(home)  # the bare loops read this home's teacher cache too
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
        bare = bare_step_time(name, events[0]["config"]["data"]["batch_size"])
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
