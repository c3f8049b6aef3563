"""`fbt presets`, `fbt paths`, `fbt doctor` and the empty history, through the real CLI."""

from __future__ import annotations

import io
import json
import os
import sys

from conftest import PRESETS, REPO, run_fbt
from helpers_engine import MLP_TO_CNN

BUILT_IN = sorted(p.relative_to(PRESETS).with_suffix("").as_posix() for p in PRESETS.rglob("*.toml"))


def _user_presets(home):
    folder = home / "config" / "presets"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text('[student]\nmodel = "resnet10_cifar"\n[method]\nname = "scratch"\n')
    (folder / "broken.toml").write_text("[run\n")
    (folder / "flat.toml").write_text('train = 3\n[student]\nmodel = "resnet10_cifar"\n[method]\nname = "scratch"\n')
    (folder / "mlp_to_cnn.toml").write_text((PRESETS / "mlp_to_cnn.toml").read_text().replace("epochs = 4", "epochs = 9"))
    return folder


def test_presets_ls_lists_built_in_and_user_presets(fbt_home):
    folder = _user_presets(fbt_home)
    result = run_fbt("presets", "ls", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {"mlp_to_cnn", "vit_to_cnn", "cnn_to_vit", "cnn_to_mlp", "cnn_to_cnn"} <= set(BUILT_IN)
    assert [r["name"] for r in rows if r["kind"] == "built-in"] == BUILT_IN
    users = {r["name"]: r for r in rows if r["kind"] == "user"}
    assert set(users) == {"mine", "broken", "flat", "mlp_to_cnn"} and rows[0]["kind"] == "user"  # user presets first
    assert users["flat"]["epochs"] is None  # `train = 3` spoils every train.* value
    assert users["mine"]["method"] == "scratch" and users["mine"]["teacher"] == "" and users["mine"]["problems"] == []
    assert users["mlp_to_cnn"]["epochs"] == 9 and users["mlp_to_cnn"]["path"] == str(folder / "mlp_to_cnn.toml")
    assert len(users["broken"]["problems"]) == 1 and "not valid TOML" in users["broken"]["problems"][0]
    builtin = next(r for r in rows if r["name"] == "mlp_to_cnn" and r["kind"] == "built-in")
    assert (builtin["teacher"], builtin["student"], builtin["method"], builtin["problems"]) == (
        "mixer_nano", "resnet10_cifar", "fbt", [])
    # the name runs the user's preset: the built-in says so, and how it still runs
    assert builtin["shadowed"] and not any(r["shadowed"] for r in rows if r is not builtin)
    assert users["broken"]["epochs"] is None and users["broken"]["method"] is None  # not the schema's defaults
    # what this machine lacks is not a problem of the preset, as in `presets validate`
    imagenet = next(r for r in rows if r["name"] == "paper/imagenet_resnet50_to_deit_t")
    assert imagenet["problems"] == [] and "data.root: no such folder" in imagenet["needs"][0]
    table = run_fbt("presets", "ls").stdout
    assert "fbt presets validate broken" in table and "mixer_nano → resnet10_cifar" in table
    broken_line = next(line for line in table.splitlines() if line.startswith("broken"))
    assert " ? " in broken_line and " 5 " not in broken_line
    assert "ok; this machine lacks what it needs: fbt presets validate paper/imagenet_resnet50_to_deit_t" in table
    assert f"shadowed: 'mlp_to_cnn' runs your preset; this one runs as {PRESETS / 'mlp_to_cnn.toml'}; ok" in table


def test_a_preset_whose_data_a_run_would_download_says_so(fbt_home, tmp_path):
    """`presets validate` and `ls` said a bare "ok" where a run first downloads its data (the internet)."""
    root = tmp_path / "cifar"
    checked = run_fbt("presets", "validate", "paper/cifar100_vit_s_to_resnet18", "--set", f'data.root="{root}"')
    assert checked.returncode == 0 and checked.stdout.startswith("ok: ")
    assert f"warning: data.root: cifar100 is not in {root}: a run downloads it there first" in checked.stderr
    assert not root.exists()
    user = fbt_home / "config" / "presets"
    user.mkdir(parents=True)
    text = (PRESETS / "paper" / "cifar100_vit_s_to_resnet18.toml").read_text(encoding="utf-8")
    (user / "fetching.toml").write_text(text.replace('root = "', f'root = "{root}" # was "'), encoding="utf-8")
    row = next(r for r in json.loads(run_fbt("presets", "ls", "--json").stdout) if r["name"] == "fetching")
    assert row["downloads"] and row["problems"] == []
    assert "ok; downloads its data first" in next(line for line in run_fbt("presets", "ls").stdout.splitlines()
                                                  if line.startswith("fetching"))


def test_presets_keys_lists_every_setting_with_its_default_and_meaning(fbt_home):
    """Every key that a preset or --set takes, each method's under its table: each one listed is one
    that `presets validate --set` accepts at its default."""
    listed = run_fbt("presets", "keys")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    entries = {line.split(" = ")[0]: line.split(" = ", 1)[1] for line in lines if not line.startswith(" ")}
    assert entries["train.precise_bn"] == "2048" and entries["method.name"] == '"fbt"'
    assert "method.fbt.nce_weight" in entries and "method.kd.temperature" in entries
    assert "    an integer: before each evaluation" in listed.stdout  # what it takes, then what it means
    sets = [arg for key, default in entries.items() if key not in ("student.model", "teacher.model")  # required
            for arg in ("--set", f"{key}={default}")]
    checked = run_fbt("presets", "validate", "mlp_to_cnn", *sets)
    assert checked.returncode == 0, checked.stderr
    some = run_fbt("presets", "keys", ".LR")  # a part of the key, in any case
    assert some.returncode == 0 and {line.split(" = ")[0] for line in some.stdout.splitlines()
                                     if not line.startswith(" ")} == {"optim.lr", "teacher.recipe.lr"}
    none = run_fbt("presets", "keys", "zzz")
    assert none.returncode == 2 and "no setting's key contains 'zzz'" in none.stderr


def test_presets_validate_every_built_in(fbt_home):
    top = sorted(PRESETS.glob("*.toml"))
    result = run_fbt("presets", "validate", *map(str, top))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok: ") == len(top) and result.stderr == ""
    paper = sorted(PRESETS.glob("*/*.toml"))
    assert len(paper) >= 15
    result = run_fbt("presets", "validate", *map(str, paper))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok: ") == len(paper)
    # what this machine lacks (ImageNet's folder) is a warning, and an error only with --strict; as
    # is where a run would download its data first (CIFAR-100's, unless it is there)
    assert all(line.startswith("warning: ") and (": data.root: no such folder: " in line or
                                                 "a run downloads it there first (needs the internet)" in line)
               for line in result.stderr.splitlines()), result.stderr
    imagenet = [str(p) for p in paper if p.name.startswith("imagenet_")]
    strict = run_fbt("presets", "validate", "--strict", *imagenet)
    assert strict.returncode == 3 and strict.stderr.count("error: ") == len(imagenet)


def test_presets_validate_by_name_and_its_exit_codes(fbt_home):
    _user_presets(fbt_home)
    assert run_fbt("presets", "validate", "mine").returncode == 0
    broken = run_fbt("presets", "validate", "broken")
    assert broken.returncode == 2 and broken.stderr.count("error: ") == 1  # only the syntax error, no echoes
    missing = run_fbt("presets", "validate", "mlp_to_cnx")
    assert missing.returncode == 2 and 'did you mean "mlp_to_cnn"?' in missing.stderr
    (fbt_home / "config" / "presets" / "still.toml").write_text(
        (PRESETS / "mlp_to_cnn.toml").read_text().replace("lr = 0.05", "lr = 0"))
    still = run_fbt("presets", "validate", "still")  # runs, so valid; but it says what it will do
    assert still.returncode == 0 and "ok: " in still.stdout
    assert still.stderr.strip().endswith(
        "still.toml: optim.lr: is 0: no weight will learn (BatchNorm's running statistics still move)")
    assert still.stderr.startswith("warning: ")


def test_presets_validate_checks_overrides_as_fbt_run_would(fbt_home):
    ok = run_fbt("presets", "validate", "mlp_to_cnn", "--set", "train.epochs=2")
    assert ok.returncode == 0 and "ok: " in ok.stdout and "with train.epochs=2" in ok.stdout
    bad = run_fbt("presets", "validate", "mlp_to_cnn", "cnn_to_vit", "--set", "train.epochs=0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    # each preset's error says which preset it met
    assert [line.rpartition("/")[2] for line in bad.stderr.splitlines()] == ["mlp_to_cnn.toml)", "cnn_to_vit.toml)"]
    assert all(line.startswith("error: --set: train.epochs: expected a value ≥ 1, got 0 (with ")
               for line in bad.stderr.splitlines())


def test_paths_follow_fbt_home(fbt_home):
    result = run_fbt("paths")
    assert result.returncode == 0
    paths = {line[:17].rstrip(): line[18:] for line in result.stdout.splitlines()}  # "label (padded) path"
    assert paths["data"] == str(fbt_home) and paths["runs"] == str(fbt_home / "runs")
    assert paths["index"] == str(fbt_home / "index.sqlite") and paths["teacher cache"] == str(fbt_home / "teachers")
    assert paths["compile cache"] == str(fbt_home / "compile-cache")
    assert paths["user presets"] == str(fbt_home / "config" / "presets")
    assert paths["built-in presets"] == str(REPO / "presets")


def test_doctor_reports_the_environment(fbt_home):
    result = run_fbt("doctor", "--json")
    assert result.returncode == 0, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    for name in ("python", "torch", "timm", "torchvision", "textual", "rich", "fashion_mnist_5k", "data home", "runs",
                 "teacher cache", "compile cache", "disk"):
        assert name in checks, name
    assert checks["torch"]["state"] == "ok" and checks["fashion_mnist_5k"]["state"] == "ok"
    assert checks["cifar10"]["state"] == "info"  # not ✓: nothing says it is here (doctor --preset checks a root)
    assert "cuda" in checks or "cuda:0" in checks
    assert checks["data home"]["detail"].startswith(str(fbt_home)) and "FBT_HOME" in checks["data home"]["detail"]
    assert checks["runs"]["detail"] == f"0 in {fbt_home / 'runs'}"
    human = run_fbt("doctor")
    assert human.returncode == 0 and "fashion_mnist_5k" in human.stdout and "Traceback" not in human.stderr
    # a fresh machine: not even the data home's parent folder exists yet (a traceback before)
    fresh = run_fbt("doctor", "--json", home=fbt_home / "not" / "yet")
    checks = {c["name"]: c for c in json.loads(fresh.stdout)}
    assert fresh.returncode == 0 and checks["data home"]["state"] == "ok" and checks["disk"]["state"] in ("ok", "warn")


def test_an_empty_history(fbt_home):
    assert "no runs yet" in run_fbt("runs", "ls").stdout
    assert json.loads(run_fbt("runs", "ls", "--json").stdout) == []
    assert "the trash is empty" in run_fbt("runs", "purge").stdout
    shown = run_fbt("runs", "show", "last")
    assert shown.returncode == 2 and "no runs yet" in shown.stderr
    assert run_fbt("compare", "last", "last").returncode == 2
    assert run_fbt("presets", "validate", MLP_TO_CNN).returncode == 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _table(monkeypatch, columns: int | None) -> list[str]:
    """`fbt runs ls`'s table of two runs, on a terminal `columns` wide, or piped (None)."""
    from fbt_engine import cli

    out = _Terminal() if columns else io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(os, "get_terminal_size", lambda *a: os.terminal_size((columns or 80, 24)))
    long_pair = "vit_small_patch16_224.augreg_in21k_ft_in1k → resnet18_cifar"
    cli._print_table(["id", "name", "status", "teacher → student", "best", "started"],
                     [["20261127-001242-cwst42", "a", "finished", long_pair, "67.20", "2026-11-27 00:12"],
                      ["20261127-001243-xxxxxx", "b", "failed", "mixer_nano → resnet10_cifar", "35.00",
                       "2026-11-27 00:13"]],
                     right=frozenset({4}), flexible=frozenset({1, 3}), optional=(5,))
    return out.getvalue().splitlines()


def test_tables_fit_a_terminal_by_clipping_names_then_leaving_columns_out(monkeypatch):
    piped = _table(monkeypatch, None)
    assert "vit_small_patch16_224.augreg_in21k_ft_in1k → resnet18_cifar" in piped[1]  # whole, for grep
    assert piped[1].endswith("2026-11-27 00:12") and piped[2].split()[-3:] == ["35.00", "2026-11-27", "00:13"]
    wide = _table(monkeypatch, 100)
    assert all(len(line) <= 100 for line in wide) and "2026-11-27 00:12" in wide[1]  # the pair gave way
    assert "vit_small_patch16_224.augreg_in21k…  67.20" in wide[1] and len(wide[1]) == 100
    assert wide[1].startswith("20261127-001242-cwst42  a ")
    narrow = _table(monkeypatch, 60)
    assert all(len(line) <= 60 for line in narrow) and "started" not in narrow[0]  # left out, not the id
    left_out = _table(monkeypatch, 80)  # the start left out: its room goes to the pair, which kept 16 cells
    assert "started" not in left_out[0] and len(left_out[1]) == 80 and "vit_small_patch16_224.augreg_in" in left_out[1]
    assert narrow[1].startswith("20261127-001242-cwst42") and narrow[1].endswith("67.20")


def test_a_best_accuracy_before_any_evaluation_is_one_dash():
    """ls, History and Compare showed "– @–" for a run not yet evaluated."""
    from fbt_engine.formats import best_at

    assert best_at(None, None) == "–" and best_at(67.2, 3) == "67.20 @3" and best_at(50.0, None) == "50.00 @–"
