"""Checkpoints: written to a temporary file and renamed, so a kill never leaves half a file."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """The generators' states as numpy arrays, which a load's `map_location` leaves on the host:
    torch restores a generator only from a CPU tensor. On CUDA, the run's own device's generator
    alone: every process of a run draws alike (one seed), so rank 0's state is each rank's."""
    state = {"torch": torch.get_rng_state().numpy(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state().numpy()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(_host_bytes(state["torch"]))
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):  # fbt before 2026-12-07 saved every visible GPU's
            cuda = cuda[torch.cuda.current_device()] if torch.cuda.current_device() < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(_host_bytes(cuda))


def _host_bytes(state: Any) -> torch.Tensor:
    """A generator's state as torch takes it back: a uint8 tensor on the CPU (older checkpoints
    saved tensors, which `map_location` moved to the run's device)."""
    return torch.as_tensor(state, device="cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def checkpoint_path(run_dir: Path, kind: str, prefix: str = "") -> Path:
    """A run's checkpoint: `kind` "last" or "best"; `prefix` "teacher_" for the teacher's phase."""
    return run_dir / "checkpoints" / f"{prefix}{kind}.pt"


def save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load(path: Path, device: torch.device) -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=False)
