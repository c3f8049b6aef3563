"""The baselines that share fbt's engine: scratch, kd, ofa_logit, fitnet_mse (METHOD §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fbt_engine.methods.base import METHODS, Distiller, MethodOutput
from fbt_engine.methods.losses import feature_mse, kd_loss, ofa_loss
from fbt_engine.methods.params import FitNetParams, KDParams, OFALogitParams, ScratchParams
from fbt_engine.models.layouts import to_nchw


@METHODS.register("scratch")
class Scratch(Distiller):
    params: ScratchParams

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        logits = self.student(x)
        return MethodOutput(logits, {"ce": self.params.ce_weight * self.ce(logits, y)})

    def loss_terms(self) -> list[str]:
        return ["ce"]


class LogitDistiller(Distiller):
    """CE on the labels plus one loss between the student's and the frozen teacher's logits."""

    term: str

    def logit_loss(self, student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        with torch.no_grad():
            teacher_logits = self.teacher_view.model(x)
        logits = self.student(x)
        return MethodOutput(logits, {"ce": self.params.ce_weight * self.ce(logits, y),
                                     self.term: self.logit_loss(logits, teacher_logits, y)})

    def loss_terms(self) -> list[str]:
        return ["ce", self.term]


@METHODS.register("kd")
class KD(LogitDistiller):
    params: KDParams
    term = "kd"

    def logit_loss(self, student, teacher, y):
        return self.params.kd_weight * kd_loss(student, teacher, self.params.temperature)


@METHODS.register("ofa_logit")
class OFALogit(LogitDistiller):
    params: OFALogitParams
    term = "ofa"

    def logit_loss(self, student, teacher, y):
        p = self.params
        return p.logit_weight * ofa_loss(student, teacher, y, p.ofa_eps, p.ofa_temperature, p.ofa_drop_ce)


@METHODS.register("fitnet_mse")
class FitNet(Distiller):
    """Stage-4 maps: the student's through a 1×1 conv to the teacher's width, resized to the
    teacher's grid, then pixel-wise MSE against the teacher's."""

    params: FitNetParams

    def __init__(self, student, teacher, params, label_smoothing):
        super().__init__(student, teacher, params, label_smoothing)
        s4, t4 = student.specs[3], teacher.specs[3]
        self.projector = nn.Conv2d(s4.width, t4.width, kernel_size=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        t = self.teacher_features(x)
        s = self.student_features(x)
        s_map = self.projector(to_nchw(s.stages[3], self.student_view.specs[3]))
        t_map = to_nchw(t.stages[3], self.teacher_view.specs[3])
        if s_map.shape[-2:] != t_map.shape[-2:]:
            s_map = F.interpolate(s_map, size=t_map.shape[-2:], mode="bilinear", align_corners=False)
        p = self.params
        return MethodOutput(s.head.logits, {
            "ce": p.ce_weight * self.ce(s.head.logits, y),
            "fitnet": p.feature_weight * feature_mse(s_map, t_map),
        })

    def loss_terms(self) -> list[str]:
        return ["ce", "fitnet"]
