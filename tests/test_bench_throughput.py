"""bench/throughput.py, which the speed issue is checked with: a real run at toy size prints its
table and ratios; bad arguments are a one-line error."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def _bench(*args: str) -> subprocess.CompletedProcess:
    """The bench in a process of its own (it keeps its runs in a temporary home it removes)."""
    return subprocess.run([sys.executable, str(REPO / "bench" / "throughput.py"), "--device", "cpu", *args],
                          capture_output=True, text=True, timeout=600)


def test_the_table_has_every_variant_and_the_ratios():
    result = _bench("--methods", "kd,fbt", "--steps", "10", "--repeats", "1", "--batch", "8")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.split()[:1] in (["kd"], ["fbt"])}
    assert set(rows) == {"kd", "fbt"}
    for cells in rows.values():  # engine, bare, classic img/s, engine/bare, engine/classic, peak (– on a CPU)
        assert len(cells) == 6 and all(float(c) > 0 for c in cells[:5]) and cells[5] == "–"
    assert re.search(r"fbt/kd step cost \(bare\): \d+\.\d\d×", result.stdout)
    assert re.search(r"fbt/kd step cost \(engine\): \d+\.\d\d×", result.stdout)
    assert "TFLOP/s achieved" in result.stdout and result.stdout.rstrip().splitlines()[-1].startswith("command: ")


def test_too_few_steps_is_a_usage_error_not_a_traceback():
    result = _bench("--steps", "5")
    assert result.returncode == 2 and "--steps: at least 10, got 5" in result.stderr
    assert "Traceback" not in result.stderr
