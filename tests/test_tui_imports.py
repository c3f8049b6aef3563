"""The TUI never imports torch, timm or torchvision, directly or through the engine modules it uses."""

import subprocess
import sys

from conftest import REPO

CHECK = """
import importlib, pkgutil, sys
import fbt_tui
names = ["fbt_tui"] + [m.name for m in pkgutil.walk_packages(fbt_tui.__path__, "fbt_tui.")]
for name in names:
    importlib.import_module(name)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "timm", "torchvision"})
print(len(names), ",".join(heavy))
"""


def test_no_fbt_tui_module_imports_torch_timm_or_torchvision():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    count, heavy = out.stdout.split()[0], out.stdout.split()[1:] or [""]
    assert int(count) >= 15  # every screen and widget module was imported, not just the package
    assert heavy == [""], f"fbt_tui pulled in {heavy[0]}"
