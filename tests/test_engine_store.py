"""The run store on real folders and a real SQLite index: run-id resolution, crash detection,
trash, the rebuildable index, and events files that survive NaN, truncation and corruption."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fbt_engine.store.events import EventTail, EventWriter, effective, encode, read_events
from fbt_engine.store.index import RunIndex
from fbt_engine.store.runs import RUN_ID, RunNotFound, RunStore, new_run_id, process_start_ticks
from fbt_engine.store.summary import summarize
from fbt_engine.train.report import Heartbeat, HumanOutput, Reporter

CONFIG = {"method": {"name": "fbt"}, "teacher": {"model": "mixer_nano"}, "student": {"model": "resnet10_cifar"},
          "data": {"name": "fashion_mnist_5k"}, "train": {"epochs": 2}}


def make_run(store: RunStore, run_id: str | None = None, name: str = "", **extra_meta) -> str:
    folder = store.create(config=CONFIG, preset_raw=b"# preset\n", preset_source="p.toml", name=name, tags=[],
                          extra_meta={"segments": 1, **extra_meta}, run_id=run_id)
    return folder.name


def epoch_event(epoch: int, step: int, top1: float, phase: str = "distillation") -> dict:
    return {"phase": phase, "epoch": epoch, "step": step, "train_loss": 1.0, "student": {"top1": top1, "top5": 90.0},
            "teacher": {"top1": 70.0, "top5": 95.0}, "fusion": {"top1": top1 + 1, "top5": 90.0}}


def finished_run(store: RunStore, name: str = "", top1s=(40.0, 55.0, 50.0)) -> str:
    """A run written the way the engine writes one: through a Reporter, to `finished`."""
    rid = make_run(store, name=name)
    reporter = Reporter(store, rid, json_stdout=False, human=HumanOutput(quiet=True))
    reporter.emit("run_started", run_id=rid, segment=1, config=CONFIG, uses_teacher=True)
    for i, top1 in enumerate(top1s, start=1):
        reporter.emit("step", phase="distillation", step=i * 2, epoch=i, lr=0.1, loss=2.0, losses={"ce": 2.0})
        reporter.emit("epoch", **epoch_event(i, i * 2, top1))
        reporter.checkpoint_index()
    reporter.emit("run_finished", steps=len(top1s) * 2)
    reporter.finish("finished", 0)
    return rid


@pytest.fixture
def store(fbt_home: Path) -> RunStore:
    s = RunStore()
    yield s
    s.close()


# -- creating and resolving ----------------------------------------------------------------------------

def test_new_run_ids_have_the_documented_form():
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50 and all(RUN_ID.match(i) for i in ids)
    assert new_run_id(0).startswith(time.strftime("%Y%m%d-%H%M%S", time.localtime(0)))


def test_create_writes_a_complete_folder(store, fbt_home):
    rid = make_run(store, name="alpha", needs_teacher=True)
    folder = fbt_home / "runs" / rid
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints", "config.toml", "events.jsonl", "meta.json",
                                                       "preset.toml", "stdout.log"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "running" and meta["pid"] == os.getpid() and meta["name"] == "alpha"
    assert meta["host"] == socket.gethostname() and meta["needs_teacher"] is True
    assert (folder / "preset.toml").read_bytes() == b"# preset\n"
    with pytest.raises(FileExistsError):
        make_run(store, run_id=rid)
    with pytest.raises(ValueError):
        make_run(store, run_id="not-an-id")
    assert not list((fbt_home / "runs").glob(".*"))  # no temporary folder left


def test_run_references_resolve_by_id_prefix_name_and_last(store):
    a = make_run(store, "20250101-000000-aaaaaa", name="shared")
    b = make_run(store, "20250101-000000-aabbbb", name="shared")
    c = make_run(store, "20250102-000000-cccccc", name="other")
    assert store.resolve(a) == a
    assert store.resolve("20250101-000000-aab") == b
    assert store.resolve("20250102") == c
    assert store.resolve("last") == c  # newest started
    assert store.resolve("shared") == b  # a name means its newest run
    with pytest.raises(RunNotFound, match='"20250101" matches 2 runs: '):
        store.resolve("20250101")
    with pytest.raises(RunNotFound, match="no run matches"):
        store.resolve("zzz")
    # the end the app shows (tabs, compare: the random part; narrow History: the time too)
    assert store.resolve("cccccc") == c and store.resolve("000000-aabbbb") == b
    with pytest.raises(RunNotFound, match="no run matches"):
        store.resolve("cccc")  # a part, not a fragment: "ccc" of a name could be anything
    twin = make_run(store, "20250103-000000-cccccc", name="twin")  # ids given with --id may share an end
    with pytest.raises(RunNotFound, match=f'"cccccc" matches 2 runs: {twin}, {c}'):
        store.resolve("cccccc")
    store.update_meta(twin, status="finished")
    store.trash(twin)
    d = make_run(store, "20250101-000000-addddd", name="gone")
    store.update_meta(d, status="finished")
    store.trash(d)
    with pytest.raises(RunNotFound, match=f'run {d} \\("gone"\\) is in the trash: fbt runs restore {d}'):
        store.resolve("gone")
    # `runs restore` of a run that is not in the trash said "the trash is empty" or "no run matches"
    with pytest.raises(RunNotFound, match=f'run {b} \\("aabbbb"\\) is not in the trash'):
        store.resolve("aabbbb", trashed_only=True)
    with pytest.raises(RunNotFound, match='"20250101" matches 2 runs: '):  # not "the trashed one", which a
        store.resolve("20250101")                                        # prefix of two live runs also names


def test_a_run_folder_no_list_shows_is_named_as_one(store, fbt_home):
    """"no run matches" (or "there are no runs yet") of a folder that is there, by its full id."""
    lone = make_run(store, "20250101-000000-aaaaaa")
    (fbt_home / "runs" / lone / "meta.json").unlink()
    assert store.reindex() == (0, [f"{fbt_home / 'runs' / lone}: a run folder without a meta.json"])
    with pytest.raises(RunNotFound, match="a run folder without a readable meta.json"):
        store.resolve(lone)  # the only folder: "there are no runs yet" came first
    kept = make_run(store, "20250102-000000-bbbbbb")
    copied = make_run(store, "20250103-000000-cccccc")
    store.index.db.execute("DELETE FROM runs WHERE id = ?", (copied,))  # as one copied in since the index was built
    with pytest.raises(RunNotFound, match="a run the index does not hold yet: fbt runs reindex adds it"):
        store.resolve(copied)
    assert store.resolve(kept) == kept


def test_last_and_names_prefer_runs_out_of_the_trash(store):
    """What `fbt runs ls` shows first: `runs show last` after `runs rm` of the newest run must not
    show the trashed one (nor `export last` export it); an id still reaches a trashed run."""
    old = finished_run(store, "shared")
    new = finished_run(store, "shared")
    assert store.resolve("last") == new
    store.trash(new)
    for include_trashed in (False, True):
        assert store.resolve("last", include_trashed=include_trashed) == old
        assert store.resolve("shared", include_trashed=include_trashed) == old
    assert store.resolve(new, include_trashed=True) == new
    assert store.resolve("last", trashed_only=True) == new
    store.trash(old)
    assert store.resolve("last", include_trashed=True) == new  # nothing else will do


def test_an_ambiguous_prefix_lists_five_runs_and_says_there_are_more(store):
    for i in range(7):
        make_run(store, run_id=f"20261207-101010-aaaaa{i}")
    with pytest.raises(RunNotFound) as ambiguous:
        store.resolve("2026")
    assert str(ambiguous.value).endswith("20261207-101010-aaaaa2, …") and '"2026" matches 7 runs' in str(ambiguous.value)


def test_resolving_in_an_empty_store(store):
    with pytest.raises(RunNotFound, match="no runs yet"):
        store.resolve("last")


# -- crash detection -----------------------------------------------------------------------------------

def _dead_pid() -> tuple[int, int | None]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    ticks = process_start_ticks(proc.pid)
    proc.wait()
    return proc.pid, ticks


def test_a_run_whose_process_is_gone_is_listed_as_crashed(store):
    pid, ticks = _dead_pid()
    dead = make_run(store, name="dead")
    store.update_meta(dead, pid=pid, pid_start=ticks, heartbeat=store.read_meta(dead)["started"] + 3)
    alive = make_run(store, name="alive")  # this very process
    statuses = {r.name: r.status for r in store.list()}
    assert statuses == {"dead": "crashed", "alive": "running"}
    meta = store.read_meta(dead)
    assert meta["status"] == "crashed" and meta["ended"] == meta["heartbeat"]
    assert store.summary(dead).duration == pytest.approx(3, abs=0.01)
    assert store.close_run(dead) == "crashed"
    with pytest.raises(RuntimeError, match="still running"):
        store.close_run(alive)
    with pytest.raises(RuntimeError, match="still running"):
        store.trash(alive)


def test_a_reused_pid_is_not_mistaken_for_the_run(store):
    rid = make_run(store)
    store.update_meta(rid, pid_start=(process_start_ticks(os.getpid()) or 0) + 1)  # same pid, another process
    assert store.list()[0].status == "crashed"


def _while_locked(store: RunStore, run_id: str, action, meanwhile) -> object:
    """`action(its_store, run_id)` from a thread with a store of its own, started while this test
    holds the run's meta lock; once it had time to read, `meanwhile(meta)` changes meta.json as
    another process would, and the lock goes. What `action` then writes must keep that change."""
    import fcntl

    from fbt_engine.store.runs import write_json_atomic

    folder = store.run_dir(run_id)
    result: list[object] = []

    def act() -> None:
        own = RunStore(store.home)
        result.append(action(own, run_id))
        own.close()

    with open(folder / ".meta.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        worker = threading.Thread(target=act)
        worker.start()
        time.sleep(0.3)
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        write_json_atomic(folder / "meta.json", {**meta, **meanwhile(meta)})
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(10)
    return result[0]


def test_a_run_resumed_during_a_crash_check_is_not_marked_crashed(store):
    """The check decided on a read outside the lock: a resume's claim in between was overwritten
    with "crashed", and a second resume of the running run was then accepted."""
    pid, ticks = _dead_pid()
    rid = make_run(store)
    store.update_meta(rid, pid=pid, pid_start=ticks)
    claimed = {"pid": os.getpid(), "pid_start": process_start_ticks(os.getpid()), "segments": 2}
    assert _while_locked(store, rid, lambda own, _: own.detect_crashes(), lambda _: claimed) == []
    assert store.read_meta(rid)["status"] == "running" and store.read_meta(rid)["pid"] == os.getpid()


def test_tags_changed_at_once_are_all_kept(store):
    rid = make_run(store)
    _while_locked(store, rid, lambda own, r: own.add_tag(r, "mine"), lambda _: {"tags": ["theirs"]})
    assert store.read_meta(rid)["tags"] == ["mine", "theirs"]
    _while_locked(store, rid, lambda own, r: own.remove_tag(r, "mine"), lambda m: {"tags": m["tags"] + ["third"]})
    assert store.read_meta(rid)["tags"] == ["theirs", "third"]


def test_runs_on_another_host_crash_when_their_heartbeat_goes_stale(store):
    fresh, stale = make_run(store, name="fresh"), make_run(store, name="stale")
    store.update_meta(fresh, host="elsewhere", pid=1, heartbeat=time.time())
    store.update_meta(stale, host="elsewhere", pid=1, heartbeat=time.time() - 301)
    assert {r.name: r.status for r in store.list()} == {"fresh": "running", "stale": "crashed"}


def test_the_heartbeat_beats_between_events_and_stops_with_the_run(store):
    """A compile or an evaluation can run for minutes without an event; a watcher on another host
    must not take the run for crashed meanwhile."""
    rid = make_run(store)
    store.update_meta(rid, heartbeat=0.0)
    beat = Heartbeat(store, rid, period=0.02)
    deadline = time.time() + 10
    while store.read_meta(rid)["heartbeat"] == 0.0 and time.time() < deadline:
        time.sleep(0.01)
    beat.stop()
    last = store.read_meta(rid)["heartbeat"]
    assert last > 0.0
    time.sleep(0.1)
    assert store.read_meta(rid)["heartbeat"] == last
    others = set(threading.enumerate())
    finished_run(store)
    assert not [t for t in set(threading.enumerate()) - others if t.name == "fbt-heartbeat"]


def test_close_gives_a_stuck_run_a_final_status(store):
    pid, ticks = _dead_pid()
    rid = make_run(store)
    store.update_meta(rid, pid=pid, pid_start=ticks)
    assert store.close_run(rid) == "crashed" and store.index.get(rid).status == "crashed"


# -- the index -----------------------------------------------------------------------------------------

def test_the_live_index_equals_one_rebuilt_from_the_folders(store, fbt_home):
    finished_run(store, "one")
    finished_run(store, "two", top1s=(10.0,))
    pid, ticks = _dead_pid()
    crashed = make_run(store, name="three")
    store.update_meta(crashed, pid=pid, pid_start=ticks)
    store.list()  # detects the crash
    store.add_tag(crashed, "x")
    store.trash(crashed)
    live = [r.as_dict() for r in store.index.all(include_trashed=True)]
    assert store.reindex() == (3, [])
    assert [r.as_dict() for r in store.index.all(include_trashed=True)] == live
    store.close()
    for f in fbt_home.glob("index.sqlite*"):
        f.unlink()
    fresh = RunStore()  # a lost index is rebuilt on first use
    assert [r.as_dict() for r in fresh.list(include_trashed=True)] == live
    fresh.close()


def test_summaries_show_the_best_not_the_last(store):
    rid = finished_run(store, top1s=(40.0, 55.0, 50.0))
    s = store.summary(rid)
    assert (s.best_top1, s.best_epoch, s.final_top1, s.epochs_done, s.epochs_total) == (55.0, 2, 50.0, 3, 2)
    assert (s.teacher_top1, s.fusion_top1, s.status, s.method, s.pair) == (
        70.0, 56.0, "finished", "fbt", "mixer_nano → resnet10_cifar")
    assert store.read_meta(rid)["exit_code"] == 0


def test_tags_notes_trash_restore_and_purge(store, fbt_home):
    rid = finished_run(store, "t")
    assert store.add_tag(rid, "b") == ["b"] and store.add_tag(rid, "a") == ["a", "b"]
    assert [r.id for r in store.list(tag="a")] == [rid] and store.list(tag="zzz") == []
    assert store.remove_tag(rid, "a") == ["b"]
    store.set_note(rid, "lr too high?")
    assert store.index.get(rid).note == "lr too high?" and store.read_meta(rid)["note"] == "lr too high?"
    store.trash(rid)
    assert store.list() == [] and [r.id for r in store.list(include_trashed=True)] == [rid]
    assert (fbt_home / "trash" / rid / "meta.json").is_file()
    with pytest.raises(RunNotFound):
        store.resolve(rid)
    assert store.resolve(rid, include_trashed=True) == rid
    store.restore(rid)
    assert [r.id for r in store.list()] == [rid] and not store.index.get(rid).trashed
    with pytest.raises(RunNotFound, match="not in the trash"):
        store.restore(rid)
    store.trash(rid)
    assert store.purge() == [rid]
    assert not (fbt_home / "trash" / rid).exists() and store.index.get(rid) is None


# -- events files --------------------------------------------------------------------------------------

def test_non_finite_numbers_are_written_as_null_and_listed():
    line = encode("step", {"time": 1.0, "loss": math.nan, "losses": {"ce": math.inf, "kd": 1.5},
                           "vals": [1.0, -math.inf], "ok": 2})
    assert line.endswith("\n") and line.startswith('{"type":"step"')

    def refuse(constant):
        raise ValueError(constant)

    obj = json.loads(line, parse_constant=refuse)  # strict JSON: no NaN/Infinity tokens
    assert obj == {"type": "step", "time": 1.0, "loss": None, "losses": {"ce": None, "kd": 1.5},
                   "vals": [1.0, None], "ok": 2, "nonfinite": ["loss", "losses.ce", "vals.1"]}
    assert "nonfinite" not in json.loads(encode("step", {"loss": 1.0}))


def test_the_writer_flushes_every_line(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.write("run_started", run_id="x")
    writer.write("step", step=1, loss=math.nan)
    assert [e["type"] for e in read_events(path)] == ["run_started", "step"]  # before close
    assert read_events(path)[1]["nonfinite"] == ["loss"]
    writer.close()


def _lines(*types: str) -> str:
    return "".join(encode(t, {"time": 1.0, "i": i}) for i, t in enumerate(types))


@pytest.mark.parametrize("tail", ['{"type":"step","ti', "garbage\n", '["not", "an", "event"]\n', '{"no_type": 1}\n'])
def test_a_truncated_or_corrupt_file_is_read_up_to_the_last_good_line(tmp_path, tail):
    path = tmp_path / "events.jsonl"
    path.write_text(_lines("run_started", "step", "epoch") + tail + _lines("step"))
    assert [e["type"] for e in read_events(path)] == ["run_started", "step", "epoch"]
    tail_reader = EventTail(path)
    assert [e["type"] for e in tail_reader.poll()] == ["run_started", "step", "epoch"]
    assert tail_reader.poll() == []


def test_read_events_of_a_missing_file_is_empty(tmp_path):
    assert read_events(tmp_path / "nope.jsonl") == [] and EventTail(tmp_path / "nope.jsonl").poll() == []


def test_event_tail_returns_each_complete_line_once(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.poll() == []
    full = _lines("run_started", "step")
    with open(path, "w") as fh:
        fh.write(full[:-20])  # the second line is half written
        fh.flush()
        assert [e["type"] for e in tail.poll()] == ["run_started"]
        assert tail.poll() == []
        fh.write(full[-20:])
        fh.flush()
        assert [e["type"] for e in tail.poll()] == ["step"]
        fh.write("garbage\n" + _lines("epoch"))
    assert tail.poll() == [] and tail.broken
    assert [e["type"] for e in read_events(path)] == ["run_started", "step"]


def test_appending_after_a_crash_cut_line_keeps_the_new_events_readable(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(_lines("run_started", "step") + '{"type":"step","step":3,"lo')
    writer = EventWriter(path)  # what a resumed segment does
    writer.write("resume", segment=2, from_step=0)
    writer.close()
    assert [e["type"] for e in read_events(path)] == ["run_started", "step", "resume"]


def test_a_tail_that_saw_a_crash_cut_line_reads_what_a_resume_appends(tmp_path):
    """The app tails a run that it resumes: the line the crash cut is dropped before the resumed
    segment appends, and a tail that held the cut line's bytes read on from the wrong place, met a
    corrupt line, and stopped for good."""
    path = tmp_path / "events.jsonl"
    path.write_text(_lines("run_started", "step") + '{"type":"step","step":3,"lo')
    tail = EventTail(path)
    assert [e["type"] for e in tail.poll()] == ["run_started", "step"]
    writer = EventWriter(path)
    writer.write("resume", segment=2, from_step=0)
    writer.write("step", step=1, phase="distillation")
    assert [e["type"] for e in tail.poll()] == ["resume", "step"] and not tail.broken
    writer.close()


# -- effective(): one continuous history across segments -----------------------------------------------

def _ev(type_: str, **fields) -> dict:
    return {"type": type_, "time": 0.0, **fields}


def test_a_failure_that_a_resume_went_on_from_is_not_the_runs_failure():
    from fbt_engine.store.export import last_failure

    failed = _ev("run_failed", error="OutOfMemoryError", message="CUDA out of memory", phase="distillation")
    assert last_failure([_ev("run_started"), failed]) == failed
    resumed = [_ev("run_started"), failed, _ev("resume", segment=2, phase="distillation", from_step=4)]
    assert last_failure(resumed) is None and last_failure([*resumed, _ev("run_finished")]) is None
    assert last_failure([*resumed, failed]) == failed  # and failed again


def test_effective_drops_what_a_resume_supersedes():
    d = "distillation"
    events = [_ev("run_started"), _ev("phase", phase="teacher_training"),
              *[_ev("step", phase="teacher_training", step=s) for s in (1, 2, 3)],
              _ev("phase", phase=d),
              *[_ev("step", phase=d, step=s, epoch=1) for s in (1, 2, 3, 4)],
              _ev("epoch", phase=d, epoch=1, step=4), _ev("checkpoint", phase=d, kind="last", step=4),
              *[_ev("step", phase=d, step=s, epoch=2) for s in (5, 6)],
              _ev("phase", phase="eval", during=d, epoch=2, step=6),  # killed while evaluating
              _ev("warning", message="crash"),
              _ev("resume", segment=2, phase=d, from_step=4),
              _ev("phase", phase=d),
              *[_ev("step", phase=d, step=s, epoch=2) for s in (5, 6, 7, 8)],
              _ev("epoch", phase=d, epoch=2, step=8), _ev("run_finished")]
    eff = effective(events)
    assert [e["step"] for e in eff if e["type"] == "step" and e["phase"] == d] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [e["step"] for e in eff if e["type"] == "step" and e["phase"] == "teacher_training"] == [1, 2, 3]
    assert [e["epoch"] for e in eff if e["type"] == "epoch"] == [1, 2]
    assert [e["type"] for e in eff].count("checkpoint") == 1 and eff[-1]["type"] == "run_finished"
    assert any(e["type"] == "warning" for e in eff)  # only step/epoch/stages/checkpoint and evaluations are
    assert not any(e.get("phase") == "eval" for e in eff)  # superseded: the killed one never ended
    assert effective(events[:5]) == events[:5]


def test_effective_after_two_resumes_and_the_summary_that_folds_it():
    d = "distillation"
    events = [_ev("run_started", config=CONFIG),
              _ev("epoch", **epoch_event(1, 10, 30.0)), _ev("epoch", **epoch_event(2, 20, 90.0)),
              _ev("resume", segment=2, phase=d, from_step=10),  # epoch 2 (90 %) is gone
              _ev("epoch", **epoch_event(2, 20, 35.0)), _ev("step", phase=d, step=25),
              _ev("resume", segment=3, phase=d, from_step=20),
              _ev("step", phase=d, step=21), _ev("epoch", **epoch_event(3, 30, 33.0))]
    eff = effective(events)
    assert [(e["type"], e["step"]) for e in eff if "step" in e] == [("epoch", 10), ("epoch", 20), ("step", 21),
                                                                   ("epoch", 30)]
    s = summarize({"id": "r", "started": 1.0, "heartbeat": 2.0}, events)
    assert (s.best_top1, s.best_epoch, s.final_top1, s.epochs_done) == (35.0, 2, 33.0, 3)


def test_a_running_runs_duration_counts_to_now_less_the_pause_between_its_segments():
    """Its row is refreshed at epoch ends: `runs ls` and the app count on from there."""
    events = [{"type": "run_started", "time": 100.0, "config": CONFIG}, {"type": "step", "time": 130.0},
              {"type": "resume", "time": 1130.0, "segment": 2, "phase": "distillation", "from_step": 0},
              {"type": "step", "time": 1150.0}]
    running = summarize({"id": "r", "status": "running", "started": 100.0, "heartbeat": 1150.0}, events)
    assert (running.duration, running.paused) == (50.0, 1000.0)
    assert running.elapsed(now=1200.0) == 100.0
    assert running.as_report(now=1200.0)["duration"] == 100.0  # `runs ls --json` too
    finished = summarize({"id": "r", "status": "finished", "started": 100.0, "ended": 1150.0}, events)
    assert finished.elapsed(now=5000.0) == finished.duration == 50.0


def test_a_resume_refreshes_the_row_with_the_pause_before_it(store):
    """Else, until the next epoch ended, `runs ls` counted the pause into the resumed run's time."""
    rid = make_run(store)
    reporter = Reporter(store, rid, json_stdout=False, human=HumanOutput(quiet=True))
    now = time.time()
    reporter.emit("run_started", time=now - 1000, run_id=rid, segment=1, config=CONFIG, uses_teacher=True)
    reporter.emit("step", time=now - 990, phase="distillation", step=1, epoch=1, lr=0.1, loss=2.0, losses={})
    reporter.emit("resume", time=now, segment=2, phase="distillation", from_step=0)
    row = next(r for r in store.index.all() if r.id == rid)
    assert row.paused == pytest.approx(990.0)
    reporter.finish("finished", 0)


def test_a_resume_drops_what_it_supersedes_from_the_engines_own_summary(store):
    """Killed after epoch 2 was scored but before its checkpoint, the run replays epoch 2 from
    step 2. The replay's score is epoch 2's, not the better one of an attempt that no longer
    counts: else the run reported it as its best and kept no best weights."""
    rid = make_run(store)
    first = Reporter(store, rid, json_stdout=False, human=HumanOutput(quiet=True))
    first.emit("run_started", run_id=rid, segment=1, config=CONFIG, uses_teacher=True)
    first.emit("epoch", **epoch_event(1, 2, 50.0))
    first.emit("epoch", **epoch_event(2, 4, 80.0))
    first.finish("crashed", 1)
    resumed = Reporter(store, rid, json_stdout=False, human=HumanOutput(quiet=True))
    resumed.emit("resume", run_id=rid, segment=2, phase="distillation", from_step=2)
    assert resumed.fold.best_top1 == 50.0
    resumed.emit("epoch", **epoch_event(2, 4, 60.0))
    assert (resumed.fold.best_epoch, resumed.fold.best_top1, resumed.fold.fusion_top1) == (2, 60.0, 61.0)
    resumed.finish("finished", 0)
    row = next(r for r in store.index.all() if r.id == rid)
    assert (row.best_top1, row.best_epoch) == (60.0, 2)
    assert store.reindex() == (1, []) and next(r for r in store.index.all() if r.id == rid).best_top1 == 60.0


def test_an_index_row_from_before_the_newer_columns_reads_as_their_defaults(store, fbt_home):
    """A run that an older fbt is still running writes its row without them: no pause, no subset."""
    rid = finished_run(store)
    store.index.db.execute("UPDATE runs SET paused = NULL, subset = NULL, status = 'running', ended = NULL "
                           "WHERE id = ?", (rid,))
    row = next(r for r in store.index.all() if r.id == rid)
    assert row.paused == 0.0 and row.elapsed(row.started + 100.0) >= 100.0
    assert row.subset == 0 and row.as_report(row.started)["subset"] == 0


def test_method_parameters_are_hidden_only_where_the_runs_that_have_them_agree():
    from fbt_engine.store.export import config_diff, method_own_keys

    fbt = {"method": {"name": "fbt", "nce_tau": 0.07, "nce_dim": 256}, "run": {"name": "a"}}
    fbt_hot = {"method": {"name": "fbt", "nce_tau": 0.2, "nce_dim": 256}, "run": {"name": "b"}}
    kd = {"method": {"name": "kd", "temperature": 4.0}, "run": {"name": "c"}}
    assert method_own_keys(config_diff([fbt, kd])) == {"method.nce_tau", "method.nce_dim", "method.temperature"}
    assert method_own_keys(config_diff([fbt, fbt_hot, kd])) == {"method.nce_dim", "method.temperature"}
    assert method_own_keys(config_diff([fbt, fbt_hot])) == set()


def test_a_resume_only_supersedes_its_own_phase():
    events = [_ev("step", phase="teacher_training", step=5), _ev("step", phase="distillation", step=5),
              _ev("resume", segment=2, phase="teacher_training", from_step=2)]
    assert [e["phase"] for e in effective(events) if e["type"] == "step"] == ["distillation"]


def test_index_rows_round_trip(tmp_path):
    index = RunIndex(tmp_path / "index.sqlite")
    s = summarize({"id": "r1", "name": "n", "status": "finished", "started": 5.0, "ended": 9.0, "tags": ["a", "b"],
                   "note": "x"}, [])
    index.upsert(s)
    assert index.get("r1") == s and index.all() == [s]
    index.delete("r1")
    assert index.all() == []
    assert (tmp_path / "index.sqlite").is_file()
    assert index.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    index.close()


def test_an_index_locked_a_moment_is_waited_for_and_one_locked_for_good_is_no_damage(tmp_path, monkeypatch):
    """Processes that create the index at once meet a lock that sqlite's busy timeout does not
    wait for; it was taken for damage and the index moved aside (the app and a run it launched
    on a fresh data home)."""
    import sqlite3

    from fbt_engine.store import index as index_mod

    real_open, tries = RunIndex._open, []

    def locked_twice(self):
        tries.append(1)
        if len(tries) <= 2:
            raise sqlite3.OperationalError("database is locked")
        return real_open(self)

    monkeypatch.setattr(RunIndex, "_open", locked_twice)
    RunIndex(tmp_path / "index.sqlite").close()
    assert len(tries) == 3
    def locked(self):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(RunIndex, "_open", locked)
    monkeypatch.setattr(index_mod, "OPEN_PATIENCE_S", 0.2)
    with pytest.raises(index_mod.IndexUnavailable, match="cannot open the run index \\(database is locked\\)"):
        RunIndex(tmp_path / "index.sqlite")
    assert not list(tmp_path.glob("index.sqlite.corrupt*"))  # nothing moved aside


@pytest.mark.parametrize("damage", ["garbage", "old columns"])
def test_a_corrupt_or_outdated_index_is_rebuilt_from_the_folders(store, fbt_home, damage):
    import sqlite3

    ids = {finished_run(store, "one"), finished_run(store, "two")}
    live = sorted((r.as_dict() for r in store.index.all()), key=lambda r: r["id"])
    store.close()
    index = fbt_home / "index.sqlite"
    if damage == "garbage":
        for f in fbt_home.glob("index.sqlite*"):
            f.unlink()
        index.write_bytes(b"this is not a database" * 100)
    else:  # what an older fbt with fewer summary columns left behind
        db = sqlite3.connect(index)
        db.execute("ALTER TABLE runs DROP COLUMN note")
        db.commit()
        db.close()
    reopened = RunStore()
    make_run(reopened, name="new")  # the first writer after the damage must not hide the older runs
    assert {r.id for r in reopened.list()} == ids | {reopened.resolve("new")}
    assert sorted((r.as_dict() for r in reopened.index.all() if r.id in ids), key=lambda r: r["id"]) == live
    reopened.close()
    if damage == "garbage":
        assert (fbt_home / "index.sqlite.corrupt").read_bytes().startswith(b"this is not a database")


def test_a_broken_run_folder_does_not_take_the_history_down(store, fbt_home):
    good = finished_run(store, "good")
    broken = make_run(store, name="broken")
    (fbt_home / "runs" / broken / "meta.json").write_text("{ not json")
    half_made = fbt_home / "runs" / f".{new_run_id()}.tmp"  # a creation that crashed before its rename
    half_made.mkdir()
    (half_made / "meta.json").write_text(json.dumps({"id": half_made.name[1:-4], "status": "running"}))
    indexed, skipped = store.reindex()
    assert indexed == 1 and len(skipped) == 1 and skipped[0].startswith(f"{fbt_home / 'runs' / broken / 'meta.json'}: ")
    assert [r.id for r in store.list()] == [good]


def test_a_resume_that_changes_train_epochs_updates_the_total():
    events = [_ev("run_started", config=CONFIG), _ev("phase", phase="distillation", epochs=2),
              _ev("epoch", **epoch_event(1, 10, 30.0)), _ev("resume", segment=2, phase="distillation", from_step=10),
              _ev("phase", phase="teacher_training", epochs=9, skipped=True),
              _ev("phase", phase="distillation", epochs=3), _ev("epoch", **epoch_event(2, 20, 31.0)),
              _ev("epoch", **epoch_event(3, 30, 32.0))]
    s = summarize({"id": "r"}, events)
    assert (s.epochs_done, s.epochs_total) == (3, 3)


def test_a_resumed_runs_duration_leaves_out_the_time_between_its_segments():
    """Killed at t0 + 100 s (its last step event; the ones past its checkpoint are superseded but
    took time), resumed a day later, finished 50 s after: 150 s, not a day."""
    t0, day = 1_000_000.0, 86_400.0
    events = [
        {"type": "run_started", "time": t0, "config": {"method": {"name": "fbt"}}},
        {"type": "checkpoint", "time": t0 + 60, "phase": "distillation", "step": 10, "kind": "last"},
        {"type": "step", "time": t0 + 100, "phase": "distillation", "step": 15, "loss": 1.0},
        {"type": "resume", "time": t0 + 100 + day, "segment": 2, "phase": "distillation", "from_step": 10},
        {"type": "run_finished", "time": t0 + 150 + day},
    ]
    meta = {"id": "20250101-000000-aaaaaa", "status": "finished", "started": t0, "ended": t0 + 150 + day}
    assert summarize(meta, events).duration == pytest.approx(150.0)
    assert summarize(meta, events[:3] + events[4:]).duration == pytest.approx(150.0 + day)  # no resume: no gap
    # the resumed segment's preparation (20 s from its launch to its resume event) is the run's too
    launched = [*events[:3], {**events[3], "launched": t0 + 80 + day}, events[4]]
    assert summarize(meta, launched).duration == pytest.approx(170.0)


def test_csv_rows_put_each_epochs_validation_on_the_step_that_ended_it():
    from fbt_engine.store.export import metric_rows

    def step(n, epoch):
        return {"type": "step", "time": float(n), "phase": "distillation", "step": n, "epoch": epoch, "loss": 1.0}

    def epoch(n, at, top1):
        return {"type": "epoch", "time": at + 0.5, "phase": "distillation", "epoch": n, "step": at, "val_loss": 0.5,
                "student": {"top1": top1, "top5": 90.0}}

    # log_every 3 with 4 steps an epoch: epoch 1 ends on an unlogged step, epoch 2 on a logged one
    rows = metric_rows("r", [step(3, 1), epoch(1, 4, 10.0), step(6, 2), step(8, 2), epoch(2, 8, 20.0)])
    assert [(r["step"], r.get("loss"), r.get("student/top1")) for r in rows] == [
        (3, 1.0, None), (4, None, 10.0), (6, 1.0, None), (8, 1.0, 20.0)]
    assert rows[1]["epoch"] == 1 and rows[1]["time"] == 4.5


def test_a_claim_checks_and_marks_in_one_step_so_a_second_resume_finds_the_first(store):
    rid = make_run(store)
    store.update_meta(rid, status="interrupted", segments=1)
    me = {"pid": os.getpid(), "pid_start": process_start_ticks(os.getpid())}
    meta = store.claim(rid, **me)
    assert (meta["status"], meta["segments"]) == ("running", 2) and store.read_meta(rid) == meta
    with pytest.raises(RuntimeError, match=f"still running \\(pid {os.getpid()}\\)"):
        store.claim(rid, **me)
    store.update_meta(rid, status="finished")
    with pytest.raises(ValueError, match="already finished"):
        store.claim(rid, **me)


def test_the_last_event_time_reads_the_last_complete_line(tmp_path):
    from fbt_engine.store.events import EventWriter, last_event_time

    path = tmp_path / "events.jsonl"
    assert last_event_time(path) is None
    writer = EventWriter(path)
    writer.write("run_started", time=1.0, config={"pad": "x" * 200})
    for t in range(2, 400):
        writer.write("step", time=float(t))
    writer.close()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"type": "step", "time": 999')  # cut by a kill -9
    assert last_event_time(path) == 399.0
    assert last_event_time(path, tail_bytes=30) is None  # no whole line in so few bytes
