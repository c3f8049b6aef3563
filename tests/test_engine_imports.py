"""The import rules (SPEC §1), checked in fresh interpreters through sys.modules: fbt_engine never
imports textual, fbt_tui never imports torch/timm/torchvision, and the CLI's light commands
(`--help`, history, presets, paths, a bad preset) import none of torch/timm/textual."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from helpers_engine import MLP_TO_CNN

HEAVY = ("torch", "timm", "torchvision", "textual")

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import {package}
names = sorted(m.name for m in pkgutil.walk_packages({package}.__path__, "{package}.")
               if not m.name.endswith("__main__"))
for name in names:
    importlib.import_module(name)
print(json.dumps({{"modules": names, "loaded": sorted(m for m in {heavy} if m in sys.modules)}}))
"""

_CLI = """
import json, sys
from fbt_tui.launch import main
try:
    code = main({argv})
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
print("\\n" + json.dumps({{"code": code, "loaded": sorted(m for m in {heavy} if m in sys.modules)}}))
"""


def _python(code: str, home: Path) -> dict:
    import os

    env = {**os.environ, "FBT_HOME": str(home)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fbt_engine_never_imports_textual(fbt_home):
    out = _python(_IMPORT_ALL.format(package="fbt_engine", heavy=HEAVY), fbt_home)
    assert "fbt_engine.train.engine" in out["modules"] and "fbt_engine.cli" in out["modules"]
    assert "textual" not in out["loaded"]
    assert "torch" in out["loaded"]  # the check is real: the whole engine was imported


def test_fbt_tui_never_imports_torch_timm_or_torchvision(fbt_home):
    out = _python(_IMPORT_ALL.format(package="fbt_tui", heavy=HEAVY), fbt_home)
    assert "fbt_tui.app" in out["modules"] and "fbt_tui.launch" in out["modules"]
    assert not {"torch", "timm", "torchvision"} & set(out["loaded"]), out["loaded"]
    assert "textual" in out["loaded"]


@pytest.mark.parametrize("argv", [
    ["--help"], ["run", "--help"], ["runs", "ls"], ["runs", "ls", "--json"], ["runs", "reindex"], ["paths"],
    ["presets", "ls"], ["presets", "validate", MLP_TO_CNN], ["run", MLP_TO_CNN, "--set", "train.epoch=1"],
    ["run", "--resume", "last"], ["export", "last", "--format", "csv"],
], ids=lambda a: " ".join(a).replace(MLP_TO_CNN, "PRESET"))
def test_light_commands_import_none_of_torch_timm_textual(fbt_home, argv):
    out = _python(_CLI.format(argv=argv, heavy=HEAVY), fbt_home)
    assert out["code"] in (0, 2, None), out
    assert out["loaded"] == [], out["loaded"]


def test_the_fbt_script_is_installed_and_answers_help():
    script = Path(sys.executable).parent / "fbt"
    assert script.is_file()
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("run", "runs", "compare", "export", "presets", "paths", "doctor"):
        assert command in result.stdout
    assert "130 interrupted" in result.stdout
