"""The few collective operations the engine needs; all are no-ops in a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's rows concatenated in rank order, and where this rank's rows start.
    Gradients flow back to the local rows when `x` requires them."""
    if not active():
        return x, 0
    if x.requires_grad:
        import torch.distributed.nn.functional as dist_fn

        parts = dist_fn.all_gather(x)
    else:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
    return torch.cat(list(parts)), rank() * x.shape[0]
