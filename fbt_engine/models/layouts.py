"""What a stage's output looks like, and the layout conversions every part of fbt shares."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch


class Layout(str, Enum):
    NCHW = "NCHW"  # CNN feature maps
    NLC = "NLC"  # token sequences, prefix (class/register) tokens first
    NHWC = "NHWC"  # Swin's token grids


@dataclass(frozen=True)
class StageSpec:
    """One stage's output, as measured by a dummy forward at the configured resolution."""

    index: int  # 1..4
    layout: Layout
    width: int  # channels or embedding width
    grid: tuple[int, int]  # spatial size (H, W) of the map or token grid
    prefix_tokens: int = 0  # NLC only

    @property
    def is_tokens(self) -> bool:
        return self.layout is not Layout.NCHW

    def as_dict(self) -> dict:
        return {"index": self.index, "layout": self.layout.value, "width": self.width,
                "grid": list(self.grid), "prefix_tokens": self.prefix_tokens}


def to_nchw(h: torch.Tensor, spec: StageSpec) -> torch.Tensor:
    """The spatial part of a stage output as an NCHW map (prefix tokens dropped)."""
    if spec.layout is Layout.NCHW:
        return h
    if spec.layout is Layout.NHWC:
        return h.permute(0, 3, 1, 2)
    tokens = h[:, spec.prefix_tokens:]
    return tokens.transpose(1, 2).reshape(h.shape[0], spec.width, *spec.grid)


def nhwc_to_layout(grid: torch.Tensor, spec: StageSpec) -> torch.Tensor:
    """An NHWC grid in `spec`'s layout, without prefix tokens (the caller prepends those)."""
    if spec.layout is Layout.NHWC:
        return grid
    if spec.layout is Layout.NCHW:
        return grid.permute(0, 3, 1, 2)
    return grid.flatten(1, 2)


def smooth(h: torch.Tensor, spec: StageSpec, pool: str = "avg") -> torch.Tensor:
    """Spatial smoothing (METHOD §3): the stage output averaged to one vector per image.

    Token models average their patch tokens ("avg") or take the first prefix token ("cls");
    a model without prefix tokens always averages.
    """
    if spec.layout is Layout.NCHW:
        return h.mean(dim=(2, 3))
    if spec.layout is Layout.NHWC:
        return h.mean(dim=(1, 2))
    if pool == "cls" and spec.prefix_tokens:
        return h[:, 0]
    return h[:, spec.prefix_tokens:].mean(dim=1)


def per_image(h: torch.Tensor) -> torch.Tensor:
    """Flatten everything but the batch dimension (for CKA, where layout does not matter)."""
    return h.reshape(h.shape[0], -1)
