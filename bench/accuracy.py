#!/usr/bin/env python3
"""The proof that FBT works: student top-1 on the full Fashion-MNIST, mean ± std over seeds, for
three heterogeneous pairs × five methods, plus FBT's ablations on one pair.

    python bench/accuracy.py --quick            # CPU, about 30 minutes on two cores
    python bench/accuracy.py --jobs 8           # full mode, meant for one H100/H200 (~10 min)
    python bench/accuracy.py --quick --write docs/RESULTS.md

Needs the full Fashion-MNIST from Debian: `apt-get install -y dataset-fashion-mnist` (the four IDX
files land in /usr/share/datasets/fashion-mnist), or `--root DIR` with the four files.
Every run is a real fbt run in `--home` (default bench/out/home): `FBT_HOME=bench/out/home fbt runs ls`
shows them. Teachers are trained once per pair (with the preset's recipe, longer) and cached there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("scratch", "kd", "ofa_logit", "fitnet_mse", "fbt")
PAIRS = {  # label → built-in preset; the three heterogeneous directions the issue asks for
    "MLP→CNN": "mlp_to_cnn",
    "ViT→CNN": "vit_to_cnn",
    "CNN→ViT": "cnn_to_vit",
}
ABLATION_PAIR = "MLP→CNN"
ABLATIONS = {
    "FBT (all terms)": [],
    "no InfoNCE": ["method.use_nce=false"],
    "no logit loss": ["method.use_logit=false"],
    "no teacher→fusion": ["method.use_tf=false"],
    "MSE instead of InfoNCE": ['method.feature_loss="mse"'],
    "no L2G attention": ["method.l2g_attention=false"],
}


@dataclass(frozen=True)
class Mode:
    name: str
    subset: int  # training images (0 = all 60,000); evaluation on subset/5 (all 10,000 when 0)
    epochs: int
    teacher_epochs: int
    seeds: tuple[int, ...]
    extra: tuple[str, ...] = field(default_factory=tuple)


QUICK = Mode("quick", subset=5000, epochs=3, teacher_epochs=10, seeds=(0, 1, 2))
FULL = Mode("full", subset=0, epochs=15, teacher_epochs=30, seeds=(0, 1, 2))


@dataclass(frozen=True)
class Job:
    group: str  # "methods" | "ablations"
    pair: str
    variant: str  # method name or ablation label
    seed: int
    preset: str
    sets: tuple[str, ...]


def jobs_for(mode: Mode, root: str) -> list[Job]:
    common = ['data.name="fashion_mnist"', f'data.root="{root}"', f"data.subset={mode.subset}",
              f"train.epochs={mode.epochs}", f"teacher.recipe.epochs={mode.teacher_epochs}", *mode.extra]
    jobs = []
    for pair, preset in PAIRS.items():
        for method in METHODS:
            for seed in mode.seeds:
                jobs.append(Job("methods", pair, method, seed, preset,
                                (*common, f'method.name="{method}"', f"run.seed={seed}")))
    for label, sets in ABLATIONS.items():
        if not sets:
            continue  # the full FBT row is the methods table's fbt row on the same pair
        for seed in mode.seeds:
            jobs.append(Job("ablations", ABLATION_PAIR, label, seed, PAIRS[ABLATION_PAIR],
                            (*common, 'method.name="fbt"', f"run.seed={seed}", *sets)))
    return jobs


def run_job(job: Job) -> dict:
    """One run through the engine, in this (worker) process: torch is imported once per worker."""
    from fbt_engine.store.runs import RunStore
    from fbt_engine.train.engine import RunOptions, run

    tags = ["bench-accuracy", job.group]
    name = f"{job.pair} {job.variant} s{job.seed}"
    code = run(RunOptions(preset=str(REPO / "presets" / f"{job.preset}.toml"), sets=list(job.sets), name=name,
                          tags=tags, quiet=True))
    store = RunStore()
    summary = store.summary(store.resolve(name))
    return {"job": job.__dict__, "exit": code, "final_top1": summary.final_top1, "best_top1": summary.best_top1,
            "teacher_top1": summary.teacher_top1, "fusion_top1": summary.fusion_top1, "run": summary.id,
            "duration": summary.duration}


def _init_worker(home: str, threads: int) -> None:
    os.environ["FBT_HOME"] = home
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the jobs have split the cores: no run's CpuShare splits them again
    import torch

    torch.set_num_threads(threads)  # torch may have started already, as the spawned worker imported this module


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def tables(results: list[dict], mode: Mode) -> str:
    by = {}
    for r in results:
        j = r["job"]
        by.setdefault((j["group"], j["pair"], j["variant"]), []).append(r)
    out = [f"Student top-1 (%) after the last epoch on the Fashion-MNIST test split, mean ± std over "
           f"seeds {', '.join(map(str, mode.seeds))}.", "",
           "| teacher → student | teacher top-1 | " + " | ".join(METHODS) + " | FBT − KD |",
           "|---|---|" + "---|" * (len(METHODS) + 1)]
    for pair, preset in PAIRS.items():
        cells, means = [], {}
        teacher = next((r["teacher_top1"] for r in results if r["job"]["pair"] == pair and r["teacher_top1"]), None)
        for m in METHODS:
            vals = [r["final_top1"] for r in by.get(("methods", pair, m), []) if r["final_top1"] is not None]
            means[m] = statistics.mean(vals) if vals else None
            cells.append(mean_std(vals))
        gap = f"{means['fbt'] - means['kd']:+.2f}" if means.get("fbt") is not None and means.get("kd") is not None else "–"
        teacher_cell = f"{teacher:.2f}" if teacher is not None else "–"
        out.append(f"| {pair} ({preset}) | {teacher_cell} | " + " | ".join(cells) + f" | {gap} |")
    out += ["", f"Ablations on {ABLATION_PAIR}:", "", "| variant | student top-1 | fusion top-1 |", "|---|---|---|"]
    for label in ABLATIONS:
        rows = by.get(("methods", ABLATION_PAIR, "fbt"), []) if not ABLATIONS[label] else \
            by.get(("ablations", ABLATION_PAIR, label), [])
        out.append(f"| {label} | {mean_std([r['final_top1'] for r in rows if r['final_top1'] is not None])} | "
                   f"{mean_std([r['fusion_top1'] for r in rows if r['fusion_top1'] is not None])} |")
    return "\n".join(out) + "\n"


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU only (torch {torch.__version__})"


def main() -> int:
    from fbt_engine.data.idx import FASHION_MNIST_DEBIAN, FASHION_MNIST_FILES, IdxError, find_idx_file

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the CPU mode (~30 min on two cores)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (worker processes)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: cores / jobs)")
    p.add_argument("--root", default=str(FASHION_MNIST_DEBIAN), help="folder of the four Fashion-MNIST IDX files")
    p.add_argument("--home", default=str(REPO / "bench" / "out" / "home"), help="fbt data home for the runs")
    p.add_argument("--seeds", type=int, help="use only the first N seeds")
    p.add_argument("--write", metavar="FILE", help="also write the report (table, command, machine, time) here")
    args = p.parse_args()
    try:
        for stem in FASHION_MNIST_FILES.values():
            find_idx_file(Path(args.root), stem)
    except IdxError as exc:
        print(f"error: the full Fashion-MNIST is needed: {exc}\n"
              "install it with: apt-get install -y dataset-fashion-mnist (or pass --root DIR)", file=sys.stderr)
        return 3
    mode = QUICK if args.quick else FULL
    if args.seeds:
        mode = Mode(mode.name, mode.subset, mode.epochs, mode.teacher_epochs, mode.seeds[: args.seeds], mode.extra)
    Path(args.home).mkdir(parents=True, exist_ok=True)
    jobs = jobs_for(mode, args.root)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    # Teachers first, one per pair, so parallel workers never train the same teacher twice.
    first = {j.pair: j for j in jobs if j.group == "methods" and j.variant == "kd" and j.seed == mode.seeds[0]}
    rest = [j for j in jobs if j not in first.values()]
    start = time.time()
    results: list[dict] = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn"),
                             initializer=_init_worker, initargs=(args.home, threads)) as pool:
        for batch in (list(first.values()), rest):
            for r in pool.map(run_job, batch):
                results.append(r)
                j = r["job"]
                print(f"[{len(results)}/{len(jobs)}] {j['pair']:8s} {j['variant']:24s} seed {j['seed']}: "
                      f"top-1 {r['final_top1']} (exit {r['exit']}, {r['duration'] or 0:.0f}s)", file=sys.stderr, flush=True)
    wall = time.time() - start
    failed = [r for r in results if r["exit"] != 0]
    command = "python bench/accuracy.py " + " ".join(sys.argv[1:])
    report = (f"## Accuracy ({mode.name} mode)\n\n" + tables(results, mode) +
              f"\nMode: {mode.name} — {mode.subset or 60000} training images, {mode.epochs} distillation epochs, "
              f"teachers {mode.teacher_epochs} epochs.\n"
              f"Command: `{command}`\nMachine: {machine()}\nWall time: {wall / 60:.1f} min for {len(jobs)} runs"
              f"{f', {len(failed)} failed' if failed else ''}.\n")
    print(report)
    (Path(args.home).parent / f"accuracy-{mode.name}.json").write_text(json.dumps(results, indent=1))
    if args.write:
        Path(args.write).write_text(report)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
