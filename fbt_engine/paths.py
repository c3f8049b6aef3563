"""Where fbt keeps things. FBT_HOME, when set, holds everything (every test sets it)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "fbt"


def _override() -> Path | None:
    value = os.environ.get("FBT_HOME")
    return Path(value).expanduser() if value else None


def data_home() -> Path:
    return _override() or Path(platformdirs.user_data_dir(APP))


def config_home() -> Path:
    base = _override()
    return base / "config" if base else Path(platformdirs.user_config_dir(APP))


def runs_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / "runs"


def trash_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / "trash"


def index_path(home: Path | None = None) -> Path:
    return (home or data_home()) / "index.sqlite"


def cpu_share_dir(home: Path | None = None) -> Path:
    """Where the CPU runs of a machine sign in to split its cores (fbt_engine/train/cpushare.py):
    one folder for every run of this fbt home; entries name their host, for a home on a shared disk."""
    return (home or data_home()) / "cpu-share"


def teacher_cache_dir() -> Path:
    return data_home() / "teachers"


def compile_cache_dir() -> Path:
    """torch.compile's caches (TORCHINDUCTOR_CACHE_DIR, unless the user set it) for fbt's runs:
    kept with fbt's data rather than in /tmp, so a pair compiled once warms up from them in later
    runs, also after a reboot or on a cluster whose /tmp is cleared with each job."""
    return data_home() / "compile-cache"


def user_presets_dir() -> Path:
    return config_home() / "presets"


def builtin_presets_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "presets"
