"""Label tensors as the data path makes them and the losses read them: class indices, or soft
targets (one row of class probabilities per image) once Mixup/CutMix mixed the batch."""

from __future__ import annotations

import torch


def one_hot(indices: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot rows. Unlike F.one_hot, it never reads the labels back to check their range
    (F.one_hot does on the CPU, twice a call), so the training step stays free of host syncs."""
    rows = torch.zeros(*indices.shape, num_classes, dtype=torch.float32, device=indices.device)
    return rows.scatter_(-1, indices.unsqueeze(-1), 1.0)


def hard_labels(labels: torch.Tensor) -> torch.Tensor:
    """Class indices from indices or from soft targets (their most likely class)."""
    return labels.argmax(dim=-1) if labels.is_floating_point() else labels
