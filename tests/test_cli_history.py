"""History, comparison and export through the real CLI, on two real finished runs made once for
this module (tests that change the history work on a copy of it)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tomllib

import pytest

from conftest import PRESETS, run_fbt, tiny_sets
from fbt_engine.store.index import RunIndex
from helpers_engine import MLP_TO_CNN, fbt_json, file_events, home_with_teacher, meta, stdout_events

DIFFERING = {"run.name", "run.tags", "run.device", "optim.lr", "train.log_every"}


@pytest.fixture(scope="module")
def history(tmp_path_factory, teacher_cache):
    """Two finished FBT runs, alpha then beta, that differ in exactly the keys in DIFFERING."""
    home = home_with_teacher(tmp_path_factory, teacher_cache, "history")
    alpha = run_fbt("run", MLP_TO_CNN, *tiny_sets(), "--name", "alpha", "--tag", "keep", "--json", home=home)
    assert alpha.returncode == 0, alpha.stderr
    beta = run_fbt("run", MLP_TO_CNN, *tiny_sets("optim.lr=0.02", "train.log_every=3"), "--name", "beta",
                   "--device", "cpu", home=home)
    assert beta.returncode == 0, beta.stderr
    events = stdout_events(alpha.stdout)
    ids = {"alpha": events[0]["run_id"]}
    ids["beta"] = next(p.name for p in (home / "runs").iterdir() if p.name != ids["alpha"])
    return {"home": home, "ids": ids, "alpha_events": events, "alpha_stderr": alpha.stderr, "beta_stdout": beta.stdout}


@pytest.fixture
def copied(history, fbt_home):
    """This test's own copy of the module's history (FBT_HOME already points at it)."""
    shutil.copytree(history["home"], fbt_home, dirs_exist_ok=True)
    return fbt_home


def cli(history, *args: str):
    return run_fbt(*args, home=history["home"])


# -- the run itself ------------------------------------------------------------------------------------

def test_json_stream_run_folder_and_human_output(history):
    home, rid, events = history["home"], history["ids"]["alpha"], history["alpha_events"]
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert {"phase", "step", "epoch", "stages", "checkpoint"} <= set(types)
    assert all(list(e)[:2] == ["type", "time"] for e in events)
    started = events[0]
    assert {"run_id", "segment", "config", "device", "params", "data", "uses_teacher", "steps_per_epoch",
            "loss_terms", "versions"} <= set(started)
    assert started["params"]["student"] > 0 and started["params"]["teacher"] > 0 and started["uses_teacher"]
    assert started["data"] == {"name": "fashion_mnist_5k", "classes": 10, "img_size": 28, "train_images": 500,
                               "val_images": 100}
    for step in (e for e in events if e["type"] == "step"):
        assert list(step["losses"]) == started["loss_terms"]
        assert step["loss"] == pytest.approx(sum(step["losses"].values()), rel=1e-4)
    epoch = next(e for e in events if e["type"] == "epoch" and e["phase"] == "distillation")
    assert {"student", "teacher", "fusion", "val_loss", "train_loss", "epoch_time"} <= set(epoch)
    run_dir = home / "runs" / rid
    assert file_events(run_dir) == events  # --json prints exactly what the file holds
    assert (run_dir / "preset.toml").read_bytes() == (PRESETS / "mlp_to_cnn.toml").read_bytes()
    config = tomllib.loads((run_dir / "config.toml").read_text())
    assert config == started["config"] and config["run"]["name"] == "alpha" and config["data"]["subset"] == 500
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "student.safetensors", "student_best.safetensors"):
        assert (run_dir / name).is_file(), name
    m = meta(run_dir)
    assert (m["status"], m["exit_code"], m["segments"], m["tags"], m["name"]) == ("finished", 0, 1, ["keep"], "alpha")
    log = (run_dir / "stdout.log").read_text()
    assert "finished: best top-1" in log and "[distillation] epoch 1/1" in log
    assert "[distillation] epoch 1/1" in history["alpha_stderr"]  # one line per epoch when not a TTY
    assert history["beta_stdout"] == ""  # without --json, stdout stays empty


# -- runs ls / show ------------------------------------------------------------------------------------

def test_runs_ls(history):
    rows = fbt_json("runs", "ls", "--json", home=history["home"])
    assert [r["name"] for r in rows] == ["beta", "alpha"]  # newest first
    for r in rows:
        assert r["status"] == "finished" and r["method"] == "fbt" and r["pair"] == "mixer_nano → resnet10_cifar"
        assert r["best_top1"] is not None and r["epochs_done"] == r["epochs_total"] == 1 and r["duration"] > 0
        assert r["subset"] == 500 and r["data"] == "fashion_mnist_5k (subset 500)"
    assert [r["name"] for r in fbt_json("runs", "ls", "--json", "--tag", "keep", home=history["home"])] == ["alpha"]
    assert fbt_json("runs", "ls", "--json", "--status", "failed", home=history["home"]) == []
    assert cli(history, "runs", "ls", "--status", "failed", "--tag", "keep").stdout.strip() == (
        "no runs match --status failed --tag keep")  # not "no runs yet"
    table = cli(history, "runs", "ls").stdout
    for rid in history["ids"].values():
        assert rid in table  # whole ids and statuses, even with stdout piped
    assert table.count("finished") == 2 and "mixer_nano → resnet10_cifar" in table
    assert table.count("fashion_mnist_5k (subset 500)") == 2  # a slice's accuracy is on a slice


@pytest.mark.parametrize("ref", ["alpha", "last", "id", "prefix"])
def test_runs_show_resolves_every_kind_of_reference(history, ref):
    ids = history["ids"]
    expected = ids["beta"] if ref == "last" else ids["alpha"]
    value = {"id": ids["alpha"], "prefix": ids["alpha"][:-2], "alpha": "alpha", "last": "last"}[ref]
    shown = fbt_json("runs", "show", value, "--json", home=history["home"])
    assert shown["summary"]["id"] == expected and shown["meta"]["status"] == "finished"
    assert shown["config"]["run"]["name"] == ("beta" if ref == "last" else "alpha")
    assert [(e["phase"], e["epoch"]) for e in shown["epochs"]] == [("distillation", 1)]  # the teacher came cached
    human = cli(history, "runs", "show", value).stdout
    assert expected in human and "finished" in human and "best top-1" in human and "best fusion" in human
    assert "final: student.safetensors · best (epoch 1): student_best.safetensors" in human
    assert "fashion_mnist_5k (500 training images, 100 validation)" in human  # data.subset=500 says so
    epoch = shown["epochs"][-1]
    row = human.splitlines()[-1].split()  # the epochs table's last row
    assert row[:5] == ["distillation", "1", f"{epoch['train_loss']:.4f}", f"{epoch['val_loss']:.4f}",
                       f"{epoch['student/top1']:.2f}"]


def test_ambiguous_and_unknown_references(history):
    a, b = history["ids"]["alpha"], history["ids"]["beta"]
    common = next(a[:i] for i in range(len(a), 0, -1) if b.startswith(a[:i]))
    result = cli(history, "runs", "show", common)
    assert result.returncode == 2 and f'"{common}" matches 2 runs' in result.stderr and "Traceback" not in result.stderr
    result = cli(history, "export", "zzz", "--format", "csv")
    assert result.returncode == 2 and 'no run matches "zzz"' in result.stderr


# -- compare -------------------------------------------------------------------------------------------

def test_compare_csv_has_only_the_differing_keys(history):
    result = cli(history, "compare", "alpha", "beta", "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["run"] for r in rows] == [history["ids"]["alpha"], history["ids"]["beta"]]
    config_columns = {c for c in rows[0] if "." in c}
    assert config_columns == DIFFERING
    assert [(r["optim.lr"], r["train.log_every"], r["run.device"]) for r in rows] == [("0.05", "2", "auto"),
                                                                                     ("0.02", "3", "cpu")]
    assert json.loads(rows[0]["run.tags"]) == ["keep"] and json.loads(rows[1]["run.tags"]) == []
    assert all(r["status"] == "finished" and r["best_top1"] for r in rows)


def test_compare_table(history):
    result = cli(history, "compare", "alpha", "beta")
    assert result.returncode == 0
    header, *rows = result.stdout.split("\n\n")[0].splitlines()[1:]
    assert header.split()[:3] == ["id", "name", "method"]
    assert [row.split()[:2] for row in rows] == [[history["ids"]["alpha"], "alpha"], [history["ids"]["beta"], "beta"]]
    for key in DIFFERING:
        assert key in result.stdout
    assert "train.epochs" not in result.stdout and "data.subset" not in result.stdout
    assert "only some of these methods" not in result.stdout


def test_compare_takes_two_different_runs(history):
    alpha = history["ids"]["alpha"]
    same = cli(history, "compare", "alpha", alpha[:-2])
    assert same.returncode == 2 and f"alpha and {alpha[:-2]} are the same run, {alpha}" in same.stderr
    alone = cli(history, "compare", "beta")
    assert alone.returncode == 2 and "two runs or more" in alone.stderr


def test_compare_twins_and_runs_of_different_methods(history, copied):
    alpha = copied / "runs" / history["ids"]["alpha"]
    twin = run_fbt("run", MLP_TO_CNN, *tiny_sets(), "--name", "alpha", "--tag", "keep", "--json")
    assert twin.returncode == 0, twin.stderr
    same = run_fbt("compare", alpha.name, stdout_events(twin.stdout)[0]["run_id"])
    assert "the configs are identical" in same.stdout
    kd = run_fbt("run", MLP_TO_CNN, *tiny_sets("method.name='kd'"), "--name", "kd")
    assert kd.returncode == 0, kd.stderr
    result = run_fbt("compare", alpha.name, "kd")
    keys = {line.split()[0] for line in result.stdout.splitlines() if line.startswith(("method.", "run."))}
    # fbt's own parameters and kd's temperature are not differences anyone chose: counted, not listed
    assert keys == {"method.name", "run.name", "run.tags"}, result.stdout
    fbt_only = tomllib.loads((alpha / "config.toml").read_text())["method"].keys() - {"name", "ce_weight"}
    assert f"and {len(fbt_only) + 2} parameters that only some of these methods have" in result.stdout
    every = run_fbt("compare", alpha.name, "kd", "--all").stdout
    assert {"method.nce_tau", "method.temperature"} <= {line.split()[0] for line in every.splitlines() if line}
    # the CSV holds what the table shows, in the table's words (true, not Python's True)
    as_csv = run_fbt("compare", alpha.name, "kd", "--csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {c for c in rows[0] if "." in c} == {"method.name", "run.name", "run.tags"}
    assert f"note: left out {len(fbt_only) + 2} parameters" in as_csv.stderr  # said, outside the file
    rows = list(csv.DictReader(io.StringIO(run_fbt("compare", alpha.name, "kd", "--csv", "--all").stdout)))
    assert (rows[0]["method.use_nce"], rows[1]["method.use_nce"]) == ("true", "")


# -- export --------------------------------------------------------------------------------------------

def test_export_csv_has_every_logged_step_and_each_epochs_validation(history, tmp_path):
    events = history["alpha_events"]
    step_events = [e for e in events if e["type"] == "step"]
    epoch_events = [e for e in events if e["type"] == "epoch"]
    out = tmp_path / "alpha.csv"
    result = cli(history, "export", "alpha", "--format", "csv", "-o", str(out))
    assert result.returncode == 0 and result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    by_step = {(r["phase"], int(r["step"])): r for r in rows}
    assert len(by_step) == len(rows)
    for ev in step_events:
        row = by_step[ev["phase"], ev["step"]]
        assert (row["run"], int(row["epoch"])) == (history["ids"]["alpha"], ev["epoch"])
        assert float(row["loss"]) == pytest.approx(ev["loss"])
        for term, value in ev["losses"].items():
            assert float(row[f"loss/{term}"]) == pytest.approx(value)
    # each epoch's validation sits on the row of the step that ended it, and only there
    assert epoch_events and [(r["phase"], int(r["step"])) for r in rows if r["val_loss"]] == [
        (e["phase"], e["step"]) for e in epoch_events]
    for ev in epoch_events:
        row = by_step[ev["phase"], ev["step"]]
        assert float(row["val_loss"]) == pytest.approx(ev["val_loss"])
        assert float(row["train_loss"]) == pytest.approx(ev["train_loss"])
        for who in ("student", "teacher", "fusion"):
            assert (float(row[f"{who}/top1"]) if row[f"{who}/top1"] else None) == (
                pytest.approx(ev[who]["top1"]) if who in ev else None)
    header = out.read_text().splitlines()[0].split(",")
    assert header[:8] == ["run", "phase", "step", "epoch", "time", "lr", "loss", "img_s"]
    assert max(header.index(c) for c in header if c.startswith("loss/")) < header.index("val_loss")
    beta_steps = [e for e in file_events(history["home"] / "runs" / history["ids"]["beta"]) if e["type"] == "step"]
    both = list(csv.DictReader(io.StringIO(cli(history, "export", "alpha", "beta", "--format", "csv").stdout)))
    assert [int(r["step"]) for r in both if r["loss"]] == [e["step"] for e in step_events + beta_steps]
    assert sum(bool(r["val_loss"]) for r in both) == len(epoch_events) + sum(
        e["type"] == "epoch" for e in file_events(history["home"] / "runs" / history["ids"]["beta"]))


def test_export_json_jsonl_and_markdown(history):
    events = history["alpha_events"]
    [doc] = json.loads(cli(history, "export", "alpha", "--format", "json").stdout)  # a list, even of one run
    assert doc["summary"]["id"] == history["ids"]["alpha"] and doc["config"]["run"]["name"] == "alpha"
    assert len(doc["steps"]) == sum(e["type"] == "step" for e in events)
    assert len(doc["stages"]) == sum(e["type"] == "stages" for e in events) >= 1
    assert len(json.loads(cli(history, "export", "alpha", "beta", "--format", "json").stdout)) == 2
    lines = cli(history, "export", "alpha", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [{"run": history["ids"]["alpha"], **e} for e in events]
    assert all(line.startswith('{"type":') for line in lines)  # as in events.jsonl
    md = cli(history, "export", "alpha", "beta", "--format", "md").stdout
    assert md.startswith("| run | name | method |") and md.count(history["ids"]["alpha"]) >= 2
    assert "| distillation | 1 |" in md
    assert "fbt 0." in run_fbt("--version").stdout
    missing = cli(history, "export", "alpha")
    assert missing.returncode == 2 and "--format" in missing.stderr
    unwritable = cli(history, "export", "alpha", "--format", "csv", "-o", "/proc/no/such/file.csv")
    assert unwritable.returncode in (2, 3) and "Traceback" not in unwritable.stderr and "file.csv" in unwritable.stderr


def test_export_student_loads_into_timm(history, tmp_path):
    target = tmp_path / "out" / "student.safetensors"
    missing = cli(history, "export", "alpha", "--student", str(target))
    assert missing.returncode == 3 and f"no such folder {target.parent}" in missing.stderr
    assert not target.parent.exists()  # a mistyped folder is not made
    target.parent.mkdir()
    result = cli(history, "export", "alpha", "--student", str(target))
    assert result.returncode == 0, result.stderr
    # said on stderr, as the metrics' exports say it: stdout is data (-o -)
    assert (result.stdout, result.stderr) == ("", f"wrote {target} and {target.with_suffix('.toml')}\n")
    sidecar = tomllib.loads(target.with_suffix(".toml").read_text())
    assert sidecar["model"]["name"] == "resnet10_cifar" and sidecar["model"]["num_classes"] == 10
    assert sidecar["model"]["img_size"] == 28 and sidecar["source"]["run"] == history["ids"]["alpha"]
    assert sidecar["config"]["student"]["model"] == "resnet10_cifar"
    assert sidecar["model"]["kwargs"] == {}  # a CNN takes no img_size
    assert sidecar["model"]["class_names"][:2] == ["T-shirt/top", "Trouser"]  # the logits' order
    assert sidecar["source"]["val_images"] == history["alpha_events"][0]["data"]["val_images"]
    folder = tmp_path / "into"
    folder.mkdir()
    assert cli(history, "export", "alpha", "--student", str(folder)).returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == [f"{history['ids']['alpha']}.{ext}" for ext in ("safetensors", "toml")]
    both = cli(history, "export", "alpha", "--student", str(tmp_path / "x.safetensors"), "--format", "csv")
    assert both.returncode == 2 and "one at a time" in both.stderr
    assert cli(history, "export", "alpha", "--student", str(folder), "--weights", "best").returncode == 0
    best = tomllib.loads((folder / f"{history['ids']['alpha']}_best.toml").read_text())["source"]
    assert (best["weights"], best["epoch"]) == ("best", history["alpha_events"][-1]["best"]["epoch"])
    assert sidecar["source"]["weights"] == "final" and "epoch" not in sidecar["source"]
    empty = cli(history, "export", "alpha", "--student", "")
    assert empty.returncode == 2 and "export --student: give a file" in empty.stderr
    pickle = cli(history, "export", "alpha", "--student", str(tmp_path / "s.pt"))  # it wrote s.safetensors
    assert pickle.returncode == 2 and f"not a torch pickle: give {tmp_path / 's.safetensors'}" in pickle.stderr
    assert not (tmp_path / "s.safetensors").exists()
    alone = cli(history, "export", "alpha", "--weights", "best", "--format", "csv")
    assert alone.returncode == 2 and "give --student" in alone.stderr

    import timm
    import torch
    from safetensors.torch import load_file

    import fbt_engine.models.small  # noqa: F401  (registers fbt's models with timm)

    model = timm.create_model(sidecar["model"]["name"], num_classes=sidecar["model"]["num_classes"],
                              **sidecar["model"].get("kwargs", {}))
    state = load_file(str(target))
    model.load_state_dict(state)  # strict: every key, every shape
    original = load_file(str(history["home"] / "runs" / history["ids"]["alpha"] / "student.safetensors"))
    assert state.keys() == original.keys() and all(torch.equal(state[k], original[k]) for k in state)
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 10)


# -- changing the history (on a copy) ------------------------------------------------------------------

def test_tag_note_rm_restore_purge(copied):
    for bad in ("", "a,b", " x", "two words"):
        refused = run_fbt("runs", "tag", "beta", bad)
        assert refused.returncode == 2 and ("a tag cannot" in refused.stderr or "a tag is one word" in refused.stderr)
    tagged = run_fbt("runs", "tag", "beta", "best")
    assert tagged.returncode == 0 and "tags best" in tagged.stdout
    assert [r["name"] for r in fbt_json("runs", "ls", "--json", "--tag", "best")] == ["beta"]
    run_fbt("runs", "tag", "beta", "best", "--remove")
    assert fbt_json("runs", "ls", "--json", "--tag", "best") == []
    assert run_fbt("runs", "note", "alpha", "").stdout.strip().endswith("note cleared")
    folder = copied / "runs" / fbt_json("runs", "show", "beta", "--json")["summary"]["id"]
    renamed = {**json.loads((folder / "meta.json").read_text()), "name": "a|b"}
    (folder / "meta.json").write_text(json.dumps(renamed))
    run_fbt("runs", "reindex")
    assert "| a\\|b |" in run_fbt("export", "a|b", "--format", "md").stdout  # a "|" ended the cell
    renamed["name"] = "beta"
    (folder / "meta.json").write_text(json.dumps(renamed))
    run_fbt("runs", "reindex")
    assert run_fbt("runs", "note", "alpha", "baseline; lr 0.05").returncode == 0
    assert fbt_json("runs", "show", "alpha", "--json")["meta"]["note"] == "baseline; lr 0.05"
    assert "baseline; lr 0.05" in run_fbt("runs", "show", "alpha").stdout
    assert run_fbt("runs", "tag", "alpha", "[wip]").returncode == 0  # brackets are text, not rich markup
    assert "[wip]" in run_fbt("runs", "ls").stdout
    # the views that show the config show its tags as they are now, not as the run started
    now = fbt_json("runs", "show", "alpha", "--json")
    assert "[wip]" in now["meta"]["tags"] and now["config"]["run"]["tags"] == now["meta"]["tags"]
    assert "[wip]" in run_fbt("compare", "alpha", "beta").stdout
    run_fbt("runs", "note", "alpha", "[bold]lr[/] 0.05")
    assert "[bold]lr[/] 0.05" in run_fbt("runs", "show", "alpha").stdout
    run_fbt("runs", "note", "alpha", "first line\nsecond line")  # the second under the first, not at column 0
    assert "  note           first line\n                 second line\n" in run_fbt("runs", "show", "alpha").stdout

    untagged = run_fbt("runs", "tag", "beta", "never", "--remove")
    assert untagged.returncode == 0 and "had no tag never" in untagged.stdout
    empty = run_fbt("runs", "show", "")
    assert empty.returncode == 2 and "an empty run reference" in empty.stderr

    rid = fbt_json("runs", "show", "alpha", "--json")["summary"]["id"]
    half = run_fbt("runs", "rm", "alpha", "nosuchrun")  # all or none
    assert half.returncode == 2 and 'no run matches "nosuchrun"' in half.stderr and (copied / "runs" / rid).is_dir()
    removed = run_fbt("runs", "rm", "alpha", rid[:-1])  # one run, named twice: moved once
    assert removed.returncode == 0 and (copied / "trash" / rid).is_dir() and not (copied / "runs" / rid).exists()
    assert removed.stdout.count("moved") == 1 and "Traceback" not in removed.stderr
    assert [r["name"] for r in fbt_json("runs", "ls", "--json")] == ["beta"]
    assert rid in run_fbt("runs", "ls", "--trash").stdout
    assert run_fbt("export", rid, "--format", "csv").returncode == 0  # a trashed run can still be read
    assert "finished (trash)" in next(line for line in run_fbt("compare", rid, "beta").stdout.splitlines()
                                      if line.startswith(rid))  # and compared, which says where it is
    for command in (["runs", "note", "alpha", "x"], ["runs", "tag", rid, "x"], ["runs", "close", "alpha"]):
        in_trash = run_fbt(*command)  # the commands that change a run say where it is
        assert in_trash.returncode == 2 and f'run {rid} ("{command[2]}") is in the trash: fbt runs restore {rid}' \
            in in_trash.stderr, in_trash.stderr
    assert f"status         finished; in the trash (fbt runs restore {rid})" in run_fbt("runs", "show", rid).stdout
    beta = fbt_json("runs", "show", "beta", "--json")["summary"]["id"]
    not_trashed = run_fbt("runs", "restore", "beta")  # it said "no run in the trash matches"
    assert not_trashed.returncode == 2 and f'run {beta} ("beta") is not in the trash' in not_trashed.stderr
    assert "Traceback" not in not_trashed.stderr
    assert run_fbt("runs", "restore", "last").returncode == 0 and (copied / "runs" / rid).is_dir()  # newest trashed
    assert len(fbt_json("runs", "ls", "--json")) == 2

    run_fbt("runs", "rm", "alpha")
    refused = run_fbt("runs", "purge")
    assert refused.returncode == 2 and "--yes" in refused.stderr and (copied / "trash" / rid).is_dir()
    purged = run_fbt("runs", "purge", "--yes")
    assert purged.returncode == 0 and "deleted 1 run" in purged.stdout
    assert not (copied / "trash" / rid).exists()
    assert [r["name"] for r in fbt_json("runs", "ls", "--json")] == ["beta"]
    assert run_fbt("runs", "show", rid).returncode == 2


def test_reindex_rebuilds_the_live_index_exactly(copied):
    def rows():
        index = RunIndex(copied / "index.sqlite")
        try:
            return [r.as_dict() for r in index.all(include_trashed=True)]
        finally:
            index.close()

    run_fbt("runs", "tag", "alpha", "x")
    live = rows()
    assert len(live) == 2
    result = run_fbt("runs", "reindex")
    assert result.returncode == 0 and "indexed 2 runs" in result.stdout
    assert rows() == live
    for f in copied.glob("index.sqlite*"):
        f.unlink()
    assert [r["id"] for r in fbt_json("runs", "ls", "--json")] == [r["id"] for r in live]  # rebuilt on demand
    assert rows() == live


def test_reindex_names_the_run_folders_it_leaves_out(copied):
    """A run whose meta.json was damaged vanished from every list without a word."""
    broken = next((copied / "runs").iterdir()) / "meta.json"
    broken.write_text("{ not json")
    result = run_fbt("runs", "reindex")
    assert result.returncode == 0 and "indexed 1 run" in result.stdout
    assert f"warning: left out {broken}: Expecting property name" in result.stderr
    shown = run_fbt("runs", "show", broken.parent.name)  # by its full id, it said "no run matches"
    assert shown.returncode == 2 and f"{broken.parent}: a run folder without a readable meta.json" in shown.stderr
    broken.unlink()  # a meta.json gone left the folder out of reindex's list too
    result = run_fbt("runs", "reindex")
    assert f"warning: left out {broken.parent}: a run folder without a meta.json" in result.stderr


def test_an_index_that_cannot_be_opened_is_an_error_not_a_fresh_start(copied):
    """A read-only data home's index (or one locked too long) was taken for a damaged one: moved
    aside, which failed with a traceback where the home is read-only."""
    for f in copied.glob("index.sqlite*"):
        f.unlink()
    (copied / "index.sqlite").mkdir()  # what sqlite cannot open, as it cannot a read-only home's
    result = run_fbt("runs", "ls")
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {copied / 'index.sqlite'}: cannot open the run index (unable to open database file)" in result.stderr


def test_the_sidecar_rebuilds_a_student_that_was_told_its_image_size(fbt_home, tmp_path, monkeypatch):
    """A ViT trained at another size than its default (deit_nano at 32 px, built for 28) has
    position embeddings of that size: the sidecar's kwargs say img_size, where fbt passed it, so
    its load recipe works as written; a CNN, which takes no img_size, is not told one."""
    import timm
    from safetensors.torch import load_file

    import fbt_engine.models.small  # noqa: F401  (registers fbt's models with timm)

    result = run_fbt("run", MLP_TO_CNN, *tiny_sets('method.name="scratch"', 'student.model="deit_nano"',
                                                    "data.img_size=32"))
    assert result.returncode == 0, result.stderr
    target = tmp_path / "vit.safetensors"
    assert run_fbt("export", "last", "--student", str(target)).returncode == 0
    sidecar = tomllib.loads(target.with_suffix(".toml").read_text())
    model = sidecar["model"]
    assert model["kwargs"] == {"img_size": 32}
    # and what a user must do to an image first, as fbt's evaluation did
    assert sidecar["input"] == {
        "img_size": 32, "resize": "bilinear to 32 × 32 px", "scale": "pixel values / 255, then (x − mean) / std",
        "mean": [0.286], "std": [0.353], "image_channels": 1, "model_channels": 3,
        "grayscale": "repeated to the model's 3 channels"}
    timm.create_model(model["name"], num_classes=model["num_classes"], **model["kwargs"]).load_state_dict(
        load_file(str(target)))  # strict
    recipe: dict = {}
    monkeypatch.chdir(tmp_path)  # the recipe runs as written beside the weights
    exec(sidecar["load"]["python"], recipe)
    assert not recipe["m"].training and recipe["m"].pos_embed.shape[1] == 1 + (32 // recipe["m"].patch_embed.patch_size[0]) ** 2


def test_a_timm_students_load_recipe_needs_no_fbt(fbt_home, tmp_path, monkeypatch):
    """Only fbt's own models need fbt_engine to load: a timm student goes wherever timm does."""
    result = run_fbt("run", MLP_TO_CNN, *tiny_sets('method.name="scratch"', 'student.model="resnet18"'))
    assert result.returncode == 0, result.stderr
    target = tmp_path / "r18.safetensors"
    assert run_fbt("export", "last", "--student", str(target)).returncode == 0
    recipe = tomllib.loads(target.with_suffix(".toml").read_text())["load"]["python"]
    assert "fbt_engine" not in recipe
    names: dict = {}
    monkeypatch.chdir(tmp_path)
    exec(recipe, names)
    assert not names["m"].training


def test_an_export_that_cannot_be_written_says_so_and_writes_nothing(history, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "w.toml").mkdir()  # where the sidecar goes
    result = cli(history, "export", "alpha", "--student", str(out / "w.safetensors"))
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert f"{out / 'w.toml'}: cannot write: a folder is in the way" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["w.toml"]  # no weights without their sidecar

    (out / "w.toml").rmdir()  # an earlier export's pair, then a new one whose sidecar cannot go there
    assert cli(history, "export", "alpha", "--student", str(out / "w.safetensors")).returncode == 0
    alpha = (out / "w.safetensors").read_bytes()
    (out / "w.toml").unlink()
    (out / "w.toml").mkdir()
    assert cli(history, "export", "beta", "--student", str(out / "w.safetensors")).returncode == 3
    assert (out / "w.safetensors").read_bytes() == alpha  # not beta's weights under no sidecar at all
    assert sorted(p.name for p in out.iterdir()) == ["w.safetensors", "w.toml"]  # nothing staged is left


@pytest.mark.parametrize("args", [["runs", "show", "alpha"], ["runs", "ls"], ["compare", "alpha", "beta"],
                                  ["runs", "ls", "--json"], ["presets", "ls"]])
def test_a_reader_that_goes_away_is_no_failure(history, args):
    """`fbt runs show alpha | head -1`: the pipe's reader has gone before fbt writes, which is not
    a failed run (exit 1 means one); exit 0, and no traceback or "Exception ignored" on stderr."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.Popen([sys.executable, "-m", "fbt_engine", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=REPO, env={**os.environ, "FBT_HOME": str(history["home"])})
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and not stderr, stderr


def test_a_student_file_that_is_not_safetensors_is_a_clean_error(copied, tmp_path):
    """A damaged weights file: an error that names it (exit 3), not a traceback."""
    weights = next((copied / "runs").iterdir()) / "student.safetensors"
    weights.write_bytes(b"not weights")
    result = run_fbt("export", weights.parent.name, "--student", str(tmp_path / "s.safetensors"))
    assert result.returncode == 3 and "cannot be read as safetensors weights" in result.stderr
    assert "Traceback" not in result.stderr
