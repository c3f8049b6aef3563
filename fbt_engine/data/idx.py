"""Readers for the IDX files that (Fashion-)MNIST ships in, plain or gzipped. numpy only."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


class IdxError(ValueError):
    """An IDX file is missing or not in the expected format."""


def _open(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return fh.read()


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file (unsigned-byte payload only, which is all (Fashion-)MNIST uses)."""
    raw = _open(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise IdxError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = np.frombuffer(raw, dtype=np.uint8, offset=header_end)
    if payload.size != int(np.prod(dims)):
        raise IdxError(f"{path}: header says {dims} but the file holds {payload.size} values")
    return payload.reshape(dims).copy()  # frombuffer is read-only; torch wants to own writable memory


def find_idx_file(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise IdxError(f"{root}: no {stem} or {stem}.gz")


def load_fashion_mnist(root: Path = FASHION_MNIST_DEBIAN) -> dict[str, np.ndarray]:
    """The full split arrays: train_x (N,28,28) uint8, train_y (N,) uint8, test_x, test_y."""
    out: dict[str, np.ndarray] = {}
    for (split, kind), stem in FASHION_MNIST_FILES.items():
        arr = read_idx(find_idx_file(root, stem))
        out[f"{split}_{'x' if kind == 'images' else 'y'}"] = arr
    for split in ("train", "test"):
        if len(out[f"{split}_x"]) != len(out[f"{split}_y"]):
            raise IdxError(f"{root}: {split} images and labels differ in length")
    return out


def stratified_indices(labels: np.ndarray, total: int, seed: int) -> np.ndarray:
    """`total` indices with the classes as balanced as the data allows, in a seeded order.

    Each class gets total // n_classes, the first (total % n_classes) classes one more; a class
    with too few samples gives all it has.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    base, extra = divmod(total, len(classes))
    picked = []
    for i, c in enumerate(classes):
        pool = np.flatnonzero(labels == c)
        take = min(len(pool), base + (1 if i < extra else 0))
        picked.append(rng.choice(pool, size=take, replace=False))
    out = np.concatenate(picked)
    rng.shuffle(out)
    return out
