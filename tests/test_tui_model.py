"""The dashboard's metrics model without any widget: folding, decimation, resume, corrupt files."""

import json
import os
from types import SimpleNamespace
from unittest.mock import patch

import numpy as np

from fbt_engine.store.events import effective, read_events
from fbt_tui.format import wrap_log
from fbt_tui.model import DISTILL, EVAL, TEACHER, RunModel, Series, decimate, loss_group, sparkline, trend
from fbt_tui.runs import RunManager
from fbt_tui.widgets.run_view import RunView

from test_tui_support import fake_run


def view_of(model: RunModel, stop_requested: bool = False) -> RunView:
    """A RunView of `model` alone, as a handle holds it (no app, no run process)."""
    return RunView(SimpleNamespace(model=model, stop_requested=stop_requested))


def test_decimate_bounds_the_points_and_keeps_every_spike():
    x = np.arange(100_000, dtype=float)
    y = np.sin(x / 1000)
    y[12_345], y[77_777] = 50.0, -50.0
    dx, dy = decimate(x, y, 200)
    assert len(dx) <= 2 * 200
    assert dy.max() == 50.0 and dy.min() == -50.0
    assert np.all(np.diff(dx) > 0)  # still in order, so the line is drawn left to right
    small_x, small_y = decimate(x[:50], y[:50], 200)
    assert np.array_equal(small_x, x[:50]) and small_x is not x


def test_decimate_survives_nan_buckets():
    x = np.arange(1000, dtype=float)
    y = np.full(1000, np.nan)
    y[500] = 1.0
    _, dy = decimate(x, y, 10)
    assert np.nanmax(dy) == 1.0


def test_series_grows_and_truncates():
    s = Series(capacity=2)
    for i in range(10):
        s.append(i, i * 2.0)
    s.append(10, None)
    assert s.n == 11 and np.isnan(s.y[-1])
    s.truncate_after(4)
    assert list(s.x) == [0, 1, 2, 3, 4]


def test_loss_groups_follow_the_pairs():
    assert [loss_group(t) for t in ("ce", "fusion/ce", "ts/nce", "tf/logit", "fs/mse", "kd", "fitnet")] == [
        "CE", "CE", "T–S", "T–F", "F–S", "T–S", "T–S"]


def test_sparkline_and_trend():
    assert sparkline([0.1, 0.5, 0.9]) == "▁▅█"
    assert sparkline([None, 0.3]) == "▅"  # one value: the middle of the range
    assert trend([0.5, 0.7]).startswith("↑+0.2")
    assert trend([0.7]) == ""
    # changes below what is shown, or below 2 % of the values, are no change
    assert trend([0.9501, 0.9499]) == "→ 0.000" and trend([0.95, 0.9494]) == "↓-0.001"
    assert sparkline([0.951, 0.949, 0.950, 0.9505]) == "▅▄▅▅"
    assert sparkline([0.0, 0.0]) == "▅▅"


def test_model_matches_effective_after_a_resume(fbt_home):
    run_id = fake_run(fbt_home, "resumed", top1=(10.0, 20.0, 30.0))
    events = read_events(fbt_home / "runs" / run_id / "events.jsonl")
    # a second segment resumed from step 4 (end of epoch 1): epochs 2-3 of segment 1 are superseded
    events += [{"type": "resume", "time": 0, "segment": 2, "phase": DISTILL, "from_step": 4},
               {"type": "step", "time": 0, "phase": DISTILL, "step": 5, "epoch": 2, "lr": 0.1, "loss": 1.0,
                "losses": {"ce": 1.0}, "img_s": 1.0},
               {"type": "epoch", "time": 0, "phase": DISTILL, "epoch": 2, "step": 5, "student": {"top1": 15.0}}]
    live = RunModel(run_id)
    for ev in events:  # one at a time, as a tail would see them
        live.add_events([ev])
    whole = RunModel(run_id)
    whole.add_events(effective(events))
    for group in ("loss", "top1", "CE"):
        a, b = live.panel(group, 100), whole.panel(group, 100)
        assert [(c.label, list(c.x), list(c.y)) for c in a.curves] == [(c.label, list(c.x), list(c.y)) for c in b.curves]
    assert live.best == (15.0, 2)
    assert live.panel("top1", 100).curves[0].x.tolist() == [1.0, 2.0]


def test_the_validation_loss_is_drawn_with_the_cross_entropies(fbt_home):
    """It is the student's CE on the validation set: beside the weighted total of every term it
    was a flat line at the bottom of the loss plot."""
    run_id = fake_run(fbt_home, "val", top1=(10.0, 20.0))
    model = RunModel(run_id)
    model.add_events(read_events(fbt_home / "runs" / run_id / "events.jsonl"))
    assert [c.label for c in model.panel("loss", 100).curves] == ["train"]
    assert [c.label for c in model.panel("CE", 100).curves] == ["ce", "fusion/ce", "val"]
    assert model.panel("CE", 100).curves[-1].y.tolist() == [2.0, 1.0]  # fake_run's val_loss: 2 / epoch


def test_opened_run_with_a_corrupt_line_keeps_everything_before_it(fbt_home):
    run_id = fake_run(fbt_home, "corrupt", top1=(10.0, 20.0))
    path = fbt_home / "runs" / run_id / "events.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "epoch") + 1
    path.write_text("".join(lines[:cut]) + '{"type": "step", "step": 9\n' + "".join(lines[cut:]))
    manager = RunManager(lambda message: None, fbt_home)
    handle = manager.open(run_id)
    handle.thread.join(timeout=10)
    model = handle.model
    assert model.broken_events
    assert model.events_seen == cut
    assert model.panel("top1", 50).curves[0].y.tolist() == [10.0]
    assert any("corrupt" in line for line in model.log)
    assert model.status == "finished"


def test_a_trashed_run_is_not_resumed_and_the_app_says_why(fbt_home):
    """The engine refused it after starting, and the app showed the end of its message only."""
    import pytest

    from fbt_engine.store.runs import RunStore

    run_id = fake_run(fbt_home, "gone", status="interrupted")
    store = RunStore(fbt_home)
    store.trash(run_id)
    store.close()
    with pytest.raises(ValueError, match=f"run {run_id} is in the trash: restore it in History first"):
        RunManager(lambda message: None, fbt_home).resume(run_id)


def test_eta_from_the_phase_pace():
    m = RunModel("r")
    m.add_events([{"type": "run_started", "time": 0, "config": {}},
                  {"type": "phase", "time": 100.0, "phase": DISTILL, "epochs": 2, "steps_per_epoch": 10,
                   "from_step": 0},
                  {"type": "step", "time": 110.0, "phase": DISTILL, "step": 5, "epoch": 1, "loss": 1.0,
                   "losses": {}}])
    assert m.eta_seconds(now=110.0) == 30.0  # 5 of 20 steps in 10 s
    # counted down until the next step: paced to now, it grew while an evaluation ran or the app
    # was closed, and an ETA of 0:45 read 5:09 on re-opening the app one step after a resume
    assert m.eta_seconds(now=116.0) == 24.0
    assert m.eta_seconds(now=150.0) is None  # overdue: no 0:00 for as long as the run is late
    m.add_events([{"type": "step", "time": 130.0, "phase": DISTILL, "step": 10, "epoch": 1, "loss": 1.0,
                   "losses": {}}])
    assert m.eta_seconds(now=130.0) == 30.0  # 10 steps in 30 s, 10 to go
    m.add_events([{"type": "run_finished", "time": 120.0}])
    assert m.eta_seconds(now=120.0) is None


def test_a_resumed_distillation_goes_on_in_the_epoch_it_stopped_in():
    """The resumed segment's phase event said epoch 0 of N until its first logged step; the epoch is
    the one its step lies in, as the step events before the stop said (7 of 12 at step 206 of 372,
    and at 217, the end of epoch 7)."""
    for from_step in (206, 217):
        m = RunModel("r")
        m.add_events([{"type": "run_started", "time": 0, "config": {}},
                      {"type": "phase", "time": 1.0, "phase": DISTILL, "epochs": 12, "steps_per_epoch": 31,
                       "from_step": from_step}])
        assert (m.epoch, m.step, m.epochs_total) == (7, from_step, 12)


def test_a_teacher_in_training_has_its_own_plots_and_the_pairs_come_with_distillation():
    m = RunModel("r")
    m.add_events([{"type": "run_started", "time": 0, "config": {}, "loss_terms": ["ce", "fusion/ce", "ts/nce", "tf/nce"]},
                  {"type": "phase", "time": 1.0, "phase": TEACHER, "epochs": 2, "steps_per_epoch": 10, "from_step": 0}])
    assert m.groups() == []  # no step logged yet: the total loss and the accuracies alone
    m.add_events([{"type": "step", "time": 2.0, "phase": TEACHER, "step": 10, "epoch": 1, "loss": 1.0,
                   "losses": {"ce": 1.0}}])
    assert m.groups() == ["CE"]
    m.add_events([{"type": "phase", "time": 3.0, "phase": DISTILL, "epochs": 4, "steps_per_epoch": 10, "from_step": 0}])
    assert m.groups() == ["T–S", "T–F", "CE"]  # announced by the run's loss terms before their first step


def test_a_phase_that_starts_shows_its_first_epoch():
    """Not "epoch 0/4" until the first logged step, the teacher's phase as the distillation's."""
    m = RunModel("r")
    m.add_events([{"type": "run_started", "time": 0, "config": {}},
                  {"type": "phase", "time": 1.0, "phase": TEACHER, "epochs": 2, "steps_per_epoch": 10, "from_step": 0}])
    assert (m.epoch, m.step, m.epochs_total) == (1, 0, 2)
    m.add_events([{"type": "step", "time": 2.0, "phase": TEACHER, "step": 20, "epoch": 2, "loss": 1.0, "losses": {}},
                  {"type": "phase", "time": 3.0, "phase": DISTILL, "epochs": 4, "steps_per_epoch": 10,
                   "from_step": 0}])
    assert (m.epoch, m.step, m.epochs_total) == (1, 0, 4)


def test_a_teacher_loaded_from_the_cache_is_no_teacher_training():
    """The engine marks the teacher's phase skipped when it loads one: the dashboard said "teacher
    training" until distillation began."""
    m = RunModel("r")
    m.add_events([{"type": "run_started", "time": 0, "config": {}},
                  {"type": "phase", "time": 1.0, "phase": TEACHER, "source": "cache", "skipped": True, "path": "t.pt"}])
    assert m.phase == "" and TEACHER not in m.phases
    m.add_events([{"type": "phase", "time": 5.0, "phase": DISTILL, "epochs": 2, "steps_per_epoch": 10, "from_step": 0}])
    assert m.phase == DISTILL


def test_an_evaluation_shows_on_the_status_line_until_the_event_that_ends_it():
    """A paper pair's evaluation runs for seconds with no step: the status line says what the run does."""
    m = RunModel("r")
    view = view_of(m)
    m.add_events([{"type": "run_started", "time": 0, "config": {}},
                  {"type": "phase", "time": 1.0, "phase": EVAL, "during": DISTILL, "epoch": 0, "images": 200}])
    assert m.evaluating == 0 and "evaluating the teacher" in view._status(0, 0)
    m.add_events([{"type": "phase", "time": 2.0, "phase": DISTILL, "epochs": 2, "steps_per_epoch": 10, "from_step": 0},
                  {"type": "step", "time": 3.0, "phase": DISTILL, "step": 10, "epoch": 1, "loss": 1.0, "losses": {}}])
    assert m.evaluating is None and m.phase == DISTILL and "evaluating" not in view._status(0, 0)
    m.add_events([{"type": "phase", "time": 4.0, "phase": EVAL, "during": DISTILL, "epoch": 1, "step": 10,
                   "images": 200}])
    assert m.phase == DISTILL and DISTILL in m.phases and EVAL not in m.phases  # training goes on after it
    assert "evaluating epoch 1" in view._status(0, 0) and m.eta_seconds(now=3.5) is not None
    m.add_events([{"type": "epoch", "time": 5.0, "phase": DISTILL, "epoch": 1, "step": 10, "val_loss": 1.0,
                   "student": {"top1": 30.0}}])
    assert m.evaluating is None
    m.add_events([{"type": "step", "time": 5.5, "phase": DISTILL, "step": 20, "epoch": 2, "loss": 1.0, "losses": {}},
                  {"type": "phase", "time": 6.0, "phase": EVAL, "during": DISTILL, "epoch": 2, "step": 20,
                   "images": 200}])
    # the last evaluation: no ETA of 0:00 while it runs (it can take as long as an epoch)
    assert "evaluating epoch 2" in view._status(0, 0) and "ETA" not in view._status(0, 0)
    m.add_events([{"type": "run_failed", "time": 7.0, "error": "X", "message": "y"}])
    assert "evaluating" not in view._status(0, 0)
    # killed while evaluating, then resumed from the app: the old segment's evaluation is history
    killed = RunModel("r", resuming=2)
    killed.add_events([{"type": "run_started", "time": 0, "config": {}},
                       {"type": "phase", "time": 1.0, "phase": EVAL, "during": DISTILL, "epoch": 1, "step": 10,
                        "images": 200}])
    assert killed.status == "starting" and "evaluating" not in view_of(killed)._status(0, 0)


def test_a_phase_without_a_logged_step_shows_its_clock():
    """A phase writes no event from its start until its first logged step: tens of seconds of
    compiling on a GPU, or a slow model's first steps. The status line says which and counts,
    instead of looking frozen."""
    def started(compile_: str) -> RunModel:
        m = RunModel("r")
        m.add_events([{"type": "run_started", "time": 0, "config": {"train": {"log_every": 10}},
                       "device": {"type": "cuda", "compile": compile_}},
                      {"type": "phase", "time": 100.0, "phase": TEACHER, "epochs": 2, "steps_per_epoch": 10,
                       "from_step": 0}])
        return m

    def status(m: RunModel, now: float) -> str:
        with patch("fbt_tui.widgets.run_view.time.time", return_value=now):
            return view_of(m)._status(0, 0).split("\n")[0]

    m = started("reduce-overhead")
    assert m.before_first_log(now=123.0) == 23.0 and m.eta_seconds(now=123.0) is None
    assert "compiling the training step 0:23" in status(m, 123.0)
    m.add_events([{"type": "step", "time": 130.0, "phase": TEACHER, "step": 5, "epoch": 1, "loss": 1.0, "losses": {},
                   "lr": 0.1, "img_s": 50.0}])
    assert m.before_first_log(now=131.0) is None and "compiling" not in status(m, 131.0)
    # distillation compiles its own step, and shows none of the teacher's step figures meanwhile
    m.add_events([{"type": "phase", "time": 140.0, "phase": DISTILL, "epochs": 1, "steps_per_epoch": 4,
                   "from_step": 0}])
    assert m.before_first_log(now=150.0) == 10.0 and (m.loss, m.lr, m.img_s) == (None, None, None)
    eager = started("off")  # its first steps are only steps, but a slow model's take a while too
    assert eager.before_first_log(now=107.0) == 7.0
    assert "first steps running 0:07[/] (logged every 10)" in status(eager, 107.0) and "compiling" not in status(
        eager, 107.0)
    m = started("default")
    m.add_events([{"type": "run_failed", "time": 110.0, "error": "X", "message": "y"}])
    assert m.before_first_log(now=123.0) is None
    done = RunModel("r", resuming=2)  # resumed at its last step: only the evaluation is left, no step to come
    done.add_events([{"type": "run_started", "time": 0, "config": {}},
                     {"type": "resume", "time": 1.0, "phase": DISTILL, "from_step": 40},
                     {"type": "phase", "time": 2.0, "phase": DISTILL, "epochs": 4, "steps_per_epoch": 10,
                      "from_step": 40}])
    assert done.is_active and done.before_first_log(now=10.0) is None


def test_log_lines_fold_to_the_pane_past_their_time_stamp():
    line = "21:48:09 teacher training: compiling the training step (torch.compile, mode default); its first steps"
    assert wrap_log([line, "  File \"x.py\", line 3"], 40) == [
        "21:48:09 teacher training: compiling the", "         training step (torch.compile,",
        "         mode default); its first steps", '  File "x.py", line 3']
    assert wrap_log([line], 0) == [line]  # a pane not laid out yet


def test_device_from_nvidia_smi_and_gpu_memory_from_the_events(tmp_path, monkeypatch):
    from fbt_tui.app import gpu_names, machine_device

    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\nif [ "$1" = "-L" ]; then echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)"; fi\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert machine_device(gpu_names()) == "NVIDIA H100 80GB HBM3"
    model = RunModel("r")
    model.add_events([{"type": "run_started", "time": 0, "device": {"type": "cuda", "name": "H100"}},
                      {"type": "step", "time": 1, "phase": "distillation", "step": 1, "epoch": 1, "losses": {},
                       "gpu_mem_gb": 5.0}])
    assert model.gpu_mem_gb == 5.0
    model.add_events([{"type": "resume", "time": 2, "segment": 2, "phase": "distillation", "from_step": 1,
                       "device": {"type": "cuda", "name": "H200"}}])
    assert model.device["name"] == "H200"  # a resume may go on elsewhere
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert gpu_names() == [] and machine_device([]).startswith("CPU (")


def test_a_cpu_runs_threads_follow_its_steps():
    """Runs that share a CPU split its cores as they come and go (cpushare.py): the device the run
    names is the one its last step computed on, on the run's machine (its cores, not this one's)."""
    model = RunModel("r")
    model.add_events([{"type": "run_started", "time": 0, "device": {"type": "cpu", "name": "CPU (64 cores)",
                                                                     "cores": 64, "threads": 64}}])
    assert model.device_name() == "CPU (64 cores)"
    model.add_events([{"type": "step", "time": 1, "phase": "distillation", "step": 1, "epoch": 1, "losses": {},
                       "threads": 32}])
    assert model.device_name() == "CPU (64 cores, 32 threads)"
    model.add_events([{"type": "epoch", "time": 2, "phase": "distillation", "epoch": 1, "step": 2, "threads": 1}])
    assert model.device_name() == "CPU (64 cores, 1 thread)"

def test_a_warning_reaches_the_log_pane_once():
    """The engine writes a warning both as an event and into stdout.log, which the pane tails."""
    m = RunModel("r")
    m.add_events([{"type": "run_started", "time": 0, "config": {}},
                  {"type": "warning", "time": 1.0, "message": "torch.compile failed (X); training without it"}])
    m.add_log(["00:00:01 warning: torch.compile failed (X); training without it"])
    assert [line for line in m.log if "warning" in line] == [
        "00:00:01 warning: torch.compile failed (X); training without it"]


def test_a_warning_stays_on_the_status_line_and_is_a_toast_while_watched():
    """Its log line scrolls out of the pane in a minute: the run's warnings were easy to miss."""
    m = RunModel("r", status="running")
    view = view_of(m)
    m.add_events([{"type": "run_started", "time": 0, "config": {}}])
    assert view.untold_warnings() == [] and "warning" not in view._status(0, 0)
    near = "the teacher trained with [teacher.recipe] scores 10.0% top-1, near chance (10.0%)"
    m.add_events([{"type": "warning", "time": 1.0, "message": near}])
    assert view.untold_warnings() == [near] and view.untold_warnings() == []
    second = view._status(0, 0).splitlines()[1]  # clipped at 80 characters, so what runs where still shows
    assert "⚠ 1 warning: the teacher trained with \\[teacher.recipe] scores 10.0% top-1, near chance (10.0…[/]" in second
    m.add_events([{"type": "warning", "time": 2.0, "message": "later"}, {"type": "run_finished", "time": 3.0}])
    assert view.untold_warnings() == [] and "⚠ 2 warnings: later" in view._status(0, 0)  # over: no toast
    opened = view_of(m)  # a run opened from History says its warnings, toasts none
    assert opened.untold_warnings() == [] and m.warnings == [near, "later"]


def test_a_run_resuming_from_the_app_reads_as_starting_until_its_segment_begins():
    """Its earlier segments' ends are history: on a GPU, preparing a resume takes tens of seconds."""
    old = [{"type": "run_started", "time": 0, "config": {}},
           {"type": "run_interrupted", "time": 1.0, "phase": DISTILL},
           {"type": "resume", "time": 2.0, "segment": 2, "phase": DISTILL, "from_step": 3},
           {"type": "run_interrupted", "time": 3.0, "phase": DISTILL}]
    m = RunModel("r", resuming=3)
    m.add_events(old)
    assert m.status == "starting"
    m.add_events([{"type": "resume", "time": 9.0, "segment": 3, "phase": DISTILL, "from_step": 5}])
    assert m.status == "running" and m.resuming is None
    m.add_events([{"type": "run_interrupted", "time": 10.0, "phase": DISTILL}])
    assert m.status == "interrupted"
    refused = RunModel("r", resuming=3)
    refused.add_events(old)
    refused.set_status("interrupted")  # the engine exited without resuming: the store's word stands
    assert refused.status == "interrupted" and refused.resuming is None


def test_a_crashed_run_resuming_from_the_app_keeps_no_stale_end_or_pace():
    """A crashed segment wrote no final event: run_started must not make it "running" either, and
    neither the ETA nor an earlier failure's outcome belongs to the resume under way."""
    m = RunModel("r", resuming=2)
    m.add_events([{"type": "run_started", "time": 0, "config": {}},
                  {"type": "phase", "time": 1.0, "phase": DISTILL, "epochs": 2, "steps_per_epoch": 10, "from_step": 0},
                  {"type": "step", "time": 5.0, "phase": DISTILL, "step": 5, "epoch": 1, "loss": 1.0, "losses": {}},
                  {"type": "run_failed", "time": 6.0, "error": "X", "message": "y", "phase": DISTILL}])
    assert m.status == "starting" and m.outcome == {} and m.eta_seconds(now=7.0) is None
    m.add_events([{"type": "step", "time": 5.5, "phase": DISTILL, "step": 6, "epoch": 1, "loss": 1.0, "losses": {},
                   "img_s": 754.0}])  # (an older segment's, read after the app asked for the resume)
    assert "img/s" not in view_of(m)._status(0, 0)  # the stopped segment's speed is no speed of the resume


def test_a_teacher_trained_here_shows_its_latest_score_until_distillation():
    """Its latest: the final weights are what is cached and distilled from, and what the log,
    History and runs show give as the teacher's top-1."""
    m = RunModel("r")
    m.add_events([{"type": "run_started", "time": 0, "config": {}},
                  {"type": "phase", "time": 1.0, "phase": TEACHER, "epochs": 3, "steps_per_epoch": 10, "from_step": 0}])
    status = view_of(m)._status
    assert "teacher –" in status(0, 0)
    for epoch, top1 in ((1, 40.0), (2, 55.5), (3, 50.0)):
        m.add_events([{"type": "epoch", "time": 1.0 + epoch, "phase": TEACHER, "epoch": epoch, "step": 10 * epoch,
                       "teacher": {"top1": top1, "top5": 90.0}}])
    assert "teacher 50.00% @3" in status(0, 0) and m.best is None
    m.add_events([{"type": "phase", "time": 9.0, "phase": DISTILL, "epochs": 2, "steps_per_epoch": 10, "from_step": 0},
                  {"type": "epoch", "time": 10.0, "phase": DISTILL, "epoch": 1, "step": 10,
                   "student": {"top1": 30.0, "top5": 80.0}, "teacher": {"top1": 55.5, "top5": 90.0}}])
    assert "best 30.00% @1" in status(0, 0) and "teacher 50" not in status(0, 0)


def test_a_run_that_ended_shows_no_speed():
    m = RunModel("r")
    m.add_events([{"type": "run_started", "time": 0, "config": {}},
                  {"type": "phase", "time": 1.0, "phase": DISTILL, "epochs": 1, "steps_per_epoch": 10, "from_step": 0},
                  {"type": "step", "time": 2.0, "phase": DISTILL, "step": 10, "epoch": 1, "loss": 1.0, "losses": {},
                   "img_s": 390.0}])
    status = view_of(m)._status
    assert "390 img/s" in status(0, 0)
    m.add_events([{"type": "run_finished", "time": 3.0}])
    assert "img/s" not in status(0, 0)


def test_the_status_line_says_what_the_curves_hold_and_how_many_are_drawn():
    status = view_of(RunModel("r"))._status
    assert "curves: 1 point" in status(1, 1) and "curves: 39 points" in status(39, 39)
    assert "curves: 2,000 of 39,000 points drawn" in status(2000, 39000)  # a long run's, decimated


def test_a_run_asked_to_stop_says_so_until_it_ends():
    """Between s and the run's end (its step, its save, its exit: seconds) its tab said "running"."""
    m = RunModel("r")
    m.add_events([{"type": "run_started", "time": 0, "config": {}},
                  {"type": "phase", "time": 1.0, "phase": DISTILL, "epochs": 2, "steps_per_epoch": 10, "from_step": 0}])
    assert "stopping" not in view_of(m)._status(0, 0)
    assert "stopping: it saves its step, then exits" in view_of(m, stop_requested=True)._status(0, 0)
    m.add_events([{"type": "run_interrupted", "time": 2.0, "phase": DISTILL, "saved": True}])
    assert "stopping" not in view_of(m, stop_requested=True)._status(0, 0)
