"""`fbt doctor`: what this environment has, one line per check."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fbt_engine import paths
from fbt_engine.data.catalog import DATASETS, download_note
from fbt_engine.data.idx import FASHION_MNIST_DEBIAN, FASHION_MNIST_FILES, IdxError, find_idx_file
from fbt_engine.formats import counted, usable_cores


def _check(name: str, state: str, detail: str) -> dict[str, Any]:
    return {"name": name, "state": state, "detail": detail}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def report() -> list[dict[str, Any]]:
    checks = [_check("python", "ok", platform.python_version())]
    for dist in ("torch", "torchvision", "timm", "textual", "textual-plot", "rich", "tomli-w", "platformdirs",
                 "safetensors"):
        v = _version(dist)
        checks.append(_check(dist, "ok" if v else "missing", v or "not installed"))
    checks += _device_checks()
    checks += _dataset_checks()
    home = paths.data_home()
    existing = _nearest_existing(home)
    checks.append(_home_check(home, existing))
    runs = paths.runs_dir()
    count = sum(1 for p in runs.iterdir() if (p / "meta.json").is_file()) if runs.is_dir() else 0
    checks.append(_check("runs", "ok", f"{count} in {runs}"))
    cache = paths.teacher_cache_dir()
    teachers = sorted(cache.glob("*/teacher.safetensors")) if cache.is_dir() else []
    size = sum(p.stat().st_size for p in teachers) / 2**20
    checks.append(_check("teacher cache", "ok", f"{counted(len(teachers), 'teacher')}, {size:.1f} MiB in {cache}"))
    compiled = paths.compile_cache_dir()
    size = sum(p.stat().st_size for p in compiled.rglob("*") if p.is_file()) / 2**20 if compiled.is_dir() else 0.0
    checks.append(_check("compile cache", "ok", f"{size:.1f} MiB in {compiled} (torch.compile's; safe to delete)"))
    if isinstance(existing, Path):
        free = shutil.disk_usage(existing).free / 2**30
        checks.append(_check("disk", "ok" if free > 2 else "warn", f"{free:.1f} GiB free"))
    return checks


def _nearest_existing(path: Path) -> Path | str:
    """`path` or the nearest folder above it that exists; where one cannot be looked in, why."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError as exc:  # a parent that denies a look
            return f"cannot look in {candidate.parent}: {exc.strerror}"
    return f"none of {path}'s folders exists"


def _home_check(home: Path, existing: Path | str) -> dict[str, Any]:
    """Whether fbt can keep its data in `home`, tried without making it: a folder made and removed
    where it is or, where it is not yet (a fresh machine lacks ~/.local/share too), in the nearest
    folder above it (`existing`, or why there is none). Access bits said yes to a path under /proc
    and to a regular file."""
    where = f"{home}" + (" (FBT_HOME)" if os.environ.get("FBT_HOME") else "")
    if isinstance(existing, str):
        return _check("data home", "missing", f"{where}: {existing}")
    if not existing.is_dir():
        return _check("data home", "missing", f"{where}: {existing} is not a folder")
    try:
        with tempfile.TemporaryDirectory(dir=existing):
            pass
    except OSError as exc:
        return _check("data home", "missing", f"{where}: cannot make a folder in {existing}: {exc.strerror}")
    return _check("data home", "ok", where + ("" if existing == home else " (made by the first run)"))


def _device_checks() -> list[dict[str, Any]]:
    try:
        import torch
    except ImportError:
        return [_check("device", "missing", "torch is not installed")]
    out = [_check("cpu", "ok", f"{usable_cores()} cores, torch uses {torch.get_num_threads()} threads")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append(_check(f"cuda:{i}", "ok", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"))
    else:
        built = torch.version.cuda
        out.append(_check("cuda", "warn", f"no CUDA device (torch built for CUDA {built})" if built
                          else "no CUDA device (CPU-only torch build)"))
    return out


def _dataset_checks() -> list[dict[str, Any]]:
    from importlib import resources

    embedded = resources.files("fbt_engine.data").joinpath("fashion_mnist_5k.npz")
    out = [_check("fashion_mnist_5k", "ok" if embedded.is_file() else "missing", "embedded (5,000 / 1,000 images)"
                  if embedded.is_file() else "the embedded .npz is missing from the package")]
    try:
        for stem in FASHION_MNIST_FILES.values():
            find_idx_file(FASHION_MNIST_DEBIAN, stem)
        out.append(_check("fashion_mnist", "ok", f"{FASHION_MNIST_DEBIAN}"))
    except IdxError:
        out.append(_check("fashion_mnist", "warn", "not at the Debian path (apt-get install -y dataset-fashion-mnist) "
                                                   "— or set data.root to a folder of the IDX files"))
    for name in ("cifar10", "cifar100", "imagefolder"):  # found through a preset's data.root: nothing to check here
        how = "download = true fetches it" if DATASETS[name].folder else "train/ and val/ folders"
        out.append(_check(name, "info", f"needs data.root ({how})"))
    return out


def check_preset(ref: str, sets: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Whether this machine can run `ref`: the preset, its data, its models and its teacher's
    weights, which must load key for key and score well above chance on the validation split.
    Returns the checks and the exit code `fbt run` would give on what they found (0 when it would
    start)."""
    from fbt_engine.config.presets import PresetError, collect

    resolved = collect(ref, sets)
    if resolved.problems:  # one line each, as `fbt run` says them
        return ([_check("preset", "missing", str(p)) for p in resolved.problems],
                PresetError(resolved.problems).exit_code)
    checks = [_check("preset", "ok", resolved.source)]
    data = resolved.config.data
    if (note := download_note(data.name, data.root, data.download)) is not None:
        # a check fetches nothing: the data, and so the models built for it, wait for the run
        return checks + [_check("data", "warn", f"{note}; its models and teacher are checked once it is")], 0
    from fbt_engine.train.engine import EngineError, prepare, select_device, teacher_accuracy

    try:
        prepared = prepare(resolved, select_device(resolved.config.run.device))
    except EngineError as exc:
        return checks + [_check("preset run", "missing", str(exc))], exc.exit_code
    cfg = prepared.resolved.config
    checks.append(_check("data", "ok", f"{cfg.data.name}: {prepared.data.train.num_images} training, "
                                       f"{prepared.data.val_images} validation images, {prepared.data.num_classes} classes"))
    if prepared.teacher is None:
        return checks + [_check("teacher", "ok", f'method "{cfg.method.name}" uses none')], 0
    source = prepared.teacher_source
    if source.kind == "train":
        return checks + [_check("teacher", "warn", f"no checkpoint and none cached: the run first trains "
                                                   f"{cfg.teacher.model} ({cfg.teacher.recipe.epochs} epochs)")], 0
    acc = teacher_accuracy(prepared)
    checks.append(_check("teacher weights", "ok", f"{source.weights} loads into {cfg.teacher.model} key for key"))
    checks.append(_check("teacher accuracy", "ok", f"top-1 {acc['top1']:.2f}%, top-5 {acc['top5']:.2f}% on "
                                                   f"{prepared.data.val_images} validation images"))
    return checks, 0
