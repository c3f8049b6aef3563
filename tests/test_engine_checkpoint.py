"""Checkpoints' random state: what a resume needs to draw on as the run would have."""

from __future__ import annotations

import random

import numpy as np
import torch

from fbt_engine.train import checkpoint


def _draws() -> tuple:
    return torch.rand(3), random.random(), float(np.random.rand())


def _assert_same(a: tuple, b: tuple) -> None:
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_the_random_state_restores_wherever_the_load_maps_tensors(tmp_path):
    """torch takes a generator's state back only from a CPU tensor, and a resume on CUDA maps the
    checkpoint to the GPU (every resume on CUDA failed so). The meta device stands in for the GPU:
    the load maps every tensor there."""
    checkpoint.seed_everything(3)
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"rng": checkpoint.rng_state(), "weights": torch.zeros(2)})
    expected = _draws()
    payload = checkpoint.load(path, torch.device("meta"))
    assert payload["weights"].is_meta
    checkpoint.set_rng_state(payload["rng"])
    _assert_same(_draws(), expected)


def test_an_older_checkpoints_tensor_state_still_restores(tmp_path):
    checkpoint.seed_everything(4)
    older = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"rng": older})
    expected = _draws()
    checkpoint.set_rng_state(checkpoint.load(path, torch.device("cpu"))["rng"])
    _assert_same(_draws(), expected)
