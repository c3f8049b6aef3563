"""What each dataset name means, as data. No torch: config validation and the TUI read it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from fbt_engine.data.idx import FASHION_MNIST_DEBIAN


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    native_size: int  # 0: varies per image (folders)
    in_memory: bool  # held on the training device as uint8 and augmented there
    needs_root: bool
    default_root: str = ""
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    credit: str = ""
    folder: str = ""  # the sub-folder of data.root that holds the files (torchvision's layout)
    train_images: int = 0  # 0: as many as its folder holds


FASHION_CREDIT = "Fashion-MNIST, (c) 2017 Zalando SE, MIT licence"
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_CIFAR_MEAN, _CIFAR_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("fashion_mnist_5k", 10, 1, 28, True, False, mean=(0.2860,), std=(0.3530,),
                    credit=FASHION_CREDIT + "; stratified 5k/1k slice embedded in fbt", train_images=5_000),
        DatasetInfo("fashion_mnist", 10, 1, 28, True, False, str(FASHION_MNIST_DEBIAN),
                    mean=(0.2860,), std=(0.3530,), credit=FASHION_CREDIT, train_images=60_000),
        DatasetInfo("cifar10", 10, 3, 32, True, True, mean=(0.4914, 0.4822, 0.4465),
                    std=(0.2470, 0.2435, 0.2616), folder="cifar-10-batches-py", train_images=50_000),
        DatasetInfo("cifar100", 100, 3, 32, True, True, mean=_CIFAR_MEAN, std=_CIFAR_STD,
                    folder="cifar-100-python", train_images=50_000),
        DatasetInfo("imagefolder", 0, 3, 0, False, True, mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
    )
}


def download_target(name: str, root: str, download: bool) -> Path | None:
    """The folder a run will download its dataset into before it trains (needing the internet),
    or None where the files are there or nothing is downloaded."""
    info = DATASETS.get(name)
    if not (download and info and info.folder and root):
        return None
    target = Path(root).expanduser()
    return None if (target / info.folder).is_dir() else target


def download_note(name: str, root: str, download: bool) -> str | None:
    """What a run fetches before it trains (needing the internet), in words; None if nothing."""
    target = download_target(name, root, download)
    return None if target is None else f"{name} is not in {target}: a run downloads it there first (needs the internet)"


def subset_val_images(subset: int) -> int:
    """How many validation images a `data.subset` run evaluates on (a fifth, stratified like the
    training slice), before the split's own size caps it."""
    return max(1, math.ceil(subset / 5))
