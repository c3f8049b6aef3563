"""Faults on real runs: a NaN loss fails the run at its step; Ctrl-C stops after the step, and
`--resume` continues without losing or repeating one; `kill -9` leaves a run listed as crashed
with every flushed event intact."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import PRESETS, REPO, run_fbt, tiny_sets
from fbt_engine.store.events import effective
from helpers_engine import (
    MLP_TO_CNN, Streamed, distillation_step, file_events, fbt_json, home_with_teacher, meta, only_run, run_dirs, steps,
    stdout_events,
)

STEPS_PER_EPOCH = 500 // 64  # tiny_sets(): 500 images, batches of 64, the last partial one dropped


def _status(run_id: str, home=None) -> str:
    (row,) = [r for r in fbt_json("runs", "ls", "--json", home=home) if r["id"] == run_id]
    return row["status"]


def _interrupted_at_step_2(home, name: str, *sets: str, step: int = 2) -> Streamed:
    """A run named `name`, stopped with Ctrl-C once distillation step 2 (or `step`) is logged (exit 130)."""
    run = Streamed("run", MLP_TO_CNN, *tiny_sets(*sets, "train.log_every=1"), "--json", "--name", name, home=home)
    try:
        run.wait_for(distillation_step(step))
        run.proc.send_signal(signal.SIGINT)
        assert run.finish() == 130, run.stderr
    finally:
        run.close()
    return run


def test_a_second_ctrl_c_stops_at_once_and_says_what_was_saved(with_cached_teacher):
    """It said "interrupted" as if it had saved its step, and the resume went on from step 0. Two
    signals 20 ms apart: the second lands in the step (nothing saved), between the stop's save and
    the run's end (its step saved, the end not), or after (ignored while the run writes its end);
    either way the run says which, and resumes."""
    home = with_cached_teacher
    run = Streamed("run", MLP_TO_CNN, *tiny_sets("train.log_every=1"), "--json", "--name", "twice", home=home)
    try:
        run.wait_for(distillation_step(2))
        run.proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        run.proc.send_signal(signal.SIGINT)
        assert run.finish() == 130, run.stderr
    finally:
        run.close()
    assert "Traceback" not in run.stderr
    end = run.events[-1]
    assert end["type"] == "run_interrupted"
    if end["saved"]:
        assert "interrupted; resume with: fbt run --resume" in run.stderr
    else:
        assert re.search(r"stopped at once: nothing saved since distillation step \d+; resume with", run.stderr)
    assert meta(only_run(home))["status"] == "interrupted"
    resumed = run_fbt("run", "--resume", "twice", home=home)
    assert resumed.returncode == 0, resumed.stderr
    assert steps(effective(file_events(only_run(home)))) == list(range(1, STEPS_PER_EPOCH + 1))


_IN_PROCESS_RUN = """
import signal, sys
from fbt_engine.cli import main
def state(sig, before):
    after = signal.getsignal(sig)
    return "caller's" if after is before else "ignored" if after == signal.SIG_IGN else str(after)
before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
code = main(["run", *sys.argv[2:]], ends_process=sys.argv[1] == "ends")
print(code, *sorted({state(sig, handler) for sig, handler in before.items()}))
"""


@pytest.mark.parametrize("ends, handler", [("keeps", "caller's"), ("ends", "ignored")])
def test_a_run_gives_back_ctrl_c_unless_its_process_ends_with_it(with_cached_teacher, ends, handler):
    """Only the `fbt` process's own end ignores a late Ctrl-C: a caller of main in its own process
    gets its handler back once main returns, while the `fbt` command's run ignores it from the
    moment its stop handler goes, which leaves no gap for a traceback before exit_process."""
    result = subprocess.run([sys.executable, "-c", _IN_PROCESS_RUN, ends, str(MLP_TO_CNN), *tiny_sets(), "--quiet"],
                            capture_output=True, text=True, timeout=240, cwd=REPO, stdin=subprocess.DEVNULL,
                            env={**os.environ, "FBT_HOME": str(with_cached_teacher)})
    assert result.stdout.strip().split() == ["0", handler], result.stderr  # SIGINT's and SIGTERM's alike


def test_a_sigterm_while_a_run_starts_ends_it_as_ctrl_c_does(fbt_home):
    """Before the run's own handlers (importing torch, loading the data), a job scheduler's kill
    ended `fbt run` with 143 and not a word; it is 130, as the README says of SIGINT and SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-m", "fbt_engine", "run", MLP_TO_CNN], cwd=REPO, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    # torch's library mapped: `fbt run` is past its arguments, importing the engine
    while "libtorch" not in open(f"/proc/{proc.pid}/maps").read():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert not (fbt_home / "runs").exists() or not any((fbt_home / "runs").iterdir())


def test_a_settled_stop_flag_ignores_further_signals():
    from fbt_engine.train.loop import StopFlag

    with StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.requested
        stop.settle()
        os.kill(os.getpid(), signal.SIGINT)  # unsettled, this raised KeyboardInterrupt
        time.sleep(0.05)


def test_a_non_finite_loss_fails_the_run_at_its_step(with_cached_teacher):
    result = run_fbt("run", MLP_TO_CNN, *tiny_sets("optim.lr=1e30", "train.log_every=1"), "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "non-finite loss at step" in result.stderr
    events = stdout_events(result.stdout)
    failed = events[-1]
    assert failed["type"] == "run_failed" and failed["error"] == "NonFiniteLoss" and failed["phase"] == "distillation"
    logged = [e for e in events if e["type"] == "step"]
    # every step is logged (log_every = 1); the failing step's event comes first, so the curves show
    # the NaN: its losses are null and named under "nonfinite", every earlier step was finite
    assert logged and failed["step"] == logged[-1]["step"]
    assert logged[-1]["nonfinite"] and all("nonfinite" not in e for e in logged[:-1])
    assert f"step {failed['step']}" in failed["message"]
    run_dir = only_run(with_cached_teacher)
    assert file_events(run_dir) == events
    m = meta(run_dir)
    assert (m["status"], m["exit_code"]) == ("failed", 1) and m["ended"] is not None
    assert not (run_dir / "student.safetensors").exists()
    assert _status(run_dir.name) == "failed"
    show = run_fbt("runs", "show", "last")
    assert "failed (exit 1)" in show.stdout and "NonFiniteLoss: non-finite loss at step" in show.stdout
    teacher = next(e for e in events if e["type"] == "phase" and e["phase"] == "distillation")["teacher"]["top1"]
    assert f"teacher top-1  {teacher:.2f}" in show.stdout  # measured before the failing epoch ended
    assert "student        – (none: the run did not finish" in show.stdout
    export = run_fbt("export", "last", "--student", str(with_cached_teacher / "s.safetensors"))
    assert export.returncode == 3 and "no student.safetensors (status: failed)" in export.stderr
    md = run_fbt("export", "last", "--format", "md").stdout  # a report says why a run failed
    assert f"- {run_dir.name} failed: NonFiniteLoss: non-finite loss at step {failed['step']}" in md
    (as_json,) = json.loads(run_fbt("export", "last", "--format", "json").stdout)
    assert as_json["failure"] == failed


def test_ctrl_c_stops_after_the_step_and_resume_continues_without_gaps_or_repeats(with_cached_teacher):
    home = with_cached_teacher
    run = _interrupted_at_step_2(home, "interrupted-one", "train.epochs=2")
    assert "Traceback" not in run.stderr and "fbt run --resume" in run.stderr
    first = run.events
    assert [e["type"] for e in first[-2:]] == ["checkpoint", "run_interrupted"]
    stopped_at = first[-2]["step"]
    assert first[-2]["kind"] == "last" and steps(first)[-1] == stopped_at
    assert 2 <= stopped_at < 2 * STEPS_PER_EPOCH
    run_dir = only_run(home)
    assert (run_dir / "checkpoints" / "last.pt").is_file() and not (run_dir / "student.safetensors").exists()
    m = meta(run_dir)
    assert (m["status"], m["exit_code"], m["segments"]) == ("interrupted", 130, 1)
    assert _status(run_dir.name) == "interrupted"
    config_before = (run_dir / "config.toml").read_bytes()

    resumed = run_fbt("run", "--resume", "interrupted-one", "--json")
    assert resumed.returncode == 0, resumed.stderr
    second = stdout_events(resumed.stdout)
    assert second[0] == {**second[0], "type": "resume", "run_id": run_dir.name, "segment": 2, "processes": 1,
                         "phase": "distillation", "from_step": stopped_at}
    assert second[0]["device"]["type"] == "cpu"  # where this segment runs: it may not be where the run began
    assert first[-1]["time"] < second[0]["launched"] < second[0]["time"]  # its preparation: the run's time
    assert second[-1]["type"] == "run_finished" and second[-1]["steps"] == 2 * STEPS_PER_EPOCH
    everything = file_events(run_dir)
    assert everything == first + second  # one file, both segments, nothing lost or rewritten
    expected = list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert steps(effective(everything)) == expected
    assert steps(everything) == expected  # stopping after a step leaves nothing to supersede
    assert [e["epoch"] for e in effective(everything) if e["type"] == "epoch"] == [1, 2]
    # an epoch's training loss is over all of its steps, the resumed one's too (it was over the
    # steps after the resume); its img/s over the steps its epoch_time holds (it was all of them)
    for epoch in (e for e in effective(everything) if e["type"] == "epoch" and e["phase"] == "distillation"):
        losses = [e["loss"] for e in effective(everything) if e["type"] == "step" and e["phase"] == "distillation"
                  and e["epoch"] == epoch["epoch"]]
        assert len(losses) == STEPS_PER_EPOCH and epoch["train_loss"] == pytest.approx(sum(losses) / len(losses))
        timed = [e for e in (first if epoch in first else second) if e["type"] == "step"
                 and e["phase"] == "distillation" and e["epoch"] == epoch["epoch"]]
        assert epoch["img_s"] * epoch["epoch_time"] == pytest.approx(len(timed) * 64)
        # and says so where it was not all of them
        assert epoch.get("timed_steps") == (len(timed) if len(timed) < STEPS_PER_EPOCH else None)
    split = next(e for e in effective(everything) if e["type"] == "epoch" and "timed_steps" in e)
    assert (f"over its last {split['timed_steps']} of {STEPS_PER_EPOCH} steps, after the resume"
            if split["timed_steps"] else "its steps ran before the resume") in resumed.stderr
    shown = run_fbt("runs", "show", "interrupted-one").stdout
    assert f"s ({split['timed_steps']} steps)" in shown
    m = meta(run_dir)
    assert (m["status"], m["exit_code"], m["segments"]) == ("finished", 0, 2)
    assert (run_dir / "config.toml").read_bytes() == config_before
    assert (run_dir / "student.safetensors").is_file()
    rows = list(csv.DictReader(io.StringIO(run_fbt("export", "interrupted-one", "--format", "csv").stdout)))
    assert [int(r["step"]) for r in rows] == expected
    again = run_fbt("run", "--resume", "interrupted-one")
    assert again.returncode == 2 and "already finished" in again.stderr and "Traceback" not in again.stderr
    assert f"fbt run {run_dir / 'config.toml'} --set train.epochs=N" in again.stderr  # what to do instead


def test_a_resumed_run_is_listed_as_running_and_as_crashed_when_killed(with_cached_teacher):
    """The index says running from the resume on, so that `runs ls` shows it and crash detection,
    which looks at running runs, catches its death (it said interrupted, the run's own state
    said running, forever)."""
    run_id = _interrupted_at_step_2(with_cached_teacher, "resumed-then-killed").events[0]["run_id"]
    resumed = Streamed("run", "--resume", run_id, "--json", home=with_cached_teacher)
    try:
        resumed.wait_for(lambda e: e["type"] == "resume")
        os.kill(resumed.proc.pid, signal.SIGSTOP)
        assert _status(run_id) == "running"
        assert [r["id"] for r in fbt_json("runs", "ls", "--json", "--status", "running")] == [run_id]
        os.kill(resumed.proc.pid, signal.SIGKILL)
        assert resumed.finish() == -signal.SIGKILL
    finally:
        resumed.close()
    assert _status(run_id) == "crashed" and meta(only_run(with_cached_teacher))["status"] == "crashed"


def test_in_a_terminal_the_runs_last_words_come_after_its_progress_bar(with_cached_teacher):
    """The bar's final frame was drawn below "finished: …", the last thing on the screen."""
    import pty

    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "fbt_engine", "run", MLP_TO_CNN, *tiny_sets()], cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child)
    os.close(child)
    screen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the run exited: its end of the terminal is closed
            break
        if not chunk:
            break
        screen += chunk
    os.close(main)
    assert proc.wait(timeout=240) == 0
    lines = [line for line in re.split(r"[\r\n]+", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode()))
             if line.strip()]
    assert lines[-1].startswith("finished: best top-1"), lines[-3:]


def test_a_reader_that_goes_away_does_not_stop_the_run(with_cached_teacher):
    """`fbt run … --json | head -1`, `fbt run … 2>&1 | head -2`: the pipes close after a line, and
    the run trains on to the end (it died of the broken pipe at its next progress line, and left
    its status running)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fbt_engine", "run", MLP_TO_CNN, *tiny_sets(), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, cwd=REPO)
    assert proc.stdout.readline() and proc.stderr.readline()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait(timeout=240) == 0
    run_dir = only_run(with_cached_teacher)
    assert meta(run_dir)["status"] == "finished" and file_events(run_dir)[-1]["type"] == "run_finished"
    assert (run_dir / "student.safetensors").is_file()


@pytest.fixture(scope="module")
def killed(tmp_path_factory, teacher_cache):
    """A run killed with SIGKILL after its second distillation step: (home, run id, printed events)."""
    home = home_with_teacher(tmp_path_factory, teacher_cache, "killed")
    run = Streamed("run", MLP_TO_CNN, *tiny_sets("train.log_every=1"), "--json", "--name", "victim", home=home)
    try:
        run.wait_for(distillation_step(2))
        run_id = run.events[0]["run_id"]
        os.kill(run.proc.pid, signal.SIGSTOP)  # still alive, but it cannot finish while we look
        # while it runs: listed as running, with its method and pair before its first epoch ends,
        # and neither deleted nor closed from under it
        (row,) = fbt_json("runs", "ls", "--json", home=home)
        assert (row["status"], row["method"], row["pair"]) == ("running", "fbt", "mixer_nano → resnet10_cifar")
        assert row["epochs_done"] == 0 and row["epochs_total"] == 1
        rm = run_fbt("runs", "rm", "victim", home=home)
        assert rm.returncode == 2 and f"still running (pid {run.proc.pid}); stop it first: kill -INT" in rm.stderr
        close = run_fbt("runs", "close", "victim", home=home)
        assert close.returncode == 2 and f"kill -INT {run.proc.pid}" in close.stderr
        resume = run_fbt("run", "--resume", "victim", home=home)
        assert resume.returncode == 2 and "still running" in resume.stderr and "Traceback" not in resume.stderr
        os.kill(run.proc.pid, signal.SIGKILL)
        assert run.finish() == -signal.SIGKILL
    finally:
        run.close()
    return home, run_id, run.events


def test_kill_9_leaves_a_run_listed_as_crashed_with_its_events_intact(killed):
    home, run_id, printed = killed
    run_dir = only_run(home)
    on_disk = file_events(run_dir)  # strict: every line complete
    assert on_disk[:len(printed)] == printed  # every event it printed was on disk first
    assert steps(on_disk)[:2] == [1, 2]
    ls = run_fbt("runs", "ls", home=home)
    assert ls.returncode == 0 and run_id in ls.stdout and "crashed" in ls.stdout
    assert _status(run_id, home) == "crashed"
    m = meta(run_dir)
    assert m["status"] == "crashed" and m["exit_code"] is None
    # its last sign of life: the last event where it came after the last heartbeat (every 5 s: a
    # run killed in its first seconds had lasted "0m00s")
    assert m["ended"] == max(m["heartbeat"], on_disk[-1]["time"])
    assert run_fbt("runs", "close", "victim", home=home).stdout.strip() == \
        f"{run_id}: crashed (it was not running: nothing to close)"
    assert "crashed" in run_fbt("runs", "show", "victim", home=home).stdout


def test_resume_refuses_what_it_would_leave_aside(killed, tmp_path):
    """A resumed run keeps its config, name, tags and device: --name, --tag, --device or another
    preset with --resume are refused (they were silently ignored); the run's own preset is fine."""
    home, run_id, _ = killed
    refused = [run_fbt("run", "--resume", "victim", *extra, home=home)
               for extra in (["--name", "renamed"], ["--tag", "t"], ["--device", "cpu"])]
    refused.append(run_fbt("run", str(PRESETS / "cnn_to_vit.toml"), "--resume", "victim", home=home))
    needles = [f"--resume {run_id}: {flag}: a resumed run keeps its name, tags and device"
               for flag in ("--name", "--tag", "--device")] + ["is not the preset the run started from"]
    for result, needle in zip(refused, needles):
        assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert meta(only_run(home))["status"] == "crashed" and len(run_dirs(home)) == 1


def test_resume_after_kill_9_continues_as_one_history(killed):
    home, run_id, _ = killed
    run_dir = only_run(home)
    # a tag that an earlier fbt allowed and this one refuses for new runs: the run still resumes
    config = run_dir / "config.toml"
    config.write_text(config.read_text().replace("tags = []", 'tags = ["two words"]'))
    assert 'tags = ["two words"]' in config.read_text()
    resumed = run_fbt("run", MLP_TO_CNN, "--resume", "victim", "--json", home=home)  # its own preset may be named
    assert resumed.returncode == 0, resumed.stderr
    first = stdout_events(resumed.stdout)[0]
    assert first["type"] == "resume" and first["segment"] == 2
    assert meta(run_dir)["status"] == "finished" and _status(run_id, home) == "finished"
    assert steps(effective(file_events(run_dir))) == list(range(1, STEPS_PER_EPOCH + 1))


def test_resume_with_more_epochs_records_the_change_in_config_and_event(with_cached_teacher):
    home = with_cached_teacher
    _interrupted_at_step_2(home, "extend-me")
    resumed = run_fbt("run", "--resume", "extend-me", "--set", "train.epochs=2", "--json")
    assert resumed.returncode == 0, resumed.stderr
    first = stdout_events(resumed.stdout)[0]
    assert first["type"] == "resume" and first["changed"] == {"train.epochs": [1, 2]}
    run_dir = only_run(home)
    assert "epochs = 2" in (run_dir / "config.toml").read_text()
    assert steps(effective(file_events(run_dir)))[-1] == 2 * STEPS_PER_EPOCH
    # the tiny teacher is near chance: said once, though each segment scores it again
    assert [e.get("kind") for e in file_events(run_dir) if "near chance" in e.get("message", "")] == [
        "teacher_near_chance"]


def test_a_distillation_resumes_from_the_teacher_it_began_with(with_cached_teacher):
    """From the cached teacher the run recorded, wherever today's cache key would look (a newer
    fbt may key teachers otherwise); with that teacher gone, resuming is refused: the run trained
    another teacher half-way through its distillation and went on with it."""
    home = with_cached_teacher
    _interrupted_at_step_2(home, "kept")
    _interrupted_at_step_2(home, "orphaned")
    (cached,) = (home / "teachers").iterdir()
    older = cached.rename(home / "teachers" / "0ld-key")
    kept = next(d for d in run_dirs(home) if meta(d)["name"] == "kept")
    recorded = json.loads((kept / "meta.json").read_text())
    recorded["teacher_weights"] = str(older / "teacher.safetensors")
    (kept / "meta.json").write_text(json.dumps(recorded))

    resumed = run_fbt("run", "--resume", "kept", "--json", home=home)
    assert resumed.returncode == 0, resumed.stderr
    teacher = [e for e in stdout_events(resumed.stdout) if e.get("phase") == "teacher_training"]
    assert [(e["source"], e["skipped"], e["path"]) for e in teacher] == [("cache", True, recorded["teacher_weights"])]

    refused = run_fbt("run", "--resume", "orphaned", home=home)
    assert refused.returncode == 3 and "Traceback" not in refused.stderr, refused.stderr
    assert "the cached teacher this run distils from is gone" in refused.stderr
    assert meta(next(d for d in run_dirs(home) if meta(d)["name"] == "orphaned"))["status"] == "interrupted"
    assert sorted(p.name for p in (home / "teachers").iterdir()) == ["0ld-key"]  # no teacher trained


def test_resume_refuses_fewer_epochs_than_the_run_has_begun(with_cached_teacher):
    """In epoch 2, train.epochs=1 would end the run at once on weights that no evaluation saw,
    reported with epoch 1's accuracy."""
    home = with_cached_teacher
    _interrupted_at_step_2(home, "shrink-me", "train.epochs=3", step=STEPS_PER_EPOCH + 1)
    shrunk = run_fbt("run", "--resume", "shrink-me", "--set", "train.epochs=1")
    assert shrunk.returncode == 2 and "Traceback" not in shrunk.stderr
    assert "--set train.epochs=1: the run has started epoch 2 of its distillation; give 2 or more" in shrunk.stderr
    assert meta(only_run(home))["status"] == "interrupted"
    last = only_run(home) / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # a checkpoint cut short (a full disk, a copy)
    cut = run_fbt("run", "--resume", "shrink-me")
    assert cut.returncode == 3 and "Traceback" not in cut.stderr
    assert f"{last}: cannot read this checkpoint" in cut.stderr


EARLY_TEACHER = tiny_sets("train.log_every=1", "teacher.recipe.epochs=2")  # no cached teacher fits these


def _stopped_training_its_teacher(home) -> None:
    """A run named "early", stopped with Ctrl-C at its teacher's step 2."""
    run = Streamed("run", MLP_TO_CNN, *EARLY_TEACHER, "--json", "--name", "early", home=home)
    try:
        run.wait_for(lambda e: e["type"] == "step" and e["phase"] == "teacher_training" and e["step"] >= 2)
        run.proc.send_signal(signal.SIGINT)
        assert run.finish() == 130, run.stderr
    finally:
        run.close()


def test_a_run_stopped_while_training_its_teacher_resumes_that_training(fbt_home):
    """No cached teacher: Ctrl-C during the teacher's phase, then --resume goes on from its step
    (and says so, not "training from scratch"), distils, and finishes as one history."""
    _stopped_training_its_teacher(fbt_home)
    # as a run started by an fbt that keyed teachers otherwise: the teacher is cached under today's
    # key, and the run records it there, where a resume of its distillation looks
    run_dir = only_run(fbt_home)
    recorded = json.loads((run_dir / "meta.json").read_text())
    (run_dir / "meta.json").write_text(json.dumps({**recorded, "teacher_weights": str(
        fbt_home / "teachers" / "0ld-key" / "teacher.safetensors")}))
    resumed = run_fbt("run", "--resume", "early", home=fbt_home)
    assert resumed.returncode == 0, resumed.stderr
    assert "teacher mixer_nano: training on from step" in resumed.stderr and "from scratch" not in resumed.stderr
    teacher_steps = [e["step"] for e in effective(file_events(run_dir))
                     if e["type"] == "step" and e["phase"] == "teacher_training"]
    assert teacher_steps == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    (cached,) = (fbt_home / "teachers").glob("*/teacher.safetensors")
    assert meta(run_dir)["teacher_weights"] == str(cached) == recorded["teacher_weights"]


def test_a_run_stopped_while_training_its_teacher_resumes_from_one_another_run_cached(fbt_home):
    """Its teacher's key is cached meanwhile: the resume distils from that teacher, and the
    checkpoints of its own teacher training, which will not go on, are not left behind."""
    _stopped_training_its_teacher(fbt_home)
    early = only_run(fbt_home)
    assert (early / "checkpoints" / "teacher_last.pt").is_file()
    other = run_fbt("run", MLP_TO_CNN, *EARLY_TEACHER, "--name", "other", home=fbt_home)  # trains, caches it
    assert other.returncode == 0, other.stderr
    resumed = run_fbt("run", "--resume", "early", "--json", home=fbt_home)
    assert resumed.returncode == 0, resumed.stderr
    teacher = [e for e in stdout_events(resumed.stdout) if e.get("phase") == "teacher_training" and e["type"] == "phase"]
    assert [(e["source"], e["skipped"]) for e in teacher] == [("cache", True)]
    assert not list((early / "checkpoints").glob("teacher_*.pt"))


def test_a_run_killed_while_scoring_its_cached_teacher_resumes_at_distillation(tmp_path):
    """A teacher trained in the run is cached and its checkpoints deleted before the frozen teacher
    is scored: a run killed then resumes distillation from step 0, and the teacher's curves stay
    (resuming the teacher phase from step 0 superseded them all)."""
    from fbt_engine.store.events import EventWriter
    from fbt_engine.train.engine import resume_point

    writer = EventWriter(tmp_path / "events.jsonl")
    for event, fields in [("run_started", {}), ("phase", {"phase": "teacher_training", "epochs": 1}),
                          ("step", {"phase": "teacher_training", "step": 3, "epoch": 1}),
                          ("phase", {"phase": "eval", "during": "distillation", "epoch": 0, "images": 100})]:
        writer.write(event, **fields)
    writer.close()
    assert resume_point(tmp_path) == (0, "distillation")
