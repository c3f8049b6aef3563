"""Each method's typed parameters, validated from the preset's [method] table. No torch here.

Every "(default)" choice of METHOD.md is a field, so an ablation is a `--set method.x=...`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fbt_engine.config.fields import setting
from fbt_engine.registry import Registry

METHOD_PARAMS: Registry[type["MethodParams"]] = Registry("method")


@dataclass
class MethodParams:
    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = True
    section: ClassVar[str] = "method"
    ce_weight: float = setting(1.0, "weight of the student's cross-entropy with the labels", min=0)


@METHOD_PARAMS.register("scratch")
@dataclass
class ScratchParams(MethodParams):
    """Cross-entropy only: the student trained alone."""

    name: ClassVar[str] = "scratch"
    needs_teacher: ClassVar[bool] = False


@METHOD_PARAMS.register("kd")
@dataclass
class KDParams(MethodParams):
    """Hinton et al.: KL divergence at temperature T between softened logits, times T²."""

    name: ClassVar[str] = "kd"
    temperature: float = setting(4.0, "softmax temperature T", min=0.05)
    kd_weight: float = setting(1.0, "weight of the KL term", min=0)


@dataclass
class OFAParams(MethodParams):
    ofa_eps: float = setting(1.0, "OFA exponent ε on the teacher's probabilities (≥ 1)", min=1.0)
    ofa_temperature: float = setting(1.0, "softmax temperature τ₁ of the OFA loss", min=0.05)
    ofa_drop_ce: bool = setting(
        True,
        "true: OFA-KD's code form, which leaves out the one-hot part of the target-class weight "
        "because the separate CE term covers it; false: the paper's full (1 + p_t)^ε weight",
    )


@METHOD_PARAMS.register("ofa_logit")
@dataclass
class OFALogitParams(OFAParams):
    """OFA-KD's logit loss on the final logits only."""

    name: ClassVar[str] = "ofa_logit"
    logit_weight: float = setting(1.0, "weight of the OFA logit term", min=0)


@METHOD_PARAMS.register("fitnet_mse")
@dataclass
class FitNetParams(MethodParams):
    """Pixel-wise MSE between stage-4 features (student through a 1×1 projector, resized to the
    teacher's grid): the spatial loss the FBT paper argues against."""

    name: ClassVar[str] = "fitnet_mse"
    feature_weight: float = setting(1.0, "weight of the feature MSE term", min=0)


@METHOD_PARAMS.register("fbt")
@dataclass
class FBTParams(OFAParams):
    """Fuse Before Transfer: teacher → fusion → student, InfoNCE on pooled features + OFA logits."""

    name: ClassVar[str] = "fbt"
    use_nce: bool = setting(True, "feature loss on the pooled features of each pair")
    use_logit: bool = setting(True, "OFA logit loss on each pair")
    use_ts: bool = setting(True, "transfer teacher → student, L(K_t, K_s)")
    use_tf: bool = setting(True, "transfer teacher → fusion, L(K_t, K_f); the paper collapses without it")
    use_fs: bool = setting(True, "transfer fusion → student, L(K_f, K_s)")
    feature_loss: str = setting("infonce", "pooled-feature loss", choices=("infonce", "mse"))
    nce_weight: float = setting(1.0, "λ_nce", min=0)
    logit_weight: float = setting(1.0, "λ_logit", min=0)
    nce_dim: int = setting(256, "width of the InfoNCE projection heads", min=1)
    nce_tau: float = setting(0.07, "initial InfoNCE temperature", min=0.001, max=10)
    nce_tau_min: float = setting(0.01, "lower clamp of the learnable temperature", min=0.0001)
    nce_tau_max: float = setting(1.0, "upper clamp of the learnable temperature", min=0.0001)
    learn_tau: bool = setting(True, "learn the InfoNCE temperature (paper); false keeps nce_tau fixed")
    gather_negatives: bool = setting(True, "under DDP, use every rank's batch as negatives")
    detach_target: bool = setting(
        True, "the pair's knowledge source (its first model) gets no gradient from the pair's loss"
    )
    pool: str = setting("avg", "spatial smoothing of token models: mean of patch tokens or the class token",
                        choices=("avg", "cls"))
    fusion_ce: bool = setting(True, "cross-entropy with the labels on the fusion model too")
    fusion_ce_weight: float = setting(1.0, "weight of the fusion model's cross-entropy", min=0)
    l2g_attention: bool = setting(True, "the L2G projector's window attention block (one, unshifted)")
    l2g_window: int = setting(7, "L2G attention window; grids up to 8×8 use one global window", min=1)
    l2g_mlp_ratio: float = setting(1.0, "hidden width of the L2G block's MLP, as a multiple of its width", min=0)
    fusion_stage4: bool = setting(True, "run stage 4 of F's back model (the MSA/MLP one by default) inside F; "
                                  "false feeds L2G to its head")
    fusion_front: str = setting("auto", "the model whose stages 1–3 begin F: auto is the CNN-type one (the student "
                                "when both are of one family)", choices=("auto", "student", "teacher"))
    l2g_embed_init: str = setting("model", "L2G's class token and position embedding, where F's back is a ViT: "
                                  "its own, or timm's random init", choices=("model", "random"))
    freeze_teacher_in_fusion: bool = setting(True, "the teacher's modules inside F stay frozen")
