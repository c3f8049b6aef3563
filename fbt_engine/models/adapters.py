"""The four-stage view of any supported model (METHOD §1): `run_to`, `run_from`, probed specs.

A model is cut into stem → stage1..4 → neck → head by a `StageMap`: data naming the model's own
modules (or methods) by dotted path, kept per model class. Nothing is monkey-patched; the adapter
calls the model's modules in the order its own forward does, so `run_from(run_to(x, k)[-1], k)`
reproduces `model(x)` exactly. Shapes come from a dummy forward, never from a table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from fbt_engine.models.layouts import Layout, StageSpec, smooth

Step = Callable[[torch.Tensor], torch.Tensor]
TOKEN_STAGE_FRACTIONS = (2 / 12, 4 / 12, 10 / 12, 1.0)  # a 12-block model ends stages after 2, 4, 10, 12


@dataclass(frozen=True)
class SplitByDepth:
    """Stages as slices of one block list, ending at fixed fractions of its depth."""

    path: str
    fractions: tuple[float, ...] = TOKEN_STAGE_FRACTIONS


@dataclass(frozen=True)
class SplitByResolution:
    """Stages as the last four resolution groups of one block list, found by probing; earlier
    (higher-resolution) groups join stage 1, `tail` modules join stage 4."""

    path: str
    tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageMap:
    patchify: tuple[str, ...]  # image → first map/tokens
    stages: tuple[tuple[str, ...], ...] | SplitByDepth | SplitByResolution
    layout: Layout
    embed: tuple[str, ...] = ()  # after patchify: prefix tokens, positions (part of the stem)
    neck: tuple[str, ...] = ()  # after stage 4, before the model's forward_head


_RESNET_STAGES = (("layer1",), ("layer2",), ("layer3",), ("layer4",))

# Keyed by model class name. A new family is a new entry here, not new code.
STAGE_MAPS: dict[str, StageMap] = {
    "ResNet": StageMap(("conv1", "bn1", "act1", "maxpool"), _RESNET_STAGES, Layout.NCHW),
    "CifarResNet": StageMap(("conv1", "bn1", "act1"), _RESNET_STAGES, Layout.NCHW),
    "ConvNeXt": StageMap(("stem",), tuple((f"stages.{i}",) for i in range(4)), Layout.NCHW, neck=("norm_pre",)),
    # MobileNetV2 / EfficientNet: stage 4 ends after the 1280-channel head conv, as in OFA-KD.
    "EfficientNet": StageMap(("conv_stem", "bn1"), SplitByResolution("blocks", tail=("conv_head", "bn2")),
                             Layout.NCHW),
    "VisionTransformer": StageMap(("patch_embed",), SplitByDepth("blocks"), Layout.NLC,
                                  embed=("_pos_embed", "patch_drop", "norm_pre"), neck=("norm",)),
    "MlpMixer": StageMap(("stem",), SplitByDepth("blocks"), Layout.NLC, neck=("norm",)),
    "SwinTransformer": StageMap(("patch_embed",), tuple((f"layers.{i}",) for i in range(4)), Layout.NHWC,
                                neck=("norm",)),
}


class HeadOutput(NamedTuple):
    feature: torch.Tensor  # spatially smoothed stage-4 output (METHOD §3)
    logits: torch.Tensor


class UnsupportedModel(ValueError):
    pass


def resolve_path(root: nn.Module, path: str):
    """`a.b.3` → root.a.b[3]; a method name resolves to the bound method."""
    obj = root
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def _run(steps: Sequence[Step], x: torch.Tensor) -> torch.Tensor:
    for step in steps:
        x = step(x)
    return x


def _depth_split(blocks: nn.Module, fractions: Sequence[float]) -> list[list[Step]]:
    depth = len(blocks)
    if depth < len(fractions):
        raise UnsupportedModel(f"{depth} blocks cannot make {len(fractions)} stages")
    ends: list[int] = []
    for i, frac in enumerate(fractions):
        lo = (ends[-1] if ends else 0) + 1
        hi = depth - (len(fractions) - 1 - i)
        ends.append(min(max(round(depth * frac), lo), hi))
    starts = [0, *ends[:-1]]
    return [[blocks[j] for j in range(s, e)] for s, e in zip(starts, ends)]


def _resolution_split(model: nn.Module, split: SplitByResolution, stem: Sequence[Step],
                      x: torch.Tensor) -> list[list[Step]]:
    blocks = resolve_path(model, split.path)
    groups: list[list[Step]] = []
    last_size = None
    h = _run(stem, x)
    for block in blocks:
        h = block(h)
        if h.shape[-2:] != last_size:
            groups.append([])
            last_size = h.shape[-2:]
        groups[-1].append(block)
    if len(groups) < 4:
        raise UnsupportedModel(f"{split.path} has {len(groups)} resolutions, four are needed")
    stages = [sum(groups[: len(groups) - 3], []), *groups[-3:]]
    stages[-1] = stages[-1] + [resolve_path(model, p) for p in split.tail]
    return stages


def stage_map_for(model: nn.Module) -> StageMap:
    for cls in type(model).__mro__:
        if cls.__name__ in STAGE_MAPS:
            return STAGE_MAPS[cls.__name__]
    raise UnsupportedModel(
        f"no four-stage map for {type(model).__name__}; supported: {', '.join(sorted(STAGE_MAPS))}"
    )


def input_channels(model: nn.Module) -> int:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


@dataclass
class StagedModel:
    """A model seen as stem → stages 1..4 → head. Holds the model; owns no parameters itself."""

    model: nn.Module
    img_size: int
    stage_map: StageMap = field(init=False)
    in_chans: int = field(init=False)
    specs: tuple[StageSpec, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.stage_map = stage_map_for(self.model)
        self.in_chans = input_channels(self.model)
        m = self.stage_map
        self._patchify = [resolve_path(self.model, p) for p in m.patchify]
        self._embed = [resolve_path(self.model, p) for p in m.embed]
        self._neck = [resolve_path(self.model, p) for p in m.neck]
        self._stages = self._build_stages()
        self.specs = self._probe()

    # -- construction ---------------------------------------------------------------------------

    def _dummy(self) -> torch.Tensor:
        p = next(self.model.parameters())
        return torch.zeros(2, self.in_chans, self.img_size, self.img_size, device=p.device, dtype=p.dtype)

    def _build_stages(self) -> list[list[Step]]:
        split = self.stage_map.stages
        if isinstance(split, SplitByDepth):
            return _depth_split(resolve_path(self.model, split.path), split.fractions)
        if isinstance(split, SplitByResolution):
            with evaluating(self.model):
                return _resolution_split(self.model, split, self._patchify + self._embed, self._dummy())
        return [[resolve_path(self.model, p) for p in paths] for paths in split]

    def _probe(self) -> tuple[StageSpec, ...]:
        layout = self.stage_map.layout
        with evaluating(self.model):
            patches = _run(self._patchify, self._dummy())
            grid = _token_grid(self.model, patches) if layout is Layout.NLC else None
            outputs = self.run_to(self._dummy(), 4)
        specs = []
        for k, h in enumerate(outputs, start=1):
            if layout is Layout.NCHW:
                specs.append(StageSpec(k, layout, h.shape[1], (h.shape[2], h.shape[3])))
            elif layout is Layout.NHWC:
                specs.append(StageSpec(k, layout, h.shape[3], (h.shape[1], h.shape[2])))
            else:
                specs.append(StageSpec(k, layout, h.shape[2], grid, h.shape[1] - grid[0] * grid[1]))
        return tuple(specs)

    # -- the four-stage API ---------------------------------------------------------------------

    @property
    def is_cnn(self) -> bool:
        return self.stage_map.layout is Layout.NCHW

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self._embed, _run(self._patchify, x))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """The stem's steps after patchify (prefix tokens, position embedding); identity for CNNs."""
        return _run(self._embed, tokens)

    def stage(self, k: int, h: torch.Tensor) -> torch.Tensor:
        return _run(self._stages[k - 1], h)

    def run_to(self, x: torch.Tensor, k: int) -> list[torch.Tensor]:
        """Stem and stages 1..k; every stage's output, stage 1 first."""
        outs = []
        h = self.stem(x)
        for i in range(1, k + 1):
            h = self.stage(i, h)
            outs.append(h)
        return outs

    def run_from(self, h: torch.Tensor, k: int, pool: str = "avg") -> HeadOutput:
        """Stages k+1..4 from stage k's output, then neck and head: pooled feature and logits."""
        for i in range(k + 1, 5):
            h = self.stage(i, h)
        return HeadOutput(smooth(h, self.specs[3], pool), self.head(h))

    def head(self, h4: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(_run(self._neck, h4))

    def part_parameters(self) -> dict[str, list[nn.Parameter]]:
        """The parameters of stem (with the model's own direct tensors, e.g. position embeddings),
        stages 1..4, neck and head (everything else)."""
        def of(steps) -> list[nn.Parameter]:
            return [p for s in steps if isinstance(s, nn.Module) for p in s.parameters()]

        parts = {"stem": of(self._patchify + self._embed) + [p for p in self.model._parameters.values() if p is not None]}
        parts.update({f"stage{k + 1}": of(stage) for k, stage in enumerate(self._stages)})
        parts["neck"] = of(self._neck)
        placed = {id(p) for ps in parts.values() for p in ps}
        parts["head"] = [p for p in self.model.parameters() if id(p) not in placed]
        return parts

    def param_breakdown(self) -> dict[str, int]:
        """Parameter counts of the parts `part_parameters` names."""
        return {part: sum(p.numel() for p in ps) for part, ps in self.part_parameters().items()}

    def forward(self, x: torch.Tensor, pool: str = "avg") -> tuple[list[torch.Tensor], HeadOutput]:
        """Every stage output plus pooled feature and logits, in one pass."""
        hs = self.run_to(x, 4)
        return hs, self.run_from(hs[-1], 4, pool)


def _token_grid(model: nn.Module, patches: torch.Tensor) -> tuple[int, int]:
    """The token grid of an NLC model, from its patch embedding's own record or a square root."""
    for module in model.modules():
        grid = getattr(module, "grid_size", None)
        if grid is not None and grid[0] * grid[1] == patches.shape[1]:
            return int(grid[0]), int(grid[1])
    side = int(round(patches.shape[1] ** 0.5))
    if side * side != patches.shape[1]:
        raise UnsupportedModel(f"cannot infer the token grid of {patches.shape[1]} tokens")
    return side, side


class evaluating:
    """The model as it is used once trained (eval mode: BatchNorm on its running statistics, which
    what it sees must not move; no dropout), without gradients; then back to the mode it was in."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.grad = torch.no_grad()
        self.grad.__enter__()
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)
        self.grad.__exit__(*exc)
