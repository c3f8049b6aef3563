"""Training and evaluation batches for every dataset in the catalog.

In-memory datasets (Fashion-MNIST, CIFAR) live on the training device as one uint8 tensor and are
cropped, flipped, resized and normalised there in whole batches. Folder datasets stream through a
torchvision DataLoader with worker processes and pinned memory.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from fbt_engine.compiling import call_with_fallback
from fbt_engine.config.schema import DataSection
from fbt_engine.data.augment import (
    crop_flip_draws, mix_batch, mixed_seed, rand_augment, random_erasing, random_hflip, random_resized_crop,
    standard_input, step_generator, step_rng, to_model_input,
)
from fbt_engine.data.catalog import DATASETS, DatasetInfo, subset_val_images
from fbt_engine.data.idx import FASHION_MNIST_CLASSES, load_fashion_mnist, stratified_indices
from fbt_engine.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]
EVAL_CROP = 0.875  # a folder's evaluation images: the shorter side to size / 0.875, then the centre crop


class DataError(RuntimeError):
    """The dataset cannot be loaded (missing or malformed files): an environment error."""


class BatchSource(Protocol):
    num_images: int  # images this process draws from
    total_images: int  # over all processes

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, start_step: int = 0, mix: bool = True) -> Iterator[Batch]:
        """The epoch's batches from `start_step`, as training draws them; with `mix` false, without
        Mixup/CutMix (PreciseBN measures what evaluation will see)."""

    def compile_augmentation(self, fell_back: Callable[[str], None]) -> None: ...


def draw_number(step: int, rank: int, world: int) -> int:
    """The number of a process's batch among every process's batches of an epoch: what its random
    draws are seeded by, so that no two batches of a DDP run share them."""
    return step * world + rank


@dataclass
class Arrays:
    """A split as numpy arrays: images (N, C, H, W) uint8, labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def take(self, idx: np.ndarray) -> "Arrays":
        return Arrays(self.images[idx], self.labels[idx])


@dataclass(frozen=True)
class Augmentation:
    """What a training batch goes through, from the [data] section (same for both pipelines)."""

    kind: str  # "standard" | "rrc" | "none"
    pad: int
    hflip: bool
    rrc_scale: tuple[float, float]
    randaugment: str
    random_erasing: float
    mixup: float
    cutmix: float
    mix_prob: float
    mix_switch_prob: float
    num_classes: int

    @classmethod
    def of(cls, data: DataSection, num_classes: int) -> "Augmentation":
        return cls(data.augmentation, data.pad, data.hflip, tuple(data.rrc_scale), data.randaugment,
                   data.random_erasing, data.mixup, data.cutmix, data.mix_prob, data.mix_switch_prob, num_classes)

    @property
    def mixes(self) -> bool:
        return bool(self.mixup or self.cutmix) and self.mix_prob > 0

    def mix(self, x: torch.Tensor, y: torch.Tensor, seed: int, epoch: int, draw: int) -> Batch:
        """Mixup/CutMix with soft targets when asked, drawn from (seed, epoch, draw); otherwise the
        batch as it is, without seeding a generator (~17 µs of host time a step)."""
        if not self.mixes:
            return x, y
        return mix_batch(x, y, self.num_classes, self.mixup, self.cutmix, self.mix_prob, self.mix_switch_prob,
                         step_rng(seed, epoch, draw))


class DeviceBatches:
    """Batches of an in-memory split held on `device`; augmentation is batched tensor work.

    With `world` processes, every process draws the same order and takes its slice of each global
    batch (training), or its share of the images (evaluation)."""

    def __init__(self, arrays: Arrays, data: DataSection, info: DatasetInfo, img_size: int,
                 device: torch.device, seed: int, train: bool, rank: int = 0, world: int = 1,
                 augmentation: Augmentation | None = None):
        self.images = torch.from_numpy(arrays.images).to(device)
        self.labels = torch.from_numpy(arrays.labels).to(device)
        self.rank, self.world = rank, world
        self.total_images = len(self.labels)
        self.whole_split = self.images, self.labels  # the probe's images: the same whatever the processes
        if not train and world > 1:
            self.images, self.labels = self.images[rank::world], self.labels[rank::world]
        self.num_images = len(self.labels)
        self.batch_size = data.batch_size // world if train else data.eval_batch_size
        self.train, self.seed, self.device, self.img_size = train, seed, device, img_size
        self.aug = augmentation if train else None
        self.mean = torch.tensor(info.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std, device=device).view(1, -1, 1, 1)
        self.fill = (self.mean.flatten() * 255).round()  # RandAugment's fill: the mean colour
        if self.train and self.num_images < self.batch_size:
            raise DataError(f"data.batch_size: {self.num_images} training images cannot fill one batch of "
                            f"{self.batch_size}; lower data.batch_size")
        self._standard = standard_input
        self._compiled = False

    def __len__(self) -> int:
        # Training drops the last partial batch (steady BatchNorm statistics); evaluation keeps it.
        if self.train:
            return self.num_images // (self.batch_size * self.world)
        return math.ceil(self.num_images / self.batch_size)

    def epoch(self, epoch: int, start_step: int = 0, mix: bool = True) -> Iterator[Batch]:
        order = (torch.randperm(self.num_images, device=self.device,
                                generator=step_generator(self.device, self.seed, epoch, -1))
                 if self.train else torch.arange(self.num_images, device=self.device))
        span = self.batch_size * self.world if self.train else self.batch_size
        for step in range(start_step, len(self)):
            start = step * span + (self.rank * self.batch_size if self.train else 0)
            idx = order[start:start + self.batch_size]
            x, y = self.images[idx], self.labels[idx]
            if self.aug is None:
                yield to_model_input(x, self.img_size, self.mean, self.std), y
                continue
            yield self._augment(x, y, epoch, draw_number(step, self.rank, self.world), mix)

    def _augment(self, x: torch.Tensor, y: torch.Tensor, epoch: int, draw: int, mix: bool) -> Batch:
        a, g = self.aug, step_generator(self.device, self.seed, epoch, draw)
        if a.randaugment:
            x = rand_augment(x, a.randaugment, self.fill, g)
        if a.kind == "rrc":
            out = random_resized_crop(x.float(), self.img_size, a.rrc_scale, (3 / 4, 4 / 3), g)
            if a.hflip:
                out = random_hflip(out, g)
            out = (out / 255 - self.mean) / self.std
        else:
            draws = crop_flip_draws(len(x), a.pad, a.hflip, g, x.device) if a.kind == "standard" else (None, None)
            out = self._standard(x, *draws, a.pad, self.img_size, self.mean, self.std)
        if a.random_erasing:
            out = random_erasing(out, a.random_erasing, g)
        return a.mix(out, y, self.seed, epoch, draw) if mix else (out, y)

    def compile_augmentation(self, fell_back: Callable[[str], None]) -> None:
        """The standard augmentation past its draws (crop, flip, normalisation: some twenty small ops
        a batch) through torch.compile, which fuses it into a kernel or two: on a GPU each op is a
        launch, and a small model's step under CUDA graphs waits on the host's launches. Not with
        CUDA graphs: the batch is the step's input, and a replay would overwrite it. A compiler that
        fails at the first batch, where compiling happens, leaves it eager, and `fell_back` hears
        why; a later error is the batch's own."""
        if self._compiled:
            return
        self._compiled = True

        def compile_and_call(*args) -> torch.Tensor:
            # fullgraph: a graph break would undo the fusion
            compiled = torch.compile(standard_input, dynamic=False, fullgraph=True)
            out = compiled(*args)
            self._standard = compiled
            return out

        def eager_again(why: str) -> None:
            self._standard = standard_input
            fell_back(why)

        def first_batch(*args) -> torch.Tensor:
            return call_with_fallback(lambda: compile_and_call(*args), lambda: standard_input(*args), eager_again)

        self._standard = first_batch

    def fixed_batch(self, n: int) -> Batch:
        """The probe batch for per-stage statistics: `n` images spread over the whole split, un-augmented."""
        images, labels = self.whole_split
        pick = spread(len(labels), n).to(self.device)
        return to_model_input(images[pick], self.img_size, self.mean, self.std), labels[pick]


def spread(total: int, n: int) -> torch.Tensor:
    """`n` (at most `total`) distinct indices spread evenly over `total` images: a folder dataset's
    validation split is sorted by class, and its first images are of a handful of classes."""
    k = min(n, total)
    return torch.arange(k) * total // k


class ArrayImages(torch.utils.data.Dataset):
    """An in-memory split served image by image as PIL images: the classic pipeline's input."""

    def __init__(self, arrays: Arrays, transform):
        self.arrays, self.transform = arrays, transform

    def __len__(self) -> int:
        return len(self.arrays.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        img = self.arrays.images[i]
        pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        return self.transform(pil), int(self.arrays.labels[i])


def classic_transforms(a: Augmentation | None, info: DatasetInfo, img_size: int, native: int):
    """torchvision/timm per-image transforms doing what `DeviceBatches` does in batches."""
    from torchvision import transforms

    norm = [transforms.ToTensor(), transforms.Normalize(info.mean, info.std)]
    if a is None or a.kind == "none":
        resize = [transforms.Resize(img_size)] if img_size != native else []
        return transforms.Compose([*resize, *norm])
    if a.kind == "rrc":
        from timm.data import create_transform

        return create_transform(img_size, is_training=True, scale=a.rrc_scale, hflip=0.5 if a.hflip else 0.0,
                                vflip=0.0, color_jitter=None, auto_augment=a.randaugment or None,
                                re_prob=a.random_erasing, re_mode="pixel", interpolation="bilinear",
                                mean=info.mean, std=info.std)
    steps = []
    if a.randaugment:
        from timm.data.auto_augment import rand_augment_transform

        fill = tuple(round(255 * m) for m in info.mean)
        steps.append(rand_augment_transform(a.randaugment, {"translate_const": int(native * 0.45), "img_mean": fill}))
    steps.append(transforms.RandomCrop(native, padding=a.pad))
    if a.hflip:
        steps.append(transforms.RandomHorizontalFlip())
    if img_size != native:
        steps.append(transforms.Resize(img_size))
    steps += norm
    if a.random_erasing:
        from timm.data.random_erasing import RandomErasing

        steps.append(RandomErasing(a.random_erasing, mode="pixel", device="cpu"))
    return transforms.Compose(steps)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A host generator for one epoch's order."""
    return torch.Generator().manual_seed(mixed_seed(seed, epoch))


LOADER_STREAM = 1  # tags the loader's seeds, apart from the device pipeline's (seed, epoch, step) ones


@contextlib.contextmanager
def host_generators_seeded(seed: int) -> Iterator[None]:
    """Python's, numpy's and torch's global host generators seeded for one batch's transforms
    (torchvision's crops and flips draw from torch, timm's RandAugment from numpy and Python). In
    the main process (a loader without workers) their states are restored afterwards, so that the
    training's own draws do not depend on the images'."""
    in_main = torch.utils.data.get_worker_info() is None
    saved = (random.getstate(), np.random.get_state(), torch.random.get_rng_state()) if in_main else None
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.random.default_generator.manual_seed(seed)  # the host's only: a CUDA generator is the training's
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.random.set_rng_state(saved[2])


Key = tuple[int, int, int]  # (image index, epoch, draw): the draw numbers the batch, as the device pipeline's do


class SeededImages(torch.utils.data.Dataset):
    """A map-style dataset read a batch at a time by `EpochOrder`'s keys, each batch's random
    transforms seeded by (seed, epoch, draw): the same augmentation whichever worker reads the batch
    (a worker always reads a whole one), however many workers there are, whether they persisted
    from the last epoch, and whether the epoch was resumed. Once a batch, seeding (~7 µs, against
    ~100 µs for one 28-px image's crop, flip and normalisation) stays out of the per-image work."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, keys: list[Key]) -> list:
        _, epoch, draw = keys[0]
        with host_generators_seeded(mixed_seed(self.seed, epoch, draw, LOADER_STREAM)):
            return [self.dataset[index] for index, _, _ in keys]

    def __getitem__(self, key: Key):
        return self.__getitems__([key])[0]  # as a batch of one


class EpochOrder(torch.utils.data.Sampler):
    """The images one process reads in one epoch, chosen before each (`at`): shuffled by (seed,
    epoch) for training, this process's strided share under DDP (training keeps the same count on
    every process), from a given batch on, so that a resumed epoch skips its done batches without
    loading them. Yields `SeededImages` keys: (index, epoch, draw)."""

    def __init__(self, num_images: int, seed: int, train: bool, rank: int, world: int, batch_size: int):
        self.num_images, self.seed, self.train = num_images, seed, train
        self.rank, self.world, self.batch_size = rank, world, batch_size
        self.epoch = self.start_step = 0

    def at(self, epoch: int, start_step: int) -> None:
        self.epoch, self.start_step = epoch, start_step

    @property
    def share(self) -> int:
        """Images this process reads in a whole epoch."""
        return self.num_images // self.world if self.train else len(range(self.rank, self.num_images, self.world))

    def _order(self) -> list[int]:
        if not self.train:
            return list(range(self.rank, self.num_images, self.world))
        shared = self.num_images // self.world * self.world
        order = torch.randperm(self.num_images, generator=epoch_generator(self.seed, self.epoch))
        return order[:shared][self.rank::self.world].tolist()

    def __iter__(self) -> Iterator[Key]:
        epoch, first = self.epoch, self.start_step * self.batch_size  # as at the pass's start
        return ((index, epoch, draw_number((first + n) // self.batch_size, self.rank, self.world))
                for n, index in enumerate(self._order()[first:]))

    def __len__(self) -> int:
        return max(0, self.share - self.start_step * self.batch_size)


class LoaderBatches:
    """A torchvision dataset streamed by a DataLoader whose workers persist from epoch to epoch
    (folder datasets, and the classic pipeline). Batches are exact from any step, augmentation
    included: the order is seeded by (seed, epoch), each batch's transforms by (seed, epoch, draw)."""

    def __init__(self, dataset, data: DataSection, device: torch.device, seed: int, train: bool,
                 rank: int = 0, world: int = 1, augmentation: Augmentation | None = None):
        self.dataset, self.device, self.seed, self.train = dataset, device, seed, train
        self.aug = augmentation if train else None
        self.rank, self.world = rank, world
        self.batch_size = data.batch_size // world if train else data.eval_batch_size
        self.workers = data.workers
        self.num_images = self.total_images = len(dataset)
        self.order = EpochOrder(self.num_images, seed, train, rank, world, self.batch_size)
        self._loader: torch.utils.data.DataLoader | None = None

    def __len__(self) -> int:
        if self.train:
            return self.order.share // self.batch_size
        return math.ceil(self.order.share / self.batch_size)

    def loader(self) -> torch.utils.data.DataLoader:
        """Made at the first epoch, then kept, as timm's loaders keep theirs: workers restarted every
        epoch would cost every epoch their start-up (forks, first batches), which an epoch of small
        images lasting a second or two feels."""
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                SeededImages(self.dataset, self.seed), batch_size=self.batch_size, sampler=self.order,
                drop_last=self.train, num_workers=self.workers, pin_memory=self.device.type == "cuda",
                prefetch_factor=4 if self.workers else None, persistent_workers=self.workers > 0,
                generator=epoch_generator(self.seed, -1),  # workers' base seed, not the training's draw; batches reseed
            )
        return self._loader

    def compile_augmentation(self, fell_back: Callable[[str], None]) -> None:
        """Nothing to compile: the images are transformed one by one, in the workers."""

    def epoch(self, epoch: int, start_step: int = 0, mix: bool = True) -> Iterator[Batch]:
        self.order.at(epoch, start_step)  # read by the loader's next pass: the sampler runs in this process
        for step, (x, y) in enumerate(self.loader(), start=start_step):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.aug is not None and mix:
                x, y = self.aug.mix(x, y, self.seed, epoch, draw_number(step, self.rank, self.world))
            yield x, y

    def fixed_batch(self, n: int) -> Batch:
        items = [self.dataset[i] for i in spread(self.num_images, n).tolist()]
        x = torch.stack([im for im, _ in items]).to(self.device)
        return x, torch.tensor([lbl for _, lbl in items], device=self.device)


@dataclass
class DataBundle:
    info: DatasetInfo
    num_classes: int
    classes: list[str]
    img_size: int
    train: BatchSource
    val: BatchSource

    @property
    def val_images(self) -> int:
        """Validation images over all processes (each process holds its share)."""
        return self.val.total_images

    def describe(self) -> dict:
        return {"name": self.info.name, "classes": self.num_classes, "img_size": self.img_size,
                "train_images": self.train.num_images, "val_images": self.val_images}

    def preprocessing(self, model_channels: int) -> dict[str, Any]:
        """How evaluation turns an image into the model's input: what a user of the exported
        student must do too."""
        resize = (f"the shorter side to {round(self.img_size / EVAL_CROP)} px, then the centre {self.img_size} px"
                  if not self.info.in_memory else f"bilinear to {self.img_size} × {self.img_size} px")
        return {"img_size": self.img_size, "resize": resize, "scale": "pixel values / 255, then (x − mean) / std",
                "mean": list(self.info.mean), "std": list(self.info.std), "image_channels": self.info.channels,
                "model_channels": model_channels,
                **({"grayscale": f"repeated to the model's {model_channels} channels"}
                   if self.info.channels == 1 < model_channels else {})}


# --- loading each dataset as arrays -------------------------------------------------------------

ArrayLoader = Registry("dataset")


def _root(data: DataSection, info: DatasetInfo) -> Path:
    return Path(data.root or info.default_root).expanduser()


@ArrayLoader.register("fashion_mnist_5k")
def _fashion_5k(data: DataSection, info: DatasetInfo):
    with resources.files("fbt_engine.data").joinpath("fashion_mnist_5k.npz").open("rb") as fh:
        npz = np.load(fh)
        arrays = {k: npz[k] for k in ("train_x", "train_y", "test_x", "test_y")}
    return _gray_splits(arrays), list(FASHION_MNIST_CLASSES)


@ArrayLoader.register("fashion_mnist")
def _fashion_full(data: DataSection, info: DatasetInfo):
    try:
        arrays = load_fashion_mnist(_root(data, info))
    except (OSError, ValueError) as exc:
        raise DataError(f"data.root: {exc} (apt-get install -y dataset-fashion-mnist, "
                        "or point data.root at a folder of the four IDX files)") from None
    return _gray_splits(arrays), list(FASHION_MNIST_CLASSES)


def _gray_splits(a: dict[str, np.ndarray]) -> tuple[Arrays, Arrays]:
    return (Arrays(a["train_x"][:, None], a["train_y"].astype(np.int64)),
            Arrays(a["test_x"][:, None], a["test_y"].astype(np.int64)))


def _cifar(cls_name: str):
    def load(data: DataSection, info: DatasetInfo):
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        root = _root(data, info)
        if data.download:
            try:  # fetches and verifies the archive once; reading below is the same either way
                cls(str(root), train=True, download=True)
            except (OSError, RuntimeError) as exc:
                raise DataError(f"data.root: {root}: download failed: {exc}") from None
        # torchvision's own reader insists on the original files' MD5 sums; read its pickle
        # format directly, so any folder in that format works (a re-packed or fabricated one).
        folder = root / cls.base_folder
        try:
            train, test = (_cifar_split(folder, [f for f, _ in files]) for files in (cls.train_list, cls.test_list))
            with open(folder / cls.meta["filename"], "rb") as fh:
                classes = list(pickle.load(fh, encoding="latin1")[cls.meta["key"]])
        except FileNotFoundError as exc:
            raise DataError(f"data.root: {root}: no {cls.base_folder}/{Path(exc.filename).name} "
                            "(set data.download = true to fetch it)") from None
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
            raise DataError(f"data.root: {folder}: not in torchvision's {cls_name} format ({exc!r})") from None
        return (train, test), classes

    return load


def _cifar_split(folder: Path, files: list[str]) -> Arrays:
    images, labels = [], []
    for name in files:
        with open(folder / name, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    return Arrays(np.ascontiguousarray(np.concatenate(images)), np.asarray(labels, np.int64))


ArrayLoader.register("cifar10")(_cifar("CIFAR10"))
ArrayLoader.register("cifar100")(_cifar("CIFAR100"))


SUBSET_SEED = 0  # data.subset's slice is part of the data, not of a run's randomness


def subset_indices(labels: np.ndarray, n: int) -> np.ndarray:
    """A stratified slice of `n` images (all, where there are fewer), the same for every run.seed:
    seeds compare on the same images, and a cached teacher was trained on the slice its students see."""
    return np.sort(stratified_indices(labels, min(n, len(labels)), SUBSET_SEED))


def _subset(train: Arrays, val: Arrays, n: int) -> tuple[Arrays, Arrays]:
    if not n:
        return train, val
    return train.take(subset_indices(train.labels, n)), val.take(subset_indices(val.labels, subset_val_images(n)))


def _image_folder(datasets, folder: Path, transform):
    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except OSError as exc:  # a class folder without images (FileNotFoundError), an unreadable one
        raise DataError(f"data.root: {folder}: {exc}") from None


def _number_as(val, train, root: Path) -> None:
    """val/'s labels by train/'s class numbers: each ImageFolder numbers its own folders, so a class
    that val/ lacks shifted every label after it."""
    extra = sorted(set(val.classes) - set(train.classes))
    if extra:
        raise DataError(f"data.root: {root / 'val'} has class folders that train/ has not: {', '.join(extra)}")
    to_train = [train.class_to_idx[c] for c in val.classes]
    val.samples = val.imgs = [(path, to_train[t]) for path, t in val.samples]
    val.targets = [t for _, t in val.samples]
    val.classes, val.class_to_idx = train.classes, train.class_to_idx


def _imagefolder(data: DataSection, info: DatasetInfo, img_size: int, device: torch.device, seed: int,
                 rank: int, world: int, aug: Augmentation):
    from torchvision import datasets, transforms

    root = _root(data, info)
    missing = [s for s in ("train", "val") if not (root / s).is_dir()]
    if missing:
        raise DataError(f"data.root: {root} has no {' or '.join(missing)}/ folder (ImageNet layout)")
    norm = transforms.Normalize(info.mean, info.std)
    # a folder of full-size images is always random-resized-cropped for training ("standard" too)
    rrc = replace(aug, kind="rrc") if aug.kind == "standard" else aug
    train_tf = classic_transforms(rrc, info, img_size, img_size)
    val_tf = transforms.Compose([transforms.Resize(round(img_size / EVAL_CROP)), transforms.CenterCrop(img_size),
                                 transforms.ToTensor(), norm])
    train, val = _image_folder(datasets, root / "train", train_tf), _image_folder(datasets, root / "val", val_tf)
    _number_as(val, train, root)
    if data.subset:
        train = torch.utils.data.Subset(train, subset_indices(np.asarray(train.targets), data.subset))
        val = torch.utils.data.Subset(val, subset_indices(np.asarray(val.targets), subset_val_images(data.subset)))
    classes = (train.dataset if data.subset else train).classes
    return (LoaderBatches(train, data, device, seed, True, rank, world, aug),
            LoaderBatches(val, data, device, seed, False, rank, world)), classes


def load_data(data: DataSection, device: torch.device, seed: int, rank: int = 0, world: int = 1) -> DataBundle:
    """Train and validation batches; with `world` processes, this process's share of each."""
    info = DATASETS[data.name]
    img_size = data.img_size or info.native_size
    if not img_size:
        raise DataError(f'data.img_size: dataset "{data.name}" has no native size; set one')
    if not info.in_memory:
        classes = _folder_classes(data, info)
        aug = Augmentation.of(data, len(classes))
        (train, val), classes = _imagefolder(data, info, img_size, device, seed, rank, world, aug)
        return _scored_everywhere(DataBundle(info, len(classes), classes, img_size, train, val), world, data)
    (train_a, val_a), classes = ArrayLoader.get(data.name)(data, info)
    train_a, val_a = _subset(train_a, val_a, data.subset)
    aug = Augmentation.of(data, len(classes))
    if data.pipeline == "classic":
        native = train_a.images.shape[-1]
        train = LoaderBatches(ArrayImages(train_a, classic_transforms(aug, info, img_size, native)), data, device,
                              seed, True, rank, world, aug)
        val = LoaderBatches(ArrayImages(val_a, classic_transforms(None, info, img_size, native)), data, device,
                            seed, False, rank, world)
    else:
        train = DeviceBatches(train_a, data, info, img_size, device, seed, True, rank, world, aug)
        val = DeviceBatches(val_a, data, info, img_size, device, seed, False, rank, world)
    return _scored_everywhere(DataBundle(info, len(classes), classes, img_size, train, val), world, data)


def _scored_everywhere(bundle: DataBundle, world: int, data: DataSection) -> DataBundle:
    """The bundle, where every process has validation images to score (each scores its share)."""
    if bundle.val_images < world:
        key, more = ("data.subset", "a larger subset") if data.subset else ("data.root", "more validation images")
        raise DataError(f"{key}: {world} processes each score a share of the validation images, and there are "
                        f"{bundle.val_images}; use {more} or fewer processes")
    return bundle


def _folder_classes(data: DataSection, info: DatasetInfo) -> list[str]:
    train = _root(data, info) / "train"
    return sorted(p.name for p in train.iterdir() if p.is_dir()) if train.is_dir() else []
