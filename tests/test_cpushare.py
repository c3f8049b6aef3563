"""CPU runs of one machine split its cores: real processes signed in to a real folder, and a real
`fbt run` that takes its share."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fbt_engine import paths
from fbt_engine.formats import counted
from fbt_engine.store.runs import process_start_ticks
from fbt_engine.train.cpushare import CpuShare
from conftest import PRESETS, run_fbt, tiny_sets


@pytest.fixture
def threads():
    """torch's threads in this process, put back afterwards (the suite runs each test process on one)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def other_run():
    """A live process signed in as a CPU run, and a way to sign it in to a folder."""
    proc = subprocess.Popen(["sleep", "120"])

    def sign_in(folder: Path, host: str = socket.gethostname(), holds: int | None = None) -> Path:
        """As a run that shares, or one that `holds` threads set otherwise."""
        folder.mkdir(parents=True, exist_ok=True)
        entry = folder / f"{proc.pid}-{process_start_ticks(proc.pid)}-0@{host}"
        entry.write_text("" if holds is None else str(holds))
        return entry

    yield proc, sign_in
    proc.kill()
    proc.wait()


def test_a_second_run_halves_the_threads_and_its_end_gives_them_back(tmp_path, threads, other_run):
    proc, sign_in = other_run
    share = CpuShare(tmp_path / "share", alone=2)
    assert torch.get_num_threads() == 2 and share.census().runs == 1
    entry = sign_in(tmp_path / "share")
    assert share.take() == "2 fbt runs share the CPU: computing with 1 thread of 2"
    assert torch.get_num_threads() == 1
    assert share.take() is None  # nothing changed
    proc.kill()
    proc.wait()
    assert share.take() == "alone on the CPU again: computing with 2 threads"
    assert torch.get_num_threads() == 2
    assert not entry.exists()  # a dead run's entry is cleared by whoever counts next
    share.close()
    assert not any((tmp_path / "share").iterdir())


def test_an_entry_that_is_no_number_counts_as_a_run_that_shares(tmp_path, threads, other_run):
    """Bytes that are no UTF-8 raised from the census, mid-training."""
    _, sign_in = other_run
    sign_in(tmp_path / "share").write_bytes(b"\xff")
    share = CpuShare(tmp_path / "share", alone=2)
    assert share.census().runs == 2 and torch.get_num_threads() == 1


def test_an_entry_removed_is_made_again(tmp_path, threads):
    """Else the others, no longer counting this run, took its cores for the rest of it."""
    share = CpuShare(tmp_path / "share", alone=2)
    share.entry.unlink()
    assert share.take() is None and share.entry.exists()
    share.close()


def test_two_shares_of_one_process_are_two_entries(tmp_path, threads):
    """A caller of the engine may run two at once: the first's end took the second's entry away."""
    torch.set_num_threads(2)
    first, second = CpuShare(tmp_path / "share", alone=2), CpuShare(tmp_path / "share", alone=2)
    assert first.entry != second.entry and second.joined == "2 fbt runs share the CPU: computing with 1 thread of 2"
    first.close()
    assert second.entry.exists() and second.census().runs == 1
    second.close()


def test_signing_out_gives_every_thread_back(tmp_path, threads, other_run):
    """A caller of the engine in its own process goes on with the threads it had: the next run it
    starts takes them as its own."""
    _, sign_in = other_run
    sign_in(tmp_path / "share")
    torch.set_num_threads(2)
    share = CpuShare(tmp_path / "share", alone=2)
    assert share.joined == "2 fbt runs share the CPU: computing with 1 thread of 2" and torch.get_num_threads() == 1
    share.close()
    assert torch.get_num_threads() == 2


def test_runs_of_other_hosts_and_stray_files_are_not_counted(tmp_path, threads, other_run):
    _, sign_in = other_run
    folder = tmp_path / "share"
    sign_in(folder, host="another-node")  # a home on a disk that nodes share
    (folder / "notes.txt").write_text("")
    (folder / f"²-1-0@{socket.gethostname()}").write_text("")  # digits to str.isdigit, not to int()
    (folder / f"1-None-0@{socket.gethostname()}").mkdir()  # a folder named as an entry of a live process
    (folder / f"999999999-1-0@{socket.gethostname()}").mkdir()  # and of a dead one
    share = CpuShare(folder, alone=4)
    assert share.census().runs == 1 and torch.get_num_threads() == 4


def test_recount_asks_the_folder_every_few_seconds_only(tmp_path, threads, other_run, monkeypatch):
    _, sign_in = other_run
    clock = [100.0]
    monkeypatch.setattr("fbt_engine.train.cpushare.time.monotonic", lambda: clock[0])
    share = CpuShare(tmp_path / "share", alone=2)
    assert share.recount() is None  # alone, as it started
    sign_in(tmp_path / "share")
    clock[0] += 1.0
    assert share.recount() is None and torch.get_num_threads() == 2  # within RECOUNT_S of the last count
    clock[0] += 1.5
    assert share.recount() is not None and torch.get_num_threads() == 1


def test_no_share_for_a_run_on_a_gpu(monkeypatch):
    """The CPU feeds the GPU there: its threads are not the run's compute."""
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert CpuShare.claim(torch.device("cuda"), 1, False) is None
    assert not paths.cpu_share_dir().exists()


@pytest.mark.parametrize("world, compiled, env", [
    (2, False, {}),  # torchrun's processes: their threads are set per process
    (1, True, {}),  # torch.compile's CPU kernels fix their threads when generated
    (1, False, {"OMP_NUM_THREADS": "2"}),  # the user's choice
])
def test_a_run_whose_threads_are_set_keeps_them_and_signs_in_with_them(world, compiled, env, monkeypatch, threads,
                                                                       other_run):
    """It signs in with the threads it holds, for the runs that share to count them."""
    monkeypatch.delenv("OMP_NUM_THREADS")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _, sign_in = other_run
    torch.set_num_threads(3)
    fixed = CpuShare.claim(torch.device("cpu"), world, compiled)
    assert fixed is not None and fixed.fixed and fixed.joined is None and torch.get_num_threads() == 3
    assert fixed.entry.read_text() == "3"  # what the runs that share read
    sign_in(paths.cpu_share_dir())  # another that shares
    assert fixed.recount() is None and torch.get_num_threads() == 3  # whatever the others do
    fixed.close()
    assert not fixed.entry.exists()


def test_a_run_that_shares_takes_what_runs_with_set_threads_leave(tmp_path, threads, other_run):
    _, sign_in = other_run
    sign_in(tmp_path / "share", holds=3)  # OMP_NUM_THREADS=3, say
    share = CpuShare(tmp_path / "share", alone=8)
    assert share.joined == "2 fbt runs share the CPU: computing with 5 threads of 8"
    (tmp_path / "share" / "x").write_text("")  # (not a run's)
    sign_in(tmp_path / "share", holds=8)  # more than there is: one thread is left
    assert share.take() == "2 fbt runs share the CPU: computing with 1 thread of 8"


def test_a_run_started_beside_another_takes_half_the_cores(fbt_home, other_run, monkeypatch):
    """A real `fbt run` with its threads left to it (OMP_NUM_THREADS unset), while another CPU run
    is signed in: it starts on its share, says so in every step, and signs out at its end."""
    _, sign_in = other_run
    monkeypatch.delenv("OMP_NUM_THREADS")
    alone = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                               capture_output=True, text=True, check=True).stdout)
    entry = sign_in(paths.cpu_share_dir())
    result = run_fbt("run", str(PRESETS / "mlp_to_cnn.toml"), *tiny_sets("method.name='scratch'"), "--device", "cpu",
                     "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    started = next(e for e in events if e["type"] == "run_started")
    assert started["device"]["threads"] == max(1, alone // 2)
    steps = [e for e in events if e["type"] == "step"]
    assert steps and all(e["threads"] == max(1, alone // 2) for e in steps)
    assert [p.name for p in paths.cpu_share_dir().iterdir()] == [entry.name]
    log = next((fbt_home / "runs").iterdir()) / "stdout.log"
    if alone > 1:  # a run started second says so as it starts
        assert f"2 fbt runs share the CPU: computing with {counted(alone // 2, 'thread')} of {alone}" in log.read_text()
