"""Batched augmentation on the training device: no per-image Python in the step."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def step_generator(device: torch.device, seed: int, epoch: int, step: int) -> torch.Generator:
    """A generator whose stream depends only on (seed, epoch, step), so a resumed run draws the
    same crops, flips and batch order as an uninterrupted one."""
    g = torch.Generator(device=device)
    mixed = ((seed * 1_000_003 + epoch) * 1_000_003 + step) & 0x7FFF_FFFF_FFFF_FFFF
    return g.manual_seed(mixed)


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Pad-and-random-crop back to the input size, and random horizontal flips, on a uint8 batch."""
    b, c, h, w = x.shape
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device, generator=g)
        ox = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device, generator=g)
        rows = (oy + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
        cols = (ox + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(b, device=x.device, generator=g) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def to_model_input(x: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW → normalised float at `size` px."""
    x = x.float().div_(255)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - mean) / std
