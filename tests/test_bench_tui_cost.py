"""bench/tui_cost.py, which measures the speed issue's TUI target: one real run at toy size, the
real app attached and detached in windows of it, and its table; bad arguments are a one-line error."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def _bench(*args: str) -> subprocess.CompletedProcess:
    """The bench in a process of its own (its run lives in a temporary home it removes)."""
    return subprocess.run([sys.executable, str(REPO / "bench" / "tui_cost.py"), *args],
                          capture_output=True, text=True, timeout=600)


def test_one_pair_of_windows_of_one_run():
    result = _bench("--pairs", "1", "--settle", "0.2", "--engine-threads", "1",
                    "--set", "data.subset=512", "--set", "teacher.recipe.epochs=1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "one run, 2 windows of 1 distillation epoch(s)" in out
    without = re.search(r"without the TUI +(\d+) +\((\d+)\)", out)
    attached = re.search(r"TUI attached +(\d+) +\((\d+)\)", out)
    assert without and attached and int(without[1]) > 0 and int(attached[1]) > 0
    assert re.search(r"cost of the TUI +-?\d+\.\d %", out)
    # the app really ran in the window it was attached to: it drew and tailed, using CPU time
    cpu = re.search(r"with the app: (\d+\.\d)% of one core; without: (\d+\.\d)%", out)
    assert cpu and float(cpu[1]) > float(cpu[2])
    assert re.findall(r"window \d: (without|with the TUI)", result.stderr) == ["without", "with the TUI"]


def test_no_pairs_is_a_usage_error_not_a_traceback():
    result = _bench("--pairs", "0")
    assert result.returncode == 2 and "--pairs: at least 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr
