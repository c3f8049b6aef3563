"""Batched augmentation on the training device: no per-image Python in the step."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from fbt_engine.data.specs import parse_randaugment
from fbt_engine.labels import one_hot


def mixed_seed(*parts: int) -> int:
    """One non-negative 63-bit seed from several integers (seed, epoch, step, …), each mattering."""
    mixed = 0
    for part in parts:
        mixed = mixed * 1_000_003 + part
    return mixed & 0x7FFF_FFFF_FFFF_FFFF


def step_generator(device: torch.device, seed: int, epoch: int, step: int) -> torch.Generator:
    """A generator whose stream depends only on (seed, epoch, step), so a resumed run draws the
    same crops, flips and batch order as an uninterrupted one."""
    return torch.Generator(device=device).manual_seed(mixed_seed(seed, epoch, step))


def crop_flip_draws(b: int, pad: int, flip: bool, g: torch.Generator,
                    device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The random part of `crop_flip` for a batch of `b`: each image's crop offsets (rows, then
    columns; 0 … 2·pad) and a uniform draw whose half decides its flip."""
    offsets = torch.randint(0, 2 * pad + 1, (2, b), device=device, generator=g) if pad else None
    flips = torch.rand(b, device=device, generator=g) if flip else None
    return offsets, flips


def crop_flip(x: torch.Tensor, pad: int, offsets: torch.Tensor | None, flips: torch.Tensor | None) -> torch.Tensor:
    """Pad-and-crop back to the input size, and horizontal flips, of a uint8 batch, as drawn by
    `crop_flip_draws`."""
    b, c, h, w = x.shape
    if offsets is not None:
        padded = F.pad(x, (pad, pad, pad, pad))
        rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
        cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    if flips is not None:
        x = torch.where((flips < 0.5)[:, None, None, None], x.flip(3), x)
    return x


def standard_input(x: torch.Tensor, offsets: torch.Tensor | None, flips: torch.Tensor | None, pad: int, size: int,
                   mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A uint8 batch cropped and flipped as drawn, normalised at `size` px: the standard augmentation
    past its draws, a function of its inputs alone, so that it can be compiled into one kernel."""
    return to_model_input(crop_flip(x, pad, offsets, flips), size, mean, std)


def to_model_input(x: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW → normalised float at `size` px."""
    x = x.float().div_(255)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - mean) / std


# --- the paper protocol's augmentations, batched -------------------------------------------------
# Random-resized-crop to the training size (how CIFAR reaches 224 px), RandAugment, random erasing.
# Each image draws its own parameters; the work is whole-batch tensor ops (an op applied to the
# subset of images that drew it), never a Python loop over images.

RRC_ATTEMPTS = 10


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device, generator=g)


def random_resized_crop(x: torch.Tensor, size: int, scale: tuple[float, float], ratio: tuple[float, float],
                        g: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop for a whole float batch: per image, a box of random area
    (a `scale` fraction) and aspect (log-uniform in `ratio`), first of 10 draws that fits, else the
    whole image; then every box is resampled bilinearly to size×size in one roi_align call."""
    from torchvision.ops import roi_align

    b, _, h, w = x.shape
    dev = x.device
    area = _uniform(b * RRC_ATTEMPTS, *scale, g, dev) * h * w
    log_r = _uniform(b * RRC_ATTEMPTS, math.log(ratio[0]), math.log(ratio[1]), g, dev)
    aspect = torch.exp(log_r)
    bw = torch.sqrt(area * aspect).round().view(b, RRC_ATTEMPTS)
    bh = torch.sqrt(area / aspect).round().view(b, RRC_ATTEMPTS)
    fits = (bw > 0) & (bh > 0) & (bw <= w) & (bh <= h)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.zeros(b, dtype=torch.long, device=dev))
    pick = lambda t: t.gather(1, first[:, None]).squeeze(1)  # noqa: E731
    ok = fits.any(1)
    bw = torch.where(ok, pick(bw), torch.full((b,), float(w), device=dev))
    bh = torch.where(ok, pick(bh), torch.full((b,), float(h), device=dev))
    x0 = torch.floor(torch.rand(b, device=dev, generator=g) * (w - bw + 1))
    y0 = torch.floor(torch.rand(b, device=dev, generator=g) * (h - bh + 1))
    boxes = torch.stack([torch.arange(b, device=dev, dtype=x.dtype), x0, y0, x0 + bw, y0 + bh], dim=1)
    # adaptive sampling: one sample per output pixel when upsampling (exact at a full box), an
    # average over the covered pixels when downsampling
    return roi_align(x, boxes.to(x.dtype), output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1,
                     aligned=True)


def random_hflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mask = torch.rand(x.shape[0], device=x.device, generator=g) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def random_erasing(x: torch.Tensor, prob: float, g: torch.Generator, area: tuple[float, float] = (0.02, 1 / 3),
                   aspect: tuple[float, float] = (0.3, 1 / 0.3)) -> torch.Tensor:
    """timm's RandomErasing (mode "pixel", one box) on a normalised float batch: with probability
    `prob` per image, a box of random area and aspect is filled with N(0, 1) noise."""
    b, c, h, w = x.shape
    dev = x.device
    n = b * RRC_ATTEMPTS
    target = _uniform(n, *area, g, dev) * h * w
    ar = torch.exp(_uniform(n, math.log(aspect[0]), math.log(aspect[1]), g, dev))
    eh = torch.sqrt(target * ar).round().view(b, RRC_ATTEMPTS)
    ew = torch.sqrt(target / ar).round().view(b, RRC_ATTEMPTS)
    fits = (eh < h) & (ew < w) & (eh > 0) & (ew > 0)
    first = fits.float().argmax(1, keepdim=True)
    eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
    erase = fits.any(1) & (torch.rand(b, device=dev, generator=g) < prob)
    top = torch.floor(torch.rand(b, device=dev, generator=g) * (h - eh + 1))
    left = torch.floor(torch.rand(b, device=dev, generator=g) * (w - ew + 1))
    rows = torch.arange(h, device=dev)[None, :]
    cols = torch.arange(w, device=dev)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None])[:, None]
    noise = torch.randn(x.shape, device=dev, generator=g, dtype=x.dtype)
    return torch.where(mask, noise, x)


# RandAugment, timm's "rand-mM-mstdS-inc1": two ops per image, each applied with probability 0.5,
# magnitude ~ N(M, S) clipped to [0, 10], from the "increasing" op set.

def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (b + factor.view(-1, 1, 1, 1) * (a - b)).clamp(0, 255)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)


def _signed(level: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    sign = torch.where(torch.rand(level.shape, device=level.device, generator=g) < 0.5, -1.0, 1.0)
    return level * sign


def _enhance_factor(level: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return (1.0 + _signed(level / 10 * 0.9, g)).clamp_min(0.1)


def _affine(x: torch.Tensor, theta: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Per-image affine warp (theta in normalised coordinates), outside pixels set to `fill`."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode="nearest", padding_mode="zeros",
                           align_corners=False)
    return warped * inside + fill.view(1, -1, 1, 1) * (1 - inside)


def _eye(n: int, device) -> torch.Tensor:
    return torch.eye(2, 3, device=device).repeat(n, 1, 1)


def _rotate(x, level, g, fill):
    angle = torch.deg2rad(_signed(level / 10 * 30.0, g))
    theta = _eye(len(x), x.device)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    return _affine(x, theta, fill)


def _shear(axis: int):
    def op(x, level, g, fill):
        theta = _eye(len(x), x.device)
        theta[:, axis, 1 - axis] = _signed(level / 10 * 0.3, g)
        return _affine(x, theta, fill)
    return op


def _translate(axis: int):
    def op(x, level, g, fill):
        theta = _eye(len(x), x.device)
        theta[:, axis, 2] = _signed(level / 10 * 0.45, g) * 2  # a fraction of the side, in [-1, 1] units
        return _affine(x, theta, fill)
    return op


def _posterize(x, level, g, fill):
    bits = 4 - (level / 10 * 4).long()  # keep 4 down to 0 most significant bits
    mask = ((0xFF << (8 - bits)) & 0xFF).to(torch.uint8).view(-1, 1, 1, 1)
    return (x.to(torch.uint8) & mask).float()


def _solarize(x, level, g, fill):
    threshold = (256 - (level / 10 * 256).long().clamp_max(256)).view(-1, 1, 1, 1)
    return torch.where(x >= threshold, 255 - x, x)


def _solarize_add(x, level, g, fill):
    add = (level / 10 * 110).long().clamp_max(128).view(-1, 1, 1, 1)
    return torch.where(x < 128, (x + add).clamp_max(255), x)


def _sharpness(x, level, g, fill):
    # PIL's smoothing kernel (5 at the centre, 1 around, over 13) as a box sum plus 4 × the centre: no
    # kernel made from host numbers, which on CUDA would be a copy that waits
    c = x.shape[1]
    smooth = (F.conv2d(x, x.new_ones(c, 1, 3, 3), groups=c) + 4 * x[:, :, 1:-1, 1:-1]) / 13
    blurred = x.clone()
    blurred[:, :, 1:-1, 1:-1] = smooth
    return _blend(x, blurred, _enhance_factor(level, g))


def _autocontrast(x, level, g, fill):
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    scale = torch.where(hi > lo, 255 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
    return torch.where(hi > lo, (x - lo) * scale, x)


def _equalize(x, level, g, fill):
    from torchvision.transforms.v2.functional import equalize

    return equalize(x.round().to(torch.uint8)).float()


RAND_OPS = {
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": lambda x, level, g, fill: 255 - x,
    "Rotate": _rotate,
    "PosterizeIncreasing": _posterize,
    "SolarizeIncreasing": _solarize,
    "SolarizeAdd": _solarize_add,
    "ColorIncreasing": lambda x, level, g, fill: _blend(x, _gray(x), _enhance_factor(level, g)),
    "ContrastIncreasing": lambda x, level, g, fill: _blend(
        x, _gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), _enhance_factor(level, g)),
    "BrightnessIncreasing": lambda x, level, g, fill: _blend(x, torch.zeros_like(x), _enhance_factor(level, g)),
    "SharpnessIncreasing": _sharpness,
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateXRel": _translate(0),
    "TranslateYRel": _translate(1),
}


def rand_augment(x: torch.Tensor, spec: str, fill: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """RandAugment on a uint8 batch: each image draws its ops and magnitudes. Every op runs on the
    whole batch and each image keeps the result of the op it drew: more arithmetic than gathering
    subsets, but no host synchronisation (subset sizes would need one) and tiny at native size."""
    magnitude, std, n_ops = parse_randaugment(spec)
    out = x.float()
    b = len(x)
    for _ in range(n_ops):
        choice = torch.randint(0, len(RAND_OPS), (b,), device=x.device, generator=g)
        apply = torch.rand(b, device=x.device, generator=g) < 0.5
        level = (magnitude + std * torch.randn(b, device=x.device, generator=g)).clamp(0, 10)
        result = out
        for i, op in enumerate(RAND_OPS.values()):
            chosen = (apply & (choice == i)).view(-1, 1, 1, 1)
            result = torch.where(chosen, op(out, level, g, fill).clamp(0, 255), result)
        out = result
    return out.round().to(torch.uint8)


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup: float, cutmix: float, prob: float,
              switch_prob: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's batch-mode Mixup/CutMix: the batch is mixed with itself reversed, with one λ drawn
    from Beta(α, α); CutMix pastes a box of area 1 − λ (λ then corrected to the box that fits).
    Returns soft targets (un-smoothed: the cross-entropy adds label smoothing to any target)."""
    target = one_hot(y, num_classes)
    if rng.random() >= prob or not (mixup or cutmix):
        return x, target
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < switch_prob)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    flipped = x.flip(0)
    if use_cutmix:
        h, w = x.shape[-2:]
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = x * lam + flipped * (1 - lam)
    return x, target * lam + target.flip(0) * (1 - lam)


def step_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    """numpy's counterpart of `step_generator`, for the draws made on the host (Mixup's λ)."""
    return np.random.default_rng([seed, epoch + 1, step + 1])
