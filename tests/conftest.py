"""Shared fixtures. Every test gets its own empty FBT_HOME; nothing touches the user's data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# One torch thread a process: the suite runs a test process per core (pyproject's addopts), and
# the tiny models gain nothing from a second thread: two processes of two threads each on two
# cores spent the time that parallel tests saved waiting on one another (12m55 against 7m31).
# Set before anything imports torch; the `fbt` processes the tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "presets"

# Small enough for seconds on two CPU cores, big enough to train something real.
TINY = ["data.subset=500", "data.batch_size=64", "train.epochs=1", "teacher.recipe.epochs=1", "train.log_every=2"]


def warnings_of(events: list[dict]) -> list[str]:
    """A run's warning messages, less the one that TINY's one-epoch teacher earns (near chance)."""
    return [e["message"] for e in events if e["type"] == "warning" and "near chance" not in e["message"]]


def compiler_failing_at(call: int, message: str, calls: list) -> Callable:
    """A stand-in for torch.compile: the functions it "compiles" run eagerly, each call counted in
    `calls`, except call number `call`, which raises RuntimeError(message)."""
    def compile_(fn, **kwargs):
        def compiled(*args, **kw):
            calls.append(1)
            if len(calls) == call:
                raise RuntimeError(message)
            return fn(*args, **kw)
        return compiled
    return compile_


def tiny_sets(*extra: str) -> list[str]:
    """`--set` arguments for a tiny run, with `extra` overrides last."""
    args: list[str] = []
    for item in [*TINY, *extra]:
        args += ["--set", item]
    return args


@pytest.fixture(autouse=True)
def fbt_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "fbt-home"
    home.mkdir()
    monkeypatch.setenv("FBT_HOME", str(home))
    return home


def run_fbt(*args: str, home: Path | None = None, timeout: float = 240, cwd: Path = REPO,
            **kwargs) -> subprocess.CompletedProcess:
    """The real `fbt` command in a subprocess (python -m fbt_engine, same interpreter)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if home is not None:
        env["FBT_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "fbt_engine", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL, **kwargs)


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home whose teacher cache already holds the tiny mlp_to_cnn teacher (trained once per
    session); copy it with `with_cached_teacher`."""
    home = tmp_path_factory.mktemp("teacher-home")
    result = run_fbt("run", str(PRESETS / "mlp_to_cnn.toml"), *tiny_sets(), "--quiet", home=home)
    assert result.returncode == 0, result.stderr
    return home / "teachers"


@pytest.fixture
def with_cached_teacher(fbt_home: Path, teacher_cache: Path) -> Path:
    shutil.copytree(teacher_cache, fbt_home / "teachers")
    return fbt_home
