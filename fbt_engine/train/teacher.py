"""The teacher phase: load `teacher.checkpoint`, reuse a cached teacher, or train one from scratch
with `[teacher.recipe]` and cache it, keyed by everything that shapes its weights."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fbt_engine import paths
from fbt_engine.config.fields import to_table
from fbt_engine.config.schema import Config
from fbt_engine.data.sources import Augmentation
from fbt_engine.formats import counted

CACHE_FORMAT = 2  # 2: every [data] key that shapes the weights (augmentations, mixing) is in the key
# [data] keys that do not change what a trained teacher learns: how the data is loaded, or given resolved
LOADING_ONLY = ("workers", "eval_batch_size", "pipeline", "download", "root", "img_size")
CACHED_WEIGHTS = "teacher.safetensors"  # teachers/<key>/ holds it, with teacher.json
_NESTED_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "module")


class TeacherError(RuntimeError):
    """The teacher's weights cannot be used (missing file, wrong model): an environment error."""


@dataclass(frozen=True)
class TeacherSource:
    kind: str  # "checkpoint" | "pretrained" (timm's own weights) | "cache" | "train"
    weights: Path  # the file to load (for "train": where the trained teacher will be cached)
    key: str = ""


def cache_key(cfg: Config, num_classes: int, img_size: int) -> str:
    data = {k: v for k, v in to_table(cfg.data).items() if k not in LOADING_ONLY}
    identity = {
        "format": CACHE_FORMAT, "model": cfg.teacher.model, "kwargs": cfg.teacher.kwargs,
        "num_classes": num_classes, "img_size": img_size, "recipe": to_table(cfg.teacher.recipe),
        "data": {**data, "root": str(Path(cfg.data.root).expanduser().resolve()) if cfg.data.root else ""},
    }
    if cfg.train.precise_bn:  # a BatchNorm teacher's statistics; absent at 0, as before the setting was
        identity["precise_bn"] = cfg.train.precise_bn
        if Augmentation.of(cfg.data, num_classes).mixes:  # measured on mixed batches before they were not
            identity["precise_bn_unmixed"] = True
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def locate(cfg: Config, num_classes: int, img_size: int, cached: Path | None = None) -> TeacherSource:
    """Where the teacher's weights come from. `cached`: the cached teacher a resumed distillation
    goes on from, wherever today's key would look (a newer fbt may key teachers otherwise)."""
    if cfg.teacher.checkpoint:
        return TeacherSource("checkpoint", Path(cfg.teacher.checkpoint).expanduser())
    if cfg.teacher.kwargs.get("pretrained"):
        return TeacherSource("pretrained", Path(f"timm:{cfg.teacher.model}"))
    if cached is not None:
        if not cached.is_file():
            raise TeacherError(f"the cached teacher this run distils from is gone ({cached}): another teacher "
                               "would change the run half-way; start the run afresh")
        return TeacherSource("cache", cached, cached.parent.name)
    key = cache_key(cfg, num_classes, img_size)
    weights = paths.teacher_cache_dir() / key / CACHED_WEIGHTS
    return TeacherSource("cache" if weights.is_file() else "train", weights, key)


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """A raw state dict, or one nested under state_dict / model / state_dict_ema …, with any
    DataParallel/DDP `module.` prefixes stripped."""
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _NESTED_KEYS if k in obj and isinstance(obj[k], dict)), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise TeacherError(f"expected a state dict, found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise TeacherError(f"teacher.checkpoint: no such file: {path}")
    try:
        state = load_file(str(path)) if path.suffix == ".safetensors" else unwrap_state_dict(
            torch.load(path, map_location="cpu", weights_only=False))
        state = timm_filter(model, state)
    except TeacherError:
        raise
    except Exception as exc:  # a corrupt or foreign file: say which, not a traceback
        raise TeacherError(f"teacher.checkpoint: cannot read {path}: not a PyTorch checkpoint (torch.save) or a "
                           f".safetensors file ({type(exc).__name__}: {exc})") from None
    if misfits := _mismatch(model, state):
        raise TeacherError(f"teacher.checkpoint: {path} does not fit {type(model).__name__}: {'; '.join(misfits)}")
    model.load_state_dict(state)


def timm_filter(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply the model family's own timm `checkpoint_filter_fn`, which converts older layouts (e.g.
    timm-0.6 Swin checkpoints, as in OFA-KD's released teachers) and resamples position tables."""
    module = sys.modules.get(type(model).__module__)
    convert = getattr(module, "checkpoint_filter_fn", None)
    return convert(state, model) if convert is not None else state


def _mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """What keeps `state` from loading into `model`, in words; empty where it fits. A head of
    another shape is what a checkpoint for other classes shows."""
    own = model.state_dict()
    kinds = {
        "missing": [k for k in own if k not in state],
        "unexpected": [k for k in state if k not in own],
        "of another shape": [f"{k} {_shape(state[k])} (the model's: {_shape(own[k])})"
                             for k in own if k in state and own[k].shape != state[k].shape],
    }
    return [f"{counted(len(keys), 'key')} {kind} (e.g. {', '.join(keys[:3])})"
            for kind, keys in kinds.items() if keys]


def _shape(t: torch.Tensor) -> str:
    return "×".join(map(str, t.shape)) or "scalar"


def save_to_cache(source: TeacherSource, model: nn.Module, info: dict[str, Any]) -> None:
    folder = source.weights.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".teacher.{os.getpid()}.safetensors"
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, source.weights)
    (folder / "teacher.json").write_text(json.dumps({**info, "created": time.time()}, indent=2) + "\n")
