"""Distributed runs through torchrun with the gloo backend on CPU: one run folder written by
rank 0 alone, the same weights on every rank, stop and resume, and a dead rank reaching the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_fbt, tiny_sets, warnings_of
from fbt_engine.store.events import effective
from helpers_engine import MLP_TO_CNN, file_events, meta, only_run, steps

DDP = ["--nproc-per-node", "2"]
# the global batch of 64 splits into 2 × 32; 500 images → 7 steps per epoch
STEPS_PER_EPOCH = 7


def start(home: Path, *args: str) -> subprocess.Popen:
    """`fbt run … --nproc-per-node 2` in its own session, so the test can signal the whole launch."""
    env = {**os.environ, "FBT_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "fbt_engine", "run", *args], env=env, cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_step(home: Path, step: int, proc: subprocess.Popen, timeout: float = 180) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        runs = list((home / "runs").glob("*/events.jsonl")) if (home / "runs").is_dir() else []
        if runs and any(s >= step for s in steps(file_events(runs[0].parent))):
            return runs[0].parent
        time.sleep(0.2)
    raise AssertionError(f"no distillation step {step} within {timeout} s")


def _score(run_dir: Path) -> tuple[float, float]:
    """Top-1 (%) and mean cross-entropy of the run's exported student on the run's own validation
    images, in this process."""
    import torch
    from safetensors.torch import load_file

    from fbt_engine.config.presets import resolve
    from fbt_engine.data.sources import load_data
    from fbt_engine.models.factory import create_model
    from fbt_engine.train.loop import fit_channels

    cfg = resolve(str(run_dir / "config.toml"), []).config
    data = load_data(cfg.data, torch.device("cpu"), cfg.run.seed)
    model = create_model(cfg.student.model, data.num_classes, data.img_size)
    model.load_state_dict(load_file(str(run_dir / "student.safetensors")))
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for x, y in data.val.epoch(0):
            logits = model(fit_channels(x, 3))
            correct += int((logits.argmax(1) == y).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
    return 100.0 * correct / data.val.num_images, loss / data.val.num_images


def test_two_process_run_writes_one_history_and_ends_in_sync(with_cached_teacher):
    """With an EMA student too: each process scores its share of the validation images with the
    same model (rank 0's EMA BatchNorm statistics, as exported), so the export scores what the run said."""
    result = run_fbt("run", MLP_TO_CNN, *tiny_sets("train.epochs=2", "train.ema=0.5"), *DDP, "--json")
    assert result.returncode == 0, result.stderr
    run_dir = only_run(with_cached_teacher)
    events = file_events(run_dir)
    assert [e["type"] for e in events].count("run_started") == 1
    started = events[0]
    assert (started["processes"], started["batch_per_process"]) == (2, 32)
    done = steps(events)
    assert done == sorted(set(done)) and done[-1] == 2 * STEPS_PER_EPOCH  # each step logged once
    assert events[-1]["type"] == "run_finished" and events[-1]["ranks_in_sync"] is True
    assert meta(run_dir)["status"] == "finished"
    assert not list(run_dir.glob("rank-*"))
    last_epoch = [e for e in events if e["type"] == "epoch"][-1]
    # rel 1e-6: the processes' own EMA statistics moved the loss by 7e-6 here
    assert _score(run_dir) == pytest.approx((last_epoch["student"]["top1"], last_epoch["val_loss"]), rel=1e-6)


def stop(proc: subprocess.Popen) -> str:
    """Ctrl-C in the terminal: the whole launch's process group. Its stderr, which is fbt's own
    lines (torchrun's traceback of the signal it got too followed them)."""
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in stderr and "OMP_NUM_THREADS" not in stderr, stderr
    return stderr


def test_a_stopped_distributed_run_resumes_at_the_exact_step(with_cached_teacher):
    """In as many processes as it trained in, and, said, in another number of them."""
    home = with_cached_teacher
    proc = start(home, MLP_TO_CNN, *tiny_sets("train.epochs=2"), *DDP, "--name", "ddp-stop")
    run_dir = wait_for_step(home, 2, proc)
    stop(proc)
    assert meta(run_dir)["status"] == "interrupted" and (run_dir / "checkpoints" / "last.pt").is_file()
    proc = start(home, "--resume", "ddp-stop", *DDP)
    wait_for_step(home, STEPS_PER_EPOCH + 2, proc)
    stop(proc)
    resumed = run_fbt("run", "--resume", "ddp-stop", home=home)  # one process
    assert resumed.returncode == 0, resumed.stderr
    history = steps(effective(file_events(run_dir)))
    assert history == sorted(set(history)) and history[-1] == 2 * STEPS_PER_EPOCH
    assert meta(run_dir)["segments"] == 3 and file_events(run_dir)[-1]["ranks_in_sync"] is True
    assert warnings_of(file_events(run_dir)) == [
        "the run trained in 2 processes and goes on in 1: the global batch stays 64, each process's batch and "
        "BatchNorm's statistics change (--nproc-per-node 2 goes on as it trained)"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the ranks' refusal is of a machine without CUDA")
def test_a_refusal_on_every_rank_is_said_once_a_rank_with_its_code(fbt_home):
    """No CUDA: each rank says so and exits 3, as one process does; torchrun's traceback of the
    failed ranks followed, and the launch exited 1."""
    result = run_fbt("run", MLP_TO_CNN, *tiny_sets(), "--device", "cuda", *DDP)
    assert result.returncode == 3
    assert sorted(result.stderr.splitlines()) == [
        f"error: run.device: cuda:{rank}: CUDA is not available on this machine (--device cpu runs on the CPU)"
        for rank in (0, 1)]


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
    return False


def _rank_pid(launcher: int, rank: int) -> int:
    """The pid of the torchrun worker with RANK=rank started by `launcher`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            if f"RANK={rank}".encode() in environ and _descends_from(int(proc.name), launcher):
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no rank {rank} process")


@pytest.mark.timeout(300)
def test_a_killed_rank_fails_the_run_instead_of_leaving_it_running(with_cached_teacher):
    home = with_cached_teacher
    proc = start(home, MLP_TO_CNN, *tiny_sets("train.epochs=30"), *DDP)
    run_dir = wait_for_step(home, 2, proc)
    os.kill(_rank_pid(proc.pid, 1), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 1
    m = meta(run_dir)
    assert m["status"] == "failed", m
    assert file_events(run_dir)[-1]["type"] == "run_failed"
    assert "Traceback" not in stderr, stderr  # torchrun's, of the rank it lost, followed fbt's line
    assert "error: rank 1 was ended by SIGKILL (out of memory?)" in stderr.splitlines()


@pytest.mark.timeout(300)
def test_a_kill_of_the_launcher_stops_torchrun_and_its_ranks(with_cached_teacher):
    """SIGTERM to `fbt run --nproc-per-node 2` alone (a job scheduler's kill): it ended and left
    torchrun and the ranks running on."""
    home = with_cached_teacher
    proc = start(home, MLP_TO_CNN, *tiny_sets("train.epochs=30"), *DDP)
    run_dir = wait_for_step(home, 2, proc)
    ranks = [_rank_pid(proc.pid, rank) for rank in (0, 1)]
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 130  # the ranks stopped as asked, saving their step
    assert meta(run_dir)["status"] == "interrupted" and (run_dir / "checkpoints" / "last.pt").is_file()
    assert not [pid for pid in ranks if Path(f"/proc/{pid}").exists()]


def test_a_rank_ended_by_a_signal_without_a_name_is_said_by_number():
    """Real-time signals have no name: naming one raised, a traceback instead of the rank's end."""
    from fbt_engine.torchrun import signal_name

    assert (signal_name(9), signal_name(signal.SIGRTMIN + 6)) == ("SIGKILL", f"signal {signal.SIGRTMIN + 6}")
