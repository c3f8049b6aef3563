"""Optimisers and the per-step learning-rate schedule (linear warm-up, then cosine or constant)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

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
    tensors get no weight decay, nor what a submodule's `no_weight_decay()` names (a ViT's class
    token and position embedding, Swin's relative position tables, L2G's copies of them)."""
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
    exempt = []
    for sub in module.modules():
        if callable(getattr(sub, "no_weight_decay", None)):
            names = set(sub.no_weight_decay())
            exempt += [p for name, p in sub.named_parameters() if name in names]
    return exempt


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
