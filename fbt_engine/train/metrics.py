"""Accuracy and the per-stage feature-alignment statistics of METHOD §5."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fbt_engine.models.layouts import per_image


def near_chance(top1: float, classes: int) -> bool:
    """Whether a top-1 (%) is near chance: below twice chance, or, with few classes (where that is
    most of the way to 100 %), a tenth of the way from chance to 100 %. A loaded teacher that is
    gets refused, a trained one warned of, and so is a fusion model that stays there."""
    chance = 100.0 / classes
    return top1 < min(2 * chance, chance + (100.0 - chance) / 10)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """Number of images whose label is among the top-k logits, for each k (on the device)."""
    kmax = min(max(ks), logits.shape[-1])
    top = logits.topk(kmax, dim=-1).indices
    hit = top == labels[:, None]
    return [hit[:, : min(k, kmax)].any(dim=-1).sum() for k in ks]


def _centered_gram(x: torch.Tensor) -> torch.Tensor:
    x = per_image(x).double()
    gram = x @ x.t()
    n = gram.shape[0]
    h = torch.eye(n, dtype=gram.dtype, device=gram.device) - 1.0 / n
    return h @ gram @ h


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between two sets of per-image features of any shape and width (Kornblith et al.
    2019), through n×n Gram matrices so wide feature maps stay cheap."""
    kx, ky = _centered_gram(x), _centered_gram(y)
    denom = kx.norm() * ky.norm()
    return float((kx * ky).sum() / denom) if denom > 0 else 0.0


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.float(), b.float(), dim=-1).mean())


def retrieval_top1(learner: torch.Tensor, source: torch.Tensor) -> float:
    """Share of images whose learner embedding is nearest (cosine) to its own source embedding."""
    sim = F.normalize(learner.float(), dim=-1) @ F.normalize(source.float(), dim=-1).t()
    return float((sim.argmax(dim=-1) == torch.arange(len(sim), device=sim.device)).float().mean())


def norm_ratio(learner: torch.Tensor, source: torch.Tensor) -> float:
    return float(learner.float().norm(dim=-1).mean() / source.float().norm(dim=-1).mean().clamp_min(1e-12))
