"""The fusion model F of METHOD §2: stages 1–3 of the CNN-type model, the L2G projector, then
stage 4 and head of the MSA/MLP-type model ("3 + 1"). F calls both models' own modules (weight
sharing, no copies); its only new parameters are the projector's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fbt_engine.models.adapters import HeadOutput, StagedModel, evaluating
from fbt_engine.models.layouts import Layout, StageSpec, nhwc_to_layout, to_nchw

GLOBAL_ATTENTION_MAX_GRID = 8  # up to 8×8 tokens, one window covers the grid: global attention
HEAD_WIDTH = 32


class WindowAttentionBlock(nn.Module):
    """A pre-norm transformer block over an NHWC grid, attending within non-overlapping windows
    (Swin's W-MSA); a grid no larger than 8×8 is one window, i.e. global attention."""

    def __init__(self, dim: int, window: int, mlp_ratio: float):
        super().__init__()
        # heads of about HEAD_WIDTH channels that split the width exactly (112 → 3 heads would not)
        self.heads = next(n for n in range(max(1, dim // HEAD_WIDTH), 0, -1) if dim % n == 0)
        self.window = window
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = (nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
                    if hidden else None)

    def _windows(self, h: int, w: int) -> tuple[int, int]:
        if h <= GLOBAL_ATTENTION_MAX_GRID and w <= GLOBAL_ATTENTION_MAX_GRID:
            return h, w
        return min(self.window, h), min(self.window, w)

    def _attend(self, tokens: torch.Tensor) -> torch.Tensor:
        n, length, dim = tokens.shape
        qkv = self.qkv(tokens).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(*qkv.unbind(0))  # one backward (a stack), not three zero-filled selects
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        wh, ww = self._windows(h, w)
        pad_h, pad_w = (-h) % wh, (-w) % ww
        y = F.pad(self.norm1(x), (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        windows = y.view(b, hp // wh, wh, wp // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, c)
        y = self._attend(windows).view(b, hp // wh, wp // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
        x = x + y.reshape(b, hp, wp, c)[:, :h, :w]
        return x + self.mlp(x) if self.mlp is not None else x


class Projector(nn.Module):
    """L2G (or, between two models of one family, the bridge): a source stage output → the input
    layout, grid and width of the destination stage.

    Patch embedding (a k×k, stride-k conv; the source map is interpolated up first when its grid is
    smaller than the destination's), a norm, optionally one window-attention block, then the
    destination layout: NCHW, NHWC, or NLC with learnable prefix tokens and position embedding
    initialised from the destination model's own.
    """

    def __init__(self, src: StageSpec, dst: StageSpec, *, attention: bool, window: int, mlp_ratio: float,
                 embed_init: torch.Tensor | None = None, prefix_sees_tokens: bool = False):
        super().__init__()
        self.src, self.dst = src, dst
        # with no block after L2G, a class token would reach the head as the same parameter for every
        # image: it gets the tokens' mean added (what an averaging head would read)
        self.prefix_sees_tokens = prefix_sees_tokens
        (sh, sw), (dh, dw) = src.grid, dst.grid
        self.upsample = (max(sh, dh), max(sw, dw)) if sh < dh or sw < dw else None
        stride = max(1, max(sh, dh) // dh)
        self.patch = nn.Conv2d(src.width, dst.width, kernel_size=stride, stride=stride)
        self.norm = nn.LayerNorm(dst.width) if dst.is_tokens else nn.BatchNorm2d(dst.width)
        self.block = WindowAttentionBlock(dst.width, window, mlp_ratio) if attention and dst.is_tokens else None
        self.prefix = self.pos = None
        if dst.layout is Layout.NLC and embed_init is not None:
            self.prefix = nn.Parameter(embed_init[:, : dst.prefix_tokens].clone()) if dst.prefix_tokens else None
            self.pos = nn.Parameter(embed_init[:, dst.prefix_tokens:].clone())

    def no_weight_decay(self) -> set[str]:
        """The destination's class token and positions, which timm's training leaves undecayed too."""
        return {"prefix", "pos"}

    @torch.no_grad()
    def reset_embedding(self, embed_init: torch.Tensor) -> None:
        """The prefix tokens and position embedding from the destination's own again."""
        if self.prefix is not None:
            self.prefix.copy_(embed_init[:, : self.dst.prefix_tokens])
        if self.pos is not None:
            self.pos.copy_(embed_init[:, self.dst.prefix_tokens:])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = to_nchw(h, self.src)
        if self.upsample is not None:
            x = F.interpolate(x, size=self.upsample, mode="bilinear", align_corners=False)
        x = self.patch(x)
        if x.shape[-2:] != self.dst.grid:
            x = F.adaptive_avg_pool2d(x, self.dst.grid)
        if not self.dst.is_tokens:
            return self.norm(x)
        x = self.norm(x.permute(0, 2, 3, 1))
        if self.block is not None:
            x = self.block(x)
        x = nhwc_to_layout(x, self.dst)
        if self.pos is not None:
            x = x + self.pos
        if self.prefix is not None:
            prefix = self.prefix.expand(x.shape[0], -1, -1)
            if self.prefix_sees_tokens:
                prefix = prefix + x.mean(dim=1, keepdim=True)
            x = torch.cat([prefix, x], dim=1)
        return x


@dataclass(frozen=True)
class FusionPlan:
    """Which model gives F its stages 1–3 (`front`) and which its stage 4 and head (`back`)."""

    front: str  # "student" | "teacher"
    back: str
    kind: str  # "l2g" between families, "bridge" within one

    @classmethod
    def for_pair(cls, student: StagedModel, teacher: StagedModel, front: str = "auto") -> "FusionPlan":
        """`front` "auto": the CNN-type model's stages 1–3 (the paper's 3 + 1), the student's
        between two models of one family."""
        if front == "auto":
            front = "teacher" if teacher.is_cnn and not student.is_cnn else "student"
        return cls(front, "teacher" if front == "student" else "student",
                   "bridge" if student.is_cnn == teacher.is_cnn else "l2g")


def embed_init(model: StagedModel, spec: StageSpec) -> torch.Tensor | None:
    """The destination's own prefix tokens and position embedding, read by running its embedding
    steps on an all-zero token grid (the same for every model that adds them)."""
    if spec.layout is not Layout.NLC or not model.stage_map.embed:
        return None
    p = next(model.model.parameters())
    zeros = torch.zeros(1, spec.grid[0] * spec.grid[1], spec.width, device=p.device, dtype=p.dtype)
    with evaluating(model.model):
        out = model.embed(zeros)
    return out if out.shape[1] == spec.prefix_tokens + zeros.shape[1] else None


class FusionModel(nn.Module):
    """F(x) = head_m ∘ stage4_m ∘ L2G ∘ stage3_c ∘ stage2_c ∘ stage1_c (x), fed with the stage-3
    output that the front model's own forward already computed."""

    def __init__(self, front: StagedModel, back: StagedModel, *, attention: bool, window: int,
                 mlp_ratio: float, use_stage4: bool, pool: str, embed: str = "model"):
        super().__init__()
        self.back_view = back
        self.use_stage4, self.pool, self.embed = use_stage4, pool, embed
        dst = back.specs[2] if use_stage4 else back.specs[3]
        init = embed_init(back, dst)
        if init is not None and embed == "random":  # timm's init of a ViT's class token and positions
            init = nn.init.trunc_normal_(torch.empty_like(init), std=0.02)
        self.projector = Projector(front.specs[2], dst, attention=attention, window=window,
                                   mlp_ratio=mlp_ratio, embed_init=init, prefix_sees_tokens=not use_stage4)

    def reset_embedding(self) -> None:
        """L2G's prefix tokens and position embedding from the back model as it is now: a teacher
        trained in the run was untrained when F was built."""
        init = embed_init(self.back_view, self.projector.dst) if self.embed == "model" else None
        if init is not None:
            self.projector.reset_embedding(init)

    def forward(self, front_stage3: torch.Tensor) -> HeadOutput:
        z = self.projector(front_stage3)
        return self.back_view.run_from(z, 3 if self.use_stage4 else 4, self.pool)
