"""Helpers for the engine and CLI tests: real `fbt` subprocesses, real run folders, real files."""

from __future__ import annotations

import json
import os
import pickle
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from conftest import PRESETS, REPO, run_fbt

MLP_TO_CNN = str(PRESETS / "mlp_to_cnn.toml")


# -- run folders ------------------------------------------------------------------------------------

def run_dirs(home: Path) -> list[Path]:
    """Every entry under runs/ (finished folders and any half-made `.tmp` ones)."""
    runs = home / "runs"
    return sorted(runs.iterdir()) if runs.is_dir() else []


def only_run(home: Path) -> Path:
    dirs = run_dirs(home)
    assert len(dirs) == 1, dirs
    return dirs[0]


def file_events(run_dir: Path) -> list[dict[str, Any]]:
    """events.jsonl, strictly: every line must be one complete JSON object."""
    lines = (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def stdout_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def meta(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))


def steps(events: list[dict[str, Any]], phase: str = "distillation") -> list[int]:
    return [e["step"] for e in events if e["type"] == "step" and e["phase"] == phase]


def assert_clean_error(result: subprocess.CompletedProcess, code: int, *needles: str, home: Path) -> None:
    """Exit `code`, every needle in stderr, no traceback, no event on stdout, no run folder."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert "run_started" not in result.stdout
    assert run_dirs(home) == [], run_dirs(home)


def home_with_teacher(tmp_path_factory, teacher_cache: Path, name: str) -> Path:
    """A fresh data home (for module-scoped fixtures) with the session's cached tiny teacher."""
    home = tmp_path_factory.mktemp(name)
    shutil.copytree(teacher_cache, home / "teachers")
    return home


def fbt_json(*args: str, home: Path | None = None) -> Any:
    """`fbt … --json`-style command whose stdout is one JSON document."""
    result = run_fbt(*args, home=home)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- a run in the background ------------------------------------------------------------------------

class Streamed:
    """`fbt run … --json` in the background; its stdout events arrive on a reader thread."""

    def __init__(self, *args: str, home: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "FBT_HOME": str(home)}
        self.proc = subprocess.Popen([sys.executable, "-m", "fbt_engine", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                                     stdin=subprocess.DEVNULL)
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no matching event within {timeout}s; got {self.events[-3:]}") from None
            if line is None:
                raise AssertionError(f"the run ended first (rc {self.proc.wait()}): {self.stderr[-2000:]}")
            self.events.append(json.loads(line))
            if predicate(self.events[-1]):
                return self.events[-1]

    def finish(self, timeout: float = 180) -> int:
        """Wait for the exit; collect the remaining events."""
        rc = self.proc.wait(timeout=timeout)
        while (line := self._lines.get(timeout=30)) is not None:
            self.events.append(json.loads(line))
        return rc

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def distillation_step(at_least: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "step" and e["phase"] == "distillation" and e["step"] >= at_least


# -- fabricated datasets in their real on-disk formats -----------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (the (Fashion-)MNIST format), gzipped when the name ends in .gz."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def fabricate_cifar(root: Path, classes: int, per_file: int, seed: int = 0) -> dict[str, np.ndarray]:
    """torchvision's pickle layout (cifar-10-batches-py or cifar-100-python) with random images;
    returns the arrays written, NCHW uint8 and labels, per split."""
    rng = np.random.default_rng(seed)
    if classes == 10:
        folder, train_files, test_files = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]
        label_key, meta_name, meta = "labels", "batches.meta", {"label_names": [f"c{i}" for i in range(10)]}
    else:
        folder, train_files, test_files = root / "cifar-100-python", ["train"], ["test"]
        label_key, meta_name = "fine_labels", "meta"
        meta = {"fine_label_names": [f"f{i}" for i in range(classes)], "coarse_label_names": ["x"]}
    folder.mkdir(parents=True)
    out: dict[str, list] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    for split, files in (("train", train_files), ("test", test_files)):
        for name in files:
            data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
            labels = [int(i % classes) for i in range(per_file)]
            entry = {"batch_label": name, label_key: labels, "data": data, "filenames": [f"{i}.png" for i in range(per_file)]}
            if classes != 10:
                entry["coarse_labels"] = [0] * per_file
            with open(folder / name, "wb") as fh:
                pickle.dump(entry, fh)
            out[f"{split}_x"].append(data.reshape(-1, 3, 32, 32))
            out[f"{split}_y"] += labels
    with open(folder / meta_name, "wb") as fh:
        pickle.dump(meta, fh)
    return {k: np.concatenate(v) if k.endswith("_x") else np.asarray(v) for k, v in out.items()}
