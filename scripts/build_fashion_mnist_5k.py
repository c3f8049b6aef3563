#!/usr/bin/env python3
"""Build fbt_engine/data/fashion_mnist_5k.npz: a stratified 5,000-train / 1,000-test slice of
Fashion-MNIST (MIT licence, (c) 2017 Zalando SE, https://github.com/zalandoresearch/fashion-mnist).

Source: Debian's `dataset-fashion-mnist` package (`apt-get install -y dataset-fashion-mnist`),
which installs the four IDX files under /usr/share/datasets/fashion-mnist.

    python scripts/build_fashion_mnist_5k.py [--root DIR] [--out FILE]

The slice is deterministic (seed 0): rerunning gives a byte-identical array payload.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fbt_engine.data.idx import (  # noqa: E402
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEBIAN,
    IdxError,
    load_fashion_mnist,
    stratified_indices,
)

TRAIN, TEST, SEED = 5000, 1000, 0
CREDIT = (
    "Fashion-MNIST, (c) 2017 Zalando SE, MIT licence, "
    "https://github.com/zalandoresearch/fashion-mnist. "
    f"Stratified slice: {TRAIN} train / {TEST} test images, seed {SEED}, "
    "built by scripts/build_fashion_mnist_5k.py from Debian's dataset-fashion-mnist."
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=FASHION_MNIST_DEBIAN)
    parser.add_argument(
        "--out", type=Path,
        default=Path(__file__).resolve().parents[1] / "fbt_engine" / "data" / "fashion_mnist_5k.npz",
    )
    args = parser.parse_args()
    try:
        full = load_fashion_mnist(args.root)
    except (IdxError, OSError) as exc:
        print(f"error: {exc}\nInstall the data with: apt-get install -y dataset-fashion-mnist", file=sys.stderr)
        return 3
    train_idx = np.sort(stratified_indices(full["train_y"], TRAIN, SEED))
    test_idx = np.sort(stratified_indices(full["test_y"], TEST, SEED))
    np.savez_compressed(
        args.out,
        train_x=full["train_x"][train_idx], train_y=full["train_y"][train_idx],
        test_x=full["test_x"][test_idx], test_y=full["test_y"][test_idx],
        classes=np.array(FASHION_MNIST_CLASSES), credit=np.array(CREDIT),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
