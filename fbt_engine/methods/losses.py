"""The loss functions, pure and in fp32. Each has a regression test against hand-computed values."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fbt_engine.labels import hard_labels, one_hot
from fbt_engine.train import distributed


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Class indices, or soft targets (Mixup/CutMix); label smoothing applies to either."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.: KL(p_t^T ‖ p_s^T) · T², averaged over the batch."""
    log_p_s = F.log_softmax(student.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * temperature**2


def ofa_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, eps: float = 1.0,
             temperature: float = 1.0, drop_ce: bool = True) -> torch.Tensor:
    """OFA-KD's logit loss. With p_t the teacher's probabilities and ĉ the true class:

        −(1 + p_t[ĉ])^ε · log p_s[ĉ] − Σ_{c≠ĉ} p_t[c]^ε · log p_s[c]          (drop_ce = False)

    OFA-KD's released code subtracts the one-hot from the weights, i.e. the target class is weighted
    (1 + p_t[ĉ])^ε − 1, because the separate cross-entropy term already supplies the "1 ·" part;
    `drop_ce = True` (fbt's default, since fbt also adds CE) is that form. At ε = 1 the full form is
    cross-entropy against p_t + onehot(ĉ). With Mixup/CutMix targets, ĉ is their most likely class.
    """
    log_p_s = F.log_softmax(student.float() / temperature, dim=-1)
    p_t = F.softmax(teacher.float() / temperature, dim=-1)
    onehot = one_hot(hard_labels(labels), student.shape[-1])
    weight = (p_t + onehot).pow(eps)
    if drop_ce:
        weight = weight - onehot
    return -(weight * log_p_s).sum(dim=-1).mean()


def info_nce(learner: torch.Tensor, source: torch.Tensor, tau: torch.Tensor | float,
             gather: bool = True) -> torch.Tensor:
    """Spatial-agnostic InfoNCE on L2-normalised embeddings: each learner embedding must pick its
    own image's source embedding among every source embedding of the batch (all ranks' batches
    under DDP when `gather`). Rows are images; the positive of row i is source row i."""
    learner = F.normalize(learner.float(), dim=-1)
    source = F.normalize(source.float(), dim=-1)
    offset = 0
    if gather:
        source, offset = distributed.gather_rows(source)
    # in fp32 under autocast too: cosines divided by τ ≈ 0.07 span ±14, where bf16 keeps 2–3 digits
    with torch.autocast(learner.device.type, enabled=False):
        logits = learner @ source.t() / tau
    targets = torch.arange(learner.shape[0], device=learner.device) + offset
    return F.cross_entropy(logits, targets)


def feature_mse(learner: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Plain element-wise MSE (FitNet's hint loss)."""
    return F.mse_loss(learner.float(), source.float())


def unit_distance(learner: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Squared distance between the L2-normalised rows (2 − 2·cos), mean over the batch.

    FBT's `feature_loss = "mse"` on pooled features. Normalised because a raw MSE's gradient
    grows with the feature norms: with SGD at the students' learning rates the regression head
    diverged within ten steps on pooled ViT/Mixer features. Scale-free, it differs from InfoNCE
    only in having no negatives, which is the comparison the ablation is for."""
    diff = F.normalize(learner.float(), dim=-1) - F.normalize(source.float(), dim=-1)
    return diff.pow(2).sum(dim=-1).mean()
