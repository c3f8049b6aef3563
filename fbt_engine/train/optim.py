"""Optimisers and the per-step learning-rate schedule (linear warm-up, then cosine or constant)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class OptimSpec:
    name: str
    lr: float
    weight_decay: float
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class ScheduleSpec:
    name: str  # "cosine" | "constant"
    total_steps: int
    warmup_steps: int
    warmup_lr_ratio: float = 0.01
    min_lr_ratio: float = 0.0


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """Trainable parameters of `modules`. As timm trains its models: biases, norms and other 1-D
    tensors get no weight decay, nor what a model's `no_weight_decay()` names (a ViT's class token
    and position embedding, Swin's relative position tables, L2G's copies of them)."""
    modules = list(modules)
    exempt = {id(p) for module in modules for p in _named_exempt(module)}
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for p in module.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if p.ndim <= 1 or id(p) in exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _named_exempt(module: nn.Module) -> list[nn.Parameter]:
    """What the outermost modules that name their exemptions name (a timm model speaks for all of
    it, with names or fnmatch patterns, as timm's own optimiser factory reads them)."""
    if callable(getattr(module, "no_weight_decay", None)):
        patterns = set(module.no_weight_decay())
        return [p for name, p in module.named_parameters() if any(fnmatchcase(name, pat) for pat in patterns)]
    return [p for child in module.children() for p in _named_exempt(child)]


def group_layout(optimizer: torch.optim.Optimizer, module: nn.Module) -> list[list[str]]:
    """The names of each optimiser group's parameters: what a checkpoint's state is matched by."""
    names = {id(p): name for name, p in module.named_parameters()}
    return [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]


def legacy_layout(module: nn.Module) -> list[list[str]]:
    """The groups of a checkpoint that names none (fbt 0.x before 2026-12-07): 1-D tensors apart."""
    trainable = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    return [[n for n, p in trainable if p.ndim > 1], [n for n, p in trainable if p.ndim <= 1]]


def regrouped(saved: dict[str, Any], saved_layout: list[list[str]], optimizer: torch.optim.Optimizer,
              layout: list[list[str]]) -> dict[str, Any]:
    """A saved optimiser state laid out as `optimizer` groups its parameters now, matched by name:
    each parameter keeps its moments, each group takes its weight decay from `optimizer` and the rest
    (the learning rate the schedule had reached) from the saved state."""
    held = [len(group["params"]) for group in saved["param_groups"]]
    if held != [len(names) for names in saved_layout]:  # no name can be trusted then
        raise ValueError(f"the checkpoint's optimiser groups hold {held} parameters, not the "
                         f"{[len(names) for names in saved_layout]} their layout names: it cannot resume")
    index = {name: i for group, names in zip(saved["param_groups"], saved_layout)
             for i, name in zip(group["params"], names)}
    settings = {k: v for k, v in saved["param_groups"][0].items() if k not in ("params", "weight_decay")}
    state, groups, k = {}, [], 0
    for group, names in zip(optimizer.param_groups, layout):
        for name in names:
            if index.get(name) in saved["state"]:
                state[k] = saved["state"][index[name]]
            k += 1
        groups.append({**settings, "weight_decay": group["weight_decay"], "params": list(range(k - len(names), k))})
    return {"state": state, "param_groups": groups}


def build_optimizer(modules: Iterable[nn.Module], spec: OptimSpec, device: torch.device) -> torch.optim.Optimizer:
    groups = param_groups(modules, spec.weight_decay)
    # fused kernels exist for CUDA; on CPU the foreach path is the fast one
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if spec.name == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov, **fast)
    if spec.name == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, **fast)
    raise ValueError(f"unknown optimiser {spec.name!r}")


def lr_factor(step: int, spec: ScheduleSpec) -> float:
    """Multiplier of the peak lr for the optimiser step about to be taken (0-based)."""
    if step < spec.warmup_steps:
        return spec.warmup_lr_ratio + (1 - spec.warmup_lr_ratio) * step / spec.warmup_steps
    if spec.name == "constant":
        return 1.0
    span = max(1, spec.total_steps - spec.warmup_steps)
    progress = min(1.0, (step - spec.warmup_steps) / span)
    return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, spec: ScheduleSpec) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, spec))
