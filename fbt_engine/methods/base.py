"""The method interface every distillation method implements, and the method registry.

A method is an nn.Module built from the student's and teacher's four-stage adapters and its own
typed parameters. `forward(images, labels)` returns the student's logits and a dict of named,
already-weighted loss terms; the trainer sums and logs every term. The teacher is held outside
the module tree: it is never in `parameters()`, `state_dict()` or `train()`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from fbt_engine.methods.losses import cross_entropy
from fbt_engine.methods.params import MethodParams
from fbt_engine.models.adapters import HeadOutput, StagedModel
from fbt_engine.registry import Registry


# The three knowledge transfers of FBT, as (source, learner); baselines have only "ts".
PAIRS = {"ts": ("teacher", "student"), "tf": ("teacher", "fusion"), "fs": ("fusion", "student")}


class MethodOutput(NamedTuple):
    logits: torch.Tensor
    losses: dict[str, torch.Tensor]


class Features(NamedTuple):
    """One model's view of a batch: every stage output and the pooled feature and logits."""

    stages: list[torch.Tensor]
    head: HeadOutput


class Distiller(nn.Module):
    params_type: type[MethodParams] = MethodParams

    def __init__(self, student: StagedModel, teacher: StagedModel | None, params: MethodParams,
                 label_smoothing: float):
        super().__init__()
        if params.needs_teacher and teacher is None:
            raise ValueError(f"method {params.name} needs a teacher")
        self.student = student.model
        self.student_view = student
        self.teacher_view = teacher
        self.params = params
        self.label_smoothing = label_smoothing
        if teacher is not None:
            teacher.model.eval().requires_grad_(False)

    # -- what every method shares ----------------------------------------------------------------

    def ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, labels, self.label_smoothing)

    pool = "avg"  # how a token model's pooled feature is read (METHOD §3); FBT's is a setting

    def student_features(self, x: torch.Tensor) -> Features:
        return Features(*self.student_view.forward(x, self.pool))

    def teacher_features(self, x: torch.Tensor, grad: bool = False) -> Features:
        """The teacher's view, without autograd unless a method trains teacher modules it borrows.

        `no_grad`, not `inference_mode`: the teacher's outputs feed trainable modules (projection
        heads, L2G), which must save them for backward, and inference tensors cannot be saved
        without a copy; `no_grad` already skips building the graph."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return Features(*self.teacher_view.forward(x, self.pool))

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        if self.teacher_view is not None:
            self.teacher_view.model.eval()
        return self

    # -- what a method defines ---------------------------------------------------------------------

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits to evaluate, by model: always "student", plus "fusion" where the method has one."""
        return {"student": self.student(x)}

    def fusion_output(self, student: Features, teacher: Features) -> HeadOutput | None:
        """The fusion model's pooled feature and logits, for methods that have one."""
        return None

    def pair_space(self, pair: str):
        """(source, learner) pooled features → the pair's common embedding space, if it has one."""
        return None

    def keep_in_range(self) -> None:
        """Parameters the forward pass clamps, clamped in place (the loop calls it at log steps), so
        that optimiser steps cannot carry them far past a bound."""

    def teacher_trained(self) -> None:
        """The run has just trained the teacher: what the method took from it when it was built
        (untrained then) is taken again."""

    def new_modules(self) -> dict[str, nn.Module]:
        """Modules the method adds beyond the student (projectors, heads), by name: not the teacher,
        which a method that trains part of it registers."""
        teacher = self.teacher_view.model if self.teacher_view is not None else None
        return {name: m for name, m in self.named_children() if m is not self.student and m is not teacher}

    def loss_terms(self) -> list[str]:
        """The names of the loss terms `forward` returns, in order."""
        raise NotImplementedError


METHODS: Registry[type[Distiller]] = Registry("method")


def build_method(student: StagedModel, teacher: StagedModel | None, params: MethodParams,
                 label_smoothing: float) -> Distiller:
    import fbt_engine.methods.baselines  # noqa: F401  (registers the methods)
    import fbt_engine.methods.fbt  # noqa: F401

    return METHODS.get(params.name)(student, teacher, params, label_smoothing)
