#!/usr/bin/env python3
"""Host syncs inside a training step, as CUDA sees them: a tiny real FBT run (every augmentation,
EMA, gradient clipping) under `torch.cuda.set_sync_debug_mode("warn")`, each warning traced to the
Python stack it came from. Syncs in the loop's read-back points (`READ_BACK_AT`: a log step, an
epoch's end) are expected; any other inside `run_phase` is a finding. On the CPU,
tests/test_host_syncs.py checks the same with an aten-level probe.

    python bench/sync_check.py                 # on CUDA
    python bench/sync_check.py --device cpu    # rehearses the script only: the CPU reports no syncs
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETS = ["data.subset=1024", "data.batch_size=64", "train.epochs=2", "teacher.recipe.epochs=1", "train.log_every=4",
        'train.compile="off"', 'data.augmentation="rrc"', "data.img_size=32",
        'data.randaugment="rand-m9-mstd0.5-inc1"', "data.random_erasing=0.25", "data.mixup=0.8", "data.cutmix=1.0",
        "train.ema=0.99", "optim.grad_clip=1.0"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    device = ap.parse_args().device
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print("sync_check: no CUDA device (on the CPU, tests/test_host_syncs.py checks)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fbt-sync-") as home:
        os.environ["FBT_HOME"] = home
        return check(device)


def check(device: str) -> int:
    import torch

    from fbt_engine.train.engine import RunOptions, run
    from fbt_engine.train.loop import read_site

    inside, expected = Counter(), Counter()

    shown = warnings.showwarning

    def traced(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            shown(message, category, filename, lineno, file, line)
            return
        site = read_site(traceback.extract_stack()[:-1])
        if site is not None:
            where, at_read_back = site
            (expected if at_read_back else inside)[where] += 1

    warnings.showwarning = traced
    warnings.simplefilter("always")
    if device == "cuda":
        torch.cuda.set_sync_debug_mode("warn")
    code = run(RunOptions(preset=str(REPO / "presets" / "mlp_to_cnn.toml"), sets=[*SETS, f'run.device="{device}"'],
                          quiet=True))
    if device == "cuda":
        torch.cuda.set_sync_debug_mode("default")
    print(f"fbt run exit {code}; syncs at read-back points: {sum(expected.values())}; "
          f"inside training steps: {sum(inside.values())}"
          + ("  (CPU: the sync debug mode sees nothing; a rehearsal of the script)" if device == "cpu" else ""))
    for where, n in inside.most_common():
        print(f"  {n:5d}  {where}")
    return 0 if code == 0 and not inside else 1


if __name__ == "__main__":
    raise SystemExit(main())
