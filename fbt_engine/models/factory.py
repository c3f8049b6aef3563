"""Building models by name: timm's registry, with fbt's small models registered into it."""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

import fbt_engine.models.small  # noqa: F401  (registers fbt's models with timm)
from fbt_engine.models.adapters import StagedModel
from fbt_engine.models.pretrained import locates_weights, pretrained_overlay


# where the weights come from, not what the model is: left out of what rebuilds the architecture
WEIGHT_SOURCE_KEYS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def create_model(name: str, num_classes: int, img_size: int, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """timm.create_model, passing `img_size` only to models whose constructor takes it, and
    pretrained weights from the local cache when they are there (models.pretrained), unless the
    kwargs say themselves where the weights come from. The model's `fbt_kwargs` are the keyword
    arguments that rebuild its architecture with timm.create_model (the exported student's
    sidecar), img_size included where it was passed."""
    kwargs = dict(kwargs or {})
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    if kwargs.get("pretrained") and "pretrained_cfg" not in kwargs and not locates_weights(overlay):
        kwargs["pretrained_cfg_overlay"] = pretrained_overlay(name, kwargs.get("cache_dir")) | overlay
    model = None
    if "img_size" not in kwargs:
        try:
            model = timm.create_model(name, num_classes=num_classes, img_size=img_size, **kwargs)
            kwargs["img_size"] = img_size
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
    if model is None:
        model = timm.create_model(name, num_classes=num_classes, **kwargs)
    model.fbt_kwargs = {k: v for k, v in kwargs.items() if k not in WEIGHT_SOURCE_KEYS}
    return model


def build_staged(name: str, num_classes: int, img_size: int, kwargs: dict[str, Any] | None = None) -> StagedModel:
    return StagedModel(create_model(name, num_classes, img_size, kwargs), img_size)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
