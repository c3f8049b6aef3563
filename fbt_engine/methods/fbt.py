"""FBT (METHOD §2–3): teacher → fusion → student in one stage, with
L_FBT = L(K_t, K_s) + L(K_t, K_f) + L(K_f, K_s) + CE(student) [+ CE(fusion)], where
L(K_i, K_j) = λ_nce · InfoNCE(f_i, f_j) + λ_logit · OFA(p_i, p_j).

In each pair the first model is the knowledge source and the second the learner; with
`detach_target` the source gets no gradient from the pair, so L(K_f, K_s) teaches the student and
never drags F back toward it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fbt_engine.methods.base import METHODS, PAIRS, Distiller, Features, MethodOutput
from fbt_engine.methods.fusion import FusionModel, FusionPlan
from fbt_engine.methods.losses import info_nce, ofa_loss, unit_distance
from fbt_engine.methods.params import FBTParams
from fbt_engine.models.adapters import HeadOutput

class PairFeatureLoss(nn.Module):
    """The pooled-feature half of L(K_i, K_j): InfoNCE through two projection heads and a learnable
    temperature, or MSE from the learner's projection to the source's raw feature."""

    def __init__(self, source_dim: int, learner_dim: int, p: FBTParams):
        super().__init__()
        self.kind, self.p = p.feature_loss, p
        if self.kind == "infonce":
            self.source_head = nn.Linear(source_dim, p.nce_dim)
            self.learner_head = nn.Linear(learner_dim, p.nce_dim)
            self.log_tau = nn.Parameter(torch.tensor(math.log(p.nce_tau)), requires_grad=p.learn_tau)
        else:
            self.learner_head = nn.Linear(learner_dim, source_dim)

    @property
    def tau(self) -> torch.Tensor:
        """The temperature, clamped; its gradient passes the clamp (straight through), which on a bound
        passes none, so the loss can still pull it back in. keep_in_range bounds the parameter."""
        clamped = self.log_tau.clamp(*self._log_tau_range())
        return (self.log_tau + (clamped - self.log_tau).detach()).exp()

    def _log_tau_range(self) -> tuple[float, float]:
        return math.log(self.p.nce_tau_min), math.log(self.p.nce_tau_max)

    @torch.no_grad()
    def keep_in_range(self) -> None:
        if self.kind == "infonce":
            self.log_tau.clamp_(*self._log_tau_range())

    def embed(self, source: torch.Tensor, learner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both features in the loss's common space (for the alignment statistics too)."""
        if self.kind == "infonce":
            return self.source_head(source), self.learner_head(learner)
        return source, self.learner_head(learner)

    def forward(self, source: torch.Tensor, learner: torch.Tensor) -> torch.Tensor:
        z_source, z_learner = self.embed(source, learner)
        if self.kind == "infonce":
            return info_nce(z_learner, z_source, self.tau, gather=self.p.gather_negatives)
        return unit_distance(z_learner, z_source)


@METHODS.register("fbt")
class FBT(Distiller):
    params: FBTParams

    def __init__(self, student, teacher, params: FBTParams, label_smoothing: float):
        super().__init__(student, teacher, params, label_smoothing)
        self.plan = FusionPlan.for_pair(student, teacher, params.fusion_front)
        self.pool = params.pool  # all three models' pooled features read alike
        views = {"student": student, "teacher": teacher}
        front, back = views[self.plan.front], views[self.plan.back]
        self.fusion = FusionModel(front, back, attention=params.l2g_attention, window=params.l2g_window,
                                  mlp_ratio=params.l2g_mlp_ratio, use_stage4=params.fusion_stage4, pool=params.pool,
                                  embed=params.l2g_embed_init)
        if not params.freeze_teacher_in_fusion:
            # F trains the teacher modules it borrows, and only those (DDP fails on parameters that
            # never get a gradient); the teacher is registered so that the optimiser and the
            # checkpoints see them.
            for q in self.borrowed_teacher_parameters():
                q.requires_grad_(True)
            self.teacher_in_fusion = teacher.model
        widths = {"student": student.specs[3].width, "teacher": teacher.specs[3].width,
                  "fusion": back.specs[3].width}
        self.pair_losses = nn.ModuleDict({
            pair: PairFeatureLoss(widths[src], widths[dst], params)
            for pair, (src, dst) in PAIRS.items() if self._pair_on(pair) and params.use_nce
        })

    def borrowed_teacher_parameters(self) -> list[nn.Parameter]:
        """The teacher's parameters that F computes with."""
        if self.plan.front == "teacher":
            parts = ["stem", "stage1", "stage2", "stage3"]
        else:
            parts = ["stage4"] * self.params.fusion_stage4 + ["neck", "head"]
        by_part = self.teacher_view.part_parameters()
        return [q for part in parts for q in by_part[part]]

    def keep_in_range(self) -> None:
        for loss in self.pair_losses.values():
            loss.keep_in_range()

    def teacher_trained(self) -> None:
        if self.plan.back == "teacher":
            self.fusion.reset_embedding()

    def _pair_on(self, pair: str) -> bool:
        return {"ts": self.params.use_ts, "tf": self.params.use_tf, "fs": self.params.use_fs}[pair]

    def loss_terms(self) -> list[str]:
        terms = ["ce"] + (["fusion/ce"] if self.params.fusion_ce else [])
        feature = "nce" if self.params.feature_loss == "infonce" else "mse"
        for pair in PAIRS:
            if self._pair_on(pair):
                terms += [f"{pair}/{feature}"] * self.params.use_nce + [f"{pair}/logit"] * self.params.use_logit
        return terms

    def features(self, x: torch.Tensor) -> dict[str, HeadOutput | Features]:
        """Teacher, student and fusion outputs for one batch; the front model's stage-3 output
        from its own forward pass feeds F (no second pass)."""
        trains_teacher_front = self.plan.front == "teacher" and not self.params.freeze_teacher_in_fusion
        t = self.teacher_features(x, grad=trains_teacher_front)
        s = self.student_features(x)
        front = s if self.plan.front == "student" else t
        return {"teacher": t, "student": s, "fusion": self.fusion(front.stages[2])}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        out = self.features(x)
        heads: dict[str, HeadOutput] = {k: (v.head if isinstance(v, Features) else v) for k, v in out.items()}
        p = self.params
        losses = {"ce": p.ce_weight * self.ce(heads["student"].logits, y)}
        if p.fusion_ce:
            losses["fusion/ce"] = p.fusion_ce_weight * self.ce(heads["fusion"].logits, y)
        for pair, (src, dst) in PAIRS.items():
            if not self._pair_on(pair):
                continue
            source, learner = heads[src], heads[dst]
            if p.detach_target:
                source = HeadOutput(source.feature.detach(), source.logits.detach())
            if p.use_nce:
                name = "nce" if p.feature_loss == "infonce" else "mse"
                losses[f"{pair}/{name}"] = p.nce_weight * self.pair_losses[pair](source.feature, learner.feature)
            if p.use_logit:
                losses[f"{pair}/logit"] = p.logit_weight * ofa_loss(
                    learner.logits, source.logits, y, p.ofa_eps, p.ofa_temperature, p.ofa_drop_ce)
        return MethodOutput(heads["student"].logits, losses)

    def fusion_param_count(self) -> int:
        """Every parameter F computes with: the front's stem and stages 1–3, the projector, and the
        back's stage 4 (when used), neck and head."""
        views = {"student": self.student_view, "teacher": self.teacher_view}
        front = views[self.plan.front].param_breakdown()
        back = views[self.plan.back].param_breakdown()
        borrowed = front["stem"] + front["stage1"] + front["stage2"] + front["stage3"]
        borrowed += back["neck"] + back["head"] + (back["stage4"] if self.params.fusion_stage4 else 0)
        return borrowed + sum(p.numel() for p in self.fusion.parameters())

    def fusion_output(self, student: Features, teacher: Features) -> HeadOutput:
        return self.fusion((student if self.plan.front == "student" else teacher).stages[2])

    def pair_space(self, pair: str):
        loss = self.pair_losses[pair] if pair in self.pair_losses else None
        return loss.embed if loss is not None else None

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.student_features(x)
        front = s if self.plan.front == "student" else self.teacher_features(x)
        return {"student": s.head.logits, "fusion": self.fusion(front.stages[2]).logits}
