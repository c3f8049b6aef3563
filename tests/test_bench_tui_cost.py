"""bench/tui_cost.py, which measures the speed issue's TUI target: one real run at toy size, the
real app attached and detached in windows of it, and its table; bad arguments are a one-line error."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from conftest import REPO


def _bench(*args: str) -> subprocess.CompletedProcess:
    """The bench in a process of its own (its run lives in a temporary home it removes)."""
    return subprocess.run([sys.executable, str(REPO / "bench" / "tui_cost.py"), *args],
                          capture_output=True, text=True, timeout=600)


TOY = ("--settle", "0.2", "--engine-threads", "1", "--set", "data.subset=512", "--set", "teacher.recipe.epochs=1")


def test_two_pairs_of_windows_of_one_run():
    """Without, with, with, without: the app attaches, detaches and attaches again in one process."""
    result = _bench("--pairs", "2", *TOY)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "one run, 4 windows of 1 distillation epoch(s)" in out
    without = re.search(r"without the TUI +(\d+) +\((\d+), (\d+)\)", out)
    attached = re.search(r"TUI attached +(\d+) +\((\d+), (\d+)\)", out)
    assert without and attached and all(int(v) > 0 for v in [*without.groups(), *attached.groups()])
    assert re.search(r"cost of the TUI +-?\d+\.\d %.*mean \+ 2 standard errors -?\d+\.\d %", out)
    # the app really ran in the windows it was attached to: it drew and tailed, using CPU time
    cpu = re.search(r"with the app: (\d+\.\d)% of one core; without: (\d+\.\d)%", out)
    assert cpu and float(cpu[1]) > float(cpu[2])
    assert re.findall(r"window \d: (without|with the TUI)", result.stderr) == [
        "without", "with the TUI", "with the TUI", "without"]


def test_an_interrupted_bench_reports_its_complete_pairs():
    """The GPU check's time limit stops the bench with SIGINT: the pairs measured so far are reported."""
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "tui_cost.py"), "--pairs", "3", *TOY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=lambda: [*map(lines.put, proc.stderr), lines.put(None)], daemon=True).start()
    seen: list[str] = []
    try:
        # alone it takes ~20 s; one CI run saw no third window in 300 s: fail then, with what it said
        while (line := lines.get(timeout=240)) is not None and not line.startswith("window 3:"):
            seen.append(line)
        assert line is not None, f"the bench ended early:\n{''.join(seen)}"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)  # its table is a few lines: the stdout pipe holds it
        out = proc.stdout.read()
    except queue.Empty:
        raise AssertionError(f"no third window within 240 s; the bench said:\n{''.join(seen)}{_stall(seen)}") from None
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "one run, 2 windows of 1 distillation epoch(s) (interrupted after 1 of 3 pairs)" in out
    assert "cost of the TUI" in out


def _stall(said: list[str]) -> str:
    """Where a stalled bench's engine was: its process's state and kernel wait, and its log's end
    (a CI run saw the bench silent for 240 s: not even its run's first epoch; alone it takes ~20 s)."""
    found = next((re.match(r"engine pid (\d+): run folder (.+)", line) for line in said if line.startswith("engine")),
                 None)
    if found is None:
        return "\n(no run folder yet)"
    proc, folder = Path(f"/proc/{found[1]}"), Path(found[2].strip())
    state = [line for line in (proc / "status").read_text().splitlines() if line.startswith("State")] \
        if proc.exists() else ["gone"]
    wchan = (proc / "wchan").read_text() if proc.exists() else ""
    log = (folder / "stdout.log").read_text().splitlines()[-10:] if (folder / "stdout.log").exists() else []
    return f"\nengine {found[1]}: {state} wchan {wchan!r}\n" + "\n".join(log)


def test_a_time_limit_ends_the_bench_at_a_pairs_end():
    """--seconds: the first pair ends past 1 s from the start (the run's start-up alone takes
    longer), so another pair would too: the bench reports that one pair and stops."""
    result = _bench("--pairs", "5", "--seconds", "1", *TOY)
    assert result.returncode == 0, result.stderr
    assert "one run, 2 windows of 1 distillation epoch(s) (stopped by --seconds 1 after 1 of 5 pairs)" in result.stdout
    assert re.findall(r"window \d: (without|with the TUI)", result.stderr) == ["without", "with the TUI"]


def test_no_pairs_is_a_usage_error_not_a_traceback():
    result = _bench("--pairs", "0")
    assert result.returncode == 2 and "--pairs: at least 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr
    result = _bench("--seconds", "0")
    assert result.returncode == 2 and "--seconds: more than 0, got 0" in result.stderr
