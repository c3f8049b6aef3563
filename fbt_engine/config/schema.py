"""The sections of a preset (SPEC §3) as typed dataclasses with their defaults and help."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from fbt_engine.config.fields import setting
from fbt_engine.data.catalog import DATASETS
from fbt_engine.methods.params import FBTParams, MethodParams

DEVICES = ("auto", "cpu", "cuda")
# "auto", then torch.compile's own mode names; the two with CUDA graphs replay a step's recorded
# kernels in one launch
COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = frozenset({"reduce-overhead", "max-autotune"})

WEIGHT_DECAY = "weight decay (as timm: none on biases, norms, class tokens, position embeddings)"


@dataclass
class RunSection:
    section: ClassVar[str] = "run"
    name: str = setting("", "a human name for the run; the id stays unique")
    seed: int = setting(0, "seed for weights, data order and augmentation", min=0)
    device: str = setting("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    tags: list[str] = setting([], "labels to filter runs by")


@dataclass
class DataSection:
    section: ClassVar[str] = "data"
    name: str = setting("fashion_mnist_5k", "dataset", choices=tuple(DATASETS))
    root: str = setting("", "folder of the dataset's files (built-in default where the dataset has one); "
                       "a relative path starts at the preset's folder", path=True)
    img_size: int = setting(0, "side in pixels the models see; 0 keeps the dataset's own", min=0)
    batch_size: int = setting(128, "training batch size", min=1)
    eval_batch_size: int = setting(512, "evaluation batch size", min=1)
    workers: int = setting(2, "loader processes for folder datasets", min=0)
    augmentation: str = setting(
        "standard", "standard: pad-crop + flip at the stored size (then resized); rrc: random-resized-crop "
        "to img_size + flip (the paper protocol's way to 224 px); none", choices=("standard", "rrc", "none"))
    pad: int = setting(4, "padding of the random crop, in pixels of the stored image", min=0)
    hflip: bool = setting(True, "random horizontal flip")
    rrc_scale: list[float] = setting([0.08, 1.0], "area range of the random-resized-crop, as fractions", min=0, max=1)
    randaugment: str = setting("", 'timm RandAugment spec, e.g. "rand-m9-mstd0.5-inc1"; empty = off')
    random_erasing: float = setting(0.0, "probability of random erasing (timm, pixel mode)", min=0, max=1)
    mixup: float = setting(0.0, "Mixup α; 0 = off", min=0)
    cutmix: float = setting(0.0, "CutMix α; 0 = off", min=0)
    mix_prob: float = setting(1.0, "probability that a batch is mixed at all", min=0, max=1)
    mix_switch_prob: float = setting(0.5, "with both on, probability of CutMix instead of Mixup", min=0, max=1)
    pipeline: str = setting("device", "device: in-memory data augmented on the training device in batches; "
                            "classic: torchvision/PIL per image in DataLoader workers (for comparison)",
                            choices=("device", "classic"))
    subset: int = setting(0, "train on a stratified N-image slice (and evaluate on N/5), the same for every "
                          "seed; 0 = all", min=0)
    download: bool = setting(False, "let torchvision download cifar10/cifar100 into root")


@dataclass
class RecipeSection:
    """How to train the teacher from scratch when no checkpoint is given."""

    section: ClassVar[str] = "teacher.recipe"
    epochs: int = setting(10, "teacher training epochs", min=1)
    optimizer: str = setting("adamw", "optimiser", choices=("sgd", "adamw"))
    lr: float = setting(2e-3, "peak learning rate", min=0)
    weight_decay: float = setting(0.05, WEIGHT_DECAY, min=0)
    momentum: float = setting(0.9, "SGD momentum", min=0, max=1)
    warmup_epochs: float = setting(1.0, "linear warm-up, in epochs", min=0)
    label_smoothing: float = setting(0.1, "label smoothing of the cross-entropy", min=0, max=1)
    grad_clip: float = setting(0.0, "clip the gradient norm to this; 0 = off", min=0)


@dataclass
class TeacherSection:
    section: ClassVar[str] = "teacher"
    model: str = setting("", "timm model name (fbt's small models included)")
    kwargs: dict[str, Any] = setting({}, "extra keyword arguments for timm.create_model")
    checkpoint: str = setting("", "teacher weights to load; empty = train from scratch with [teacher.recipe]; "
                             "a relative path starts at the preset's folder", path=True)
    recipe: RecipeSection = field(default_factory=RecipeSection)


@dataclass
class StudentSection:
    section: ClassVar[str] = "student"
    model: str = setting("", "timm model name (fbt's small models included)", required=True)
    kwargs: dict[str, Any] = setting({}, "extra keyword arguments for timm.create_model")


@dataclass
class OptimSection:
    section: ClassVar[str] = "optim"
    name: str = setting("sgd", "optimiser", choices=("sgd", "adamw"))
    lr: float = setting(0.05, "peak learning rate", min=0)
    weight_decay: float = setting(5e-4, WEIGHT_DECAY, min=0)
    momentum: float = setting(0.9, "SGD momentum", min=0, max=1)
    nesterov: bool = setting(False, "Nesterov momentum (SGD)")
    betas: list[float] = setting([0.9, 0.999], "AdamW betas", min=0, max=1)
    grad_clip: float = setting(0.0, "clip the gradient norm to this; 0 = off", min=0)


@dataclass
class SchedSection:
    section: ClassVar[str] = "sched"
    name: str = setting("cosine", "learning-rate schedule after warm-up", choices=("cosine", "constant"))
    warmup_epochs: float = setting(0.0, "linear warm-up, in epochs", min=0)
    warmup_lr_ratio: float = setting(0.01, "learning rate at the start of warm-up, as a fraction of lr", min=0, max=1)
    min_lr_ratio: float = setting(0.0, "learning rate at the end of the cosine, as a fraction of lr", min=0, max=1)


@dataclass
class TrainSection:
    section: ClassVar[str] = "train"
    epochs: int = setting(5, "distillation epochs", min=1)
    amp: str = setting("auto", "mixed precision: auto (bf16 on CUDA, off on CPU), bf16 or off",
                       choices=("auto", "bf16", "off"))
    eval_every: int = setting(1, "evaluate every N epochs (and always after the last)", min=1)
    channels_last: str = setting("auto", "channels-last (NHWC) memory format for the models and their input: "
                                 "auto (on CUDA), on, off", choices=("auto", "on", "off"),
                                 from_bool=("off", "on"))  # a boolean until 2026-11: runs saved then resume
    compile: str = setting("auto", "torch.compile the training step: auto (on CUDA), on, off; if compiling "
                           "fails, training goes on eagerly with a warning", choices=("auto", "on", "off"))
    compile_mode: str = setting("auto", "torch.compile's mode, when compiling: auto (reduce-overhead on one "
                                "CUDA process, default under DDP or on a CPU), default, reduce-overhead (CUDA graphs: one launch "
                                "replays a step's kernels), max-autotune, max-autotune-no-cudagraphs",
                                choices=COMPILE_MODES)
    ema: float = setting(0.0, "decay of an exponential moving average of the student; 0 = off", min=0, max=1)
    precise_bn: int = setting(2048, "before each evaluation, BatchNorm's statistics are measured afresh on this "
                              "many training images, without Mixup/CutMix (PreciseBN): the running averages lag "
                              "weights that move fast, as early in a run; 0 = evaluate on the running averages", min=0)
    label_smoothing: float = setting(0.1, "label smoothing of the cross-entropy terms", min=0, max=1)
    log_every: int = setting(10, "emit a step event every N optimiser steps", min=1)


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    student: StudentSection = field(default_factory=StudentSection)
    method: MethodParams = field(default_factory=FBTParams)
    optim: OptimSection = field(default_factory=OptimSection)
    sched: SchedSection = field(default_factory=SchedSection)
    train: TrainSection = field(default_factory=TrainSection)


# The sections in file order, with their dataclass; [method] is resolved through METHOD_PARAMS.
SECTIONS: dict[str, type] = {
    "run": RunSection, "data": DataSection, "teacher": TeacherSection, "student": StudentSection,
    "method": MethodParams, "optim": OptimSection, "sched": SchedSection, "train": TrainSection,
}
