"""The preset validator: every problem of a file at once, each naming its source, dotted key,
expectation and a "did you mean"; `--set` parsing; the torch-free model-name scanner."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w

from conftest import PRESETS
from fbt_engine.config.presets import PresetError, build_config, collect, parse_overrides, parse_value, resolve
from fbt_engine.models.names import is_known_model, known_model_names, own_model_names
from helpers_engine import MLP_TO_CNN

BUILT_IN = sorted(PRESETS.rglob("*.toml"))


def problems_of(text: str, tmp_path, *sets: str) -> dict[str, str]:
    """{dotted key: "source: key: message"} of a preset written to a file."""
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    resolved = collect(path, sets)
    out = {p.key: str(p) for p in resolved.problems}
    assert len(out) == len(resolved.problems), resolved.problems  # one problem per key
    return out


GOOD = '[student]\nmodel = "resnet10_cifar"\n[method]\nname = "scratch"\n'


@pytest.mark.parametrize("preset", BUILT_IN, ids=[p.stem for p in BUILT_IN])
def test_built_in_presets_are_valid_and_survive_the_stored_config_round_trip(preset):
    from fbt_engine.train.engine import to_config_table

    resolved = collect(preset)
    # only the data may be missing on this machine (the paper's ImageNet folder); nothing else
    assert all(p.environment and p.key == "data.root" for p in resolved.problems), resolved.problems
    assert resolved.raw == preset.read_bytes()
    table = to_config_table(resolved.config)
    reparsed = tomllib.loads(tomli_w.dumps(table))  # what a run stores as config.toml and --resume reads
    assert reparsed == table
    problems: list = []
    assert build_config(reparsed, lambda key: "config.toml", problems) == resolved.config
    assert problems == []


def test_a_file_with_many_problems_reports_every_one(tmp_path):
    text = ('[run]\nnmae = "x"\nseed = -1\n[trian]\nepochs = 1\n[data]\nname = "fashion_mnist_k5"\n'
            'batch_size = "big"\n[student]\nmodel = "resnet10_cifra"\n[optim]\nlr = "fast"\nmomentum = 1.5\n'
            '[train]\namp = "fp8"\nchannels_last = 1\n[method]\nname = "fbt"\n')
    found = problems_of(text, tmp_path)
    assert set(found) == {"run.nmae", "run.seed", "trian", "data.name", "data.batch_size", "student.model",
                          "optim.lr", "optim.momentum", "train.amp", "train.channels_last", "teacher.model"}
    source = str(tmp_path / "p.toml")
    assert all(msg.startswith(f"{source}: ") for msg in found.values())
    assert 'did you mean "name"?' in found["run.nmae"]
    assert 'did you mean "train"?' in found["trian"]
    assert 'did you mean "fashion_mnist_5k"?' in found["data.name"]
    assert 'did you mean "resnet10_cifar"?' in found["student.model"]
    assert "expected an integer, got \"big\"" in found["data.batch_size"]
    assert "expected a number, got \"fast\"" in found["optim.lr"]
    assert "≥ 0" in found["run.seed"] and "≤ 1" in found["optim.momentum"]
    assert '"auto", "bf16", "off"' in found["train.amp"]
    assert 'expected one of "auto", "on", "off", got 1' in found["train.channels_last"]
    assert 'required by method "fbt"' in found["teacher.model"]


def test_types_bool_is_not_an_int_and_an_int_is_a_number(tmp_path):
    assert problems_of(GOOD + "[train]\nepochs = true\n", tmp_path) == {
        "train.epochs": f"{tmp_path / 'p.toml'}: train.epochs: expected an integer, got true"}
    assert problems_of(GOOD + "[optim]\nlr = 1\n", tmp_path) == {}
    assert resolve(tmp_path / "p.toml").config.optim.lr == 1.0
    found = problems_of(GOOD + "[optim]\nbetas = [0.9, \"x\"]\n[run]\ntags = \"a\"\n", tmp_path)
    assert "a list of numbers" in found["optim.betas"] and "a list of strings" in found["run.tags"]
    found = problems_of(GOOD + "[teacher]\nrecipe = 3\n", tmp_path)
    assert "expected a table" in found["teacher.recipe"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_rejected(tmp_path, value):
    found = problems_of(GOOD, tmp_path, f"optim.lr={value}")
    assert found["optim.lr"].startswith("--set: optim.lr: expected a finite number")


def test_method_keys_depend_on_the_method(tmp_path):
    found = problems_of(GOOD.replace("scratch", "fbt") + "temperature = 2\n[teacher]\nmodel = \"mixer_nano\"\n", tmp_path)
    assert set(found) == {"method.temperature"}  # kd's: not "unknown", nor another key of fbt's
    assert "method.temperature: is a setting of kd, not of fbt (fbt takes " in found["method.temperature"]
    assert found["method.temperature"].endswith("); method.kd.temperature keeps it for when kd runs")
    in_its_table = problems_of(GOOD.replace("scratch", "kd") + "[method.kd]\nnce_weight = 2\n[teacher]\n"
                               "model = \"mixer_nano\"\n", tmp_path)  # the same in [method.kd]
    assert "method.kd.nce_weight: is a setting of fbt, not of kd" in in_its_table["method.kd.nce_weight"]
    shared = problems_of(GOOD.replace("scratch", "kd") + "logit_weight = 2\n[teacher]\nmodel = \"mixer_nano\"\n", tmp_path)
    assert "is a setting of ofa_logit and fbt, not of kd (kd takes ce_weight, " in shared["method.logit_weight"]
    kd = GOOD.replace("scratch", "kd") + "temprature = 2\n[teacher]\nmodel = \"mixer_nano\"\n"
    assert 'did you mean "temperature"?' in problems_of(kd, tmp_path)["method.temprature"]
    found = problems_of(GOOD.replace("scratch", "fbtt"), tmp_path)
    assert "scratch, kd, ofa_logit, fitnet_mse, fbt" in found["method.name"]
    assert 'did you mean "fbt"?' in found["method.name"]
    found = problems_of(GOOD.replace("scratch", "fbt") + "nce_tau = 2.0\n[teacher]\nmodel = \"mixer_nano\"\n", tmp_path)
    assert "[nce_tau_min, nce_tau_max]" in found["method.nce_tau"]
    found = problems_of(GOOD.replace("scratch", "fbt") + "nce_tau_min = 0.5\nnce_tau_max = 0.1\n"
                        "[teacher]\nmodel = \"mixer_nano\"\n", tmp_path)
    assert set(found) == {"method.nce_tau_min"}  # the range is upside down, whatever τ is
    assert "expected ≤ nce_tau_max (0.1), got 0.5" in found["method.nce_tau_min"]
    found = problems_of(GOOD.replace("scratch", "fbt") + "fbt = 3\n[teacher]\nmodel = \"mixer_nano\"\n", tmp_path)
    assert set(found) == {"method.fbt"} and "expected a table of fbt's settings ([method.fbt]), got 3" in found["method.fbt"]


def test_pretrained_weights_for_fbts_own_models_are_a_config_error():
    """They have none: exit 2 before anything is built, not a network failure (exit 3)."""
    found = {p.key: p.message for p in collect(MLP_TO_CNN, ["teacher.kwargs.pretrained=true"]).problems}
    assert found == {"teacher.kwargs": "pretrained: fbt's own mixer_nano has no pretrained weights; drop it, and "
                                       "give teacher.checkpoint or let [teacher.recipe] train the teacher"}
    assert "student.kwargs" in {p.key for p in collect(MLP_TO_CNN, ["student.kwargs.pretrained=true"]).problems}
    with_checkpoint = collect(MLP_TO_CNN, ["teacher.kwargs.pretrained=true", f'teacher.checkpoint="{MLP_TO_CNN}"'])
    assert "teacher.kwargs" not in {p.key for p in with_checkpoint.problems}  # its weights replace them


def test_scratch_needs_no_teacher_and_ignores_its_model(tmp_path):
    assert problems_of(GOOD + '[teacher]\nmodel = "no_such_model"\n', tmp_path) == {}


def test_every_unknown_key_names_what_the_section_takes(tmp_path):
    found = problems_of(GOOD + "[sched]\nwarmup = 1\n", tmp_path)
    assert 'did you mean "warmup_epochs"?' in found["sched.warmup"]
    assert "[sched] takes min_lr_ratio, name, warmup_epochs, warmup_lr_ratio" in found["sched.warmup"]


def test_problems_from_set_are_attributed_to_set(tmp_path):
    found = problems_of(GOOD, tmp_path, "train.epoch=3", "data.subset=20")
    assert found["train.epoch"].startswith('--set: train.epoch: unknown key (did you mean "epochs"?)')
    assert found["data.subset"].startswith("--set: data.subset: 20 images cannot fill one batch")


def test_syntax_errors_name_the_file(tmp_path):
    found = problems_of("[run\nname = 1\n", tmp_path)
    assert found["preset"].startswith(f"{tmp_path / 'p.toml'}: preset: not valid TOML")


def test_a_missing_preset_is_a_usage_problem_with_a_hint():
    """A mistyped preset is the command line's mistake (2), not something the machine lacks (3)."""
    with pytest.raises(PresetError) as exc:
        resolve("mlp_to_cnx")
    assert exc.value.exit_code == 2 and 'did you mean "mlp_to_cnn"?' in str(exc.value)


def test_missing_paths_are_environment_problems(tmp_path):
    with pytest.raises(PresetError) as exc:
        resolve(MLP_TO_CNN, [f"teacher.checkpoint={tmp_path}/t.pt", "data.name=fashion_mnist",
                             f"data.root={tmp_path}/nope"])
    keys = {p.key: p for p in exc.value.problems}
    assert set(keys) == {"teacher.checkpoint", "data.root"} and exc.value.exit_code == 3
    assert all(p.environment for p in keys.values())
    assert f"{tmp_path}/t.pt" in str(keys["teacher.checkpoint"]) and f"{tmp_path}/nope" in str(keys["data.root"])


def test_relative_paths_start_at_the_preset_or_at_the_working_directory(tmp_path, monkeypatch):
    """The preset's own paths are relative to its folder, a --set's to the cwd, "~" is kept; all
    are absolute in the config a run saves, so a resume from elsewhere finds the same files."""
    (tmp_path / "exp").mkdir()
    (tmp_path / "data" / "fashion-mnist").mkdir(parents=True)
    (tmp_path / "exp" / "teacher.pth").write_bytes(b"")
    (tmp_path / "cwd" / "weights").mkdir(parents=True)
    (tmp_path / "cwd" / "weights" / "t.pth").write_bytes(b"")
    preset = tmp_path / "exp" / "p.toml"
    preset.write_text('[data]\nname = "fashion_mnist"\nroot = "../data/fashion-mnist"\n'
                      '[teacher]\nmodel = "mixer_nano"\ncheckpoint = "teacher.pth"\n'
                      '[student]\nmodel = "resnet10_cifar"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path / "cwd")
    cfg = resolve(preset).config
    assert (cfg.data.root, cfg.teacher.checkpoint) == (f"{tmp_path}/data/fashion-mnist", f"{tmp_path}/exp/teacher.pth")
    cfg = resolve(preset, ["teacher.checkpoint=weights/t.pth"]).config
    assert (cfg.data.root, cfg.teacher.checkpoint) == (f"{tmp_path}/data/fashion-mnist", f"{tmp_path}/cwd/weights/t.pth")
    assert resolve(preset, ['data.root="~/no/such/folder"', "data.download=true"]).config.data.root == "~/no/such/folder"
    with pytest.raises(PresetError, match=f"no such file: {tmp_path}/cwd/teacher.pth"):
        resolve(preset, ["teacher.checkpoint=teacher.pth"])

    from fbt_engine.train.engine import to_config_table

    saved = tmp_path / "run" / "config.toml"
    saved.parent.mkdir()
    saved.write_text(tomli_w.dumps(to_config_table(cfg)), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert resolve(saved).config == cfg
    # a config an older fbt saved holds paths as typed, relative to where the run started: a resume
    # from there reads them from there (the engine's resume passes relative_to=cwd)
    table = to_config_table(cfg)
    table["teacher"]["checkpoint"] = "exp/teacher.pth"
    saved.write_text(tomli_w.dumps(table), encoding="utf-8")
    assert collect(saved).config.teacher.checkpoint == f"{tmp_path}/run/exp/teacher.pth"  # its own folder
    assert collect(saved, relative_to=tmp_path).config.teacher.checkpoint == f"{tmp_path}/exp/teacher.pth"


def test_dataset_layouts_are_checked_before_any_loading(tmp_path):
    with pytest.raises(PresetError, match="cifar-10-batches-py"):
        resolve(MLP_TO_CNN, ["data.name=cifar10", f"data.root={tmp_path}"])
    with pytest.raises(PresetError, match="needs a root folder"):
        resolve(MLP_TO_CNN, ["data.name=cifar100"])
    with pytest.raises(PresetError) as exc:
        resolve(MLP_TO_CNN, ["data.name=imagefolder", f"data.root={tmp_path}"])
    assert {p.key for p in exc.value.problems} == {"data.img_size", "data.root"}
    assert "train/ or val/" in str(exc.value)



def test_rules_newer_than_a_stored_config_are_marked_so_a_resume_can_pass_them():
    problems = collect(MLP_TO_CNN, ["data.subset=6000", "run.tags=['two words']", "train.epochs=0"]).problems
    assert {p.key: p.newer_rule for p in problems} == {"data.subset": True, "run.tags": True, "train.epochs": False}


def test_a_cross_field_problem_is_blamed_on_whichever_side_set_a_key_behind_it(tmp_path):
    """data.root is nobody's key here: the dataset that needs one is; and τ is the preset's
    default, the range it must lie in --set's."""
    preset = tmp_path / "cifar.toml"
    preset.write_text(Path(MLP_TO_CNN).read_text().replace('name = "fashion_mnist_5k"', 'name = "cifar100"'))
    assert "cifar100" in preset.read_text()

    def origins(path, sets):
        return {p.key: p.source for p in collect(path, sets).problems}

    assert origins(preset, []) == {"data.root": str(preset)}
    assert origins(MLP_TO_CNN, ["data.name='cifar100'"]) == {"data.root": "--set"}
    assert origins(MLP_TO_CNN, ["method.nce_tau_max=0.05"]) == {"method.nce_tau": "--set"}


def test_values_that_run_but_are_seldom_meant_are_doubts_not_problems():
    """A learning rate of 0 runs (it is how one checks that nothing moves) but is nearly always a slip:
    fbt warns of it rather than refuse it; a teacher's recipe only while the run trains one."""

    def doubts(*sets, preset=MLP_TO_CNN):
        resolved = collect(preset, sets)
        assert not resolved.problems
        return {p.key: (p.source, p.message) for p in resolved.doubts}

    assert doubts() == {}
    assert doubts("optim.lr=0", "teacher.recipe.lr=0.0") == {
        "optim.lr": ("--set", "is 0: no weight will learn (BatchNorm's running statistics still move)"),
        "teacher.recipe.lr": ("--set", "is 0: the teacher trained from scratch will not learn")}
    high = "is above 1 for SGD or 0.1 for AdamW: training seldom survives it (a non-finite loss ends the run)"
    assert doubts("optim.lr=1e5", "teacher.recipe.lr=0.5") == {"optim.lr": ("--set", high),
                                                                "teacher.recipe.lr": ("--set", high)}
    assert doubts("optim.lr=0.5", "teacher.recipe.lr=0.05") == {}  # SGD's and AdamW's own ranges
    assert doubts("optim.lr=0.5", 'optim.name="adamw"') == {"optim.lr": ("--set", high)}
    assert doubts("teacher.recipe.lr=0", "method.name=scratch") == {}  # no teacher is trained
    assert doubts("teacher.recipe.lr=0", 'teacher.model="resnet18"', "teacher.kwargs.pretrained=true") == {}  # loaded
    assert collect(MLP_TO_CNN, ["optim.lr=-1"]).doubts == []  # a problem already: not a doubt too


# -- --set parsing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("3e-4", 3e-4), ("12", 12), ("true", True), ('"cifar100"', "cifar100"), ("'x y'", "x y"),
    ("[0.9, 0.99]", [0.9, 0.99]), ("{a = 1}", {"a": 1}),
    ("cifar100", "cifar100"), ("adamw", "adamw"), ("resnet18.a1_in1k", "resnet18.a1_in1k"),
    ("/data/cifar", "/data/cifar"), ("~/data", "~/data"), ("./imgs", "./imgs"), ("../x-1", "../x-1"),
])
def test_set_values_are_toml_and_bare_words_or_paths_are_strings(text, value):
    assert parse_value(text) == value


@pytest.mark.parametrize("text", ["a b", "1.2.3", "2x", "---1", "/my data", "C:\\data", ""])
def test_set_values_that_are_not_toml_are_strings_for_the_schema_to_judge(text):
    assert parse_value(text) == text


@pytest.mark.parametrize("text", ["[1,", "\"open", "'open", "{a = "])
def test_set_values_meant_as_toml_that_are_not_raise(text):
    with pytest.raises(tomllib.TOMLDecodeError):
        parse_value(text)


def test_parse_overrides_nests_keys_and_reports_bad_items():
    nested, problems = parse_overrides(["train.epochs=2", "teacher.recipe.lr=1e-3", "student.kwargs.drop_rate=0.1",
                                        "train.epochs 3", "=1", "optim.lr=[", "train=1", "train.amp=off",
                                        "optim.lr=---1", "data.root=/my data"])
    assert nested == {"train": 1, "teacher": {"recipe": {"lr": 1e-3}}, "student": {"kwargs": {"drop_rate": 0.1}},
                      "optim": {"lr": "---1"}, "data": {"root": "/my data"}}
    messages = [str(p) for p in problems]
    assert messages[0] == "--set: train.epochs 3: expected key=value, e.g. optim.lr=3e-4"
    assert messages[1].startswith("--set: =1: expected key=value")
    # the parser's reason, without its position in the "v = …" it parsed
    assert messages[2] == "--set: optim.lr: value '[' is not valid TOML (Invalid value)"
    assert messages[3] == "--set: train.amp: train is a value, not a table"
    assert len(problems) == 4
    _, forgotten = parse_overrides(["data.root=", 'run.name=""'])  # the quoted one is an empty string meant
    assert [str(p) for p in forgotten] == ["--set: data.root: no value after \"=\" (an empty string is written '\"\"')"]


def test_a_set_value_that_is_not_toml_is_judged_by_the_schema():
    problems = {p.key: p.message for p in collect(MLP_TO_CNN, ["train.epochs=2x", "optim.lr=3e-4.5",
                                                               "run.name=2x"]).problems}
    assert problems == {"train.epochs": "expected an integer, got \"2x\"",
                        "optim.lr": "expected a number, got \"3e-4.5\""}  # a name may be "2x"


def test_set_overrides_the_file_and_student_kwargs_merge(tmp_path):
    resolved = resolve(MLP_TO_CNN, ["train.epochs=2", "student.kwargs.drop_rate=0.1", "data.name=cifar10",
                                    f"data.root={tmp_path}", "data.download=true"])
    cfg = resolved.config
    assert (cfg.train.epochs, cfg.student.kwargs, cfg.data.name, cfg.data.root) == (
        2, {"drop_rate": 0.1}, "cifar10", str(tmp_path))
    assert cfg.teacher.model == "mixer_nano" and cfg.data.pad == 2  # the rest comes from the file


# -- model names without torch -----------------------------------------------------------------------

def test_known_model_names_are_exactly_what_timm_create_model_accepts():
    import timm
    from timm.models._registry import _deprecated_models

    import fbt_engine.models.small  # noqa: F401  (registers fbt's models with timm)

    listed = set(timm.list_models())
    deprecated = set(_deprecated_models)  # old name -> new name
    known = set(known_model_names())
    assert set(own_model_names()) <= listed
    # the registry, plus timm's deprecated aliases (create_model still maps them to their new names)
    assert known == listed | deprecated
    assert {"resnet10_cifar", "mixer_nano", "deit_nano", "resmlp_nano", "resnet18", "swin_tiny_patch4_window7_224"} <= known


def test_pretrained_tags_and_unknown_names():
    assert is_known_model("resnet18.a1_in1k") and is_known_model("mixer_nano")
    assert not is_known_model("resnet10_cifra") and not is_known_model("")


def test_a_key_from_another_section_is_pointed_to(tmp_path):
    found = problems_of(GOOD, tmp_path, "train.lr=3e-4", "data.momentum=0.5", "data.epochs=3")
    assert found["train.lr"].startswith('--set: train.lr: unknown key (did you mean "optim.lr"?)')
    assert 'did you mean "optim.momentum"?' in found["data.momentum"]
    assert 'did you mean "train.epochs"?' in found["data.epochs"]  # not teacher.recipe.epochs
    assert "did you mean" not in problems_of(GOOD, tmp_path, "run.zzz=1")["run.zzz"]


def test_a_near_miss_path_gets_a_did_you_mean(tmp_path):
    (tmp_path / "fashion-mnist").mkdir()
    (tmp_path / "teacher.safetensors").write_bytes(b"")
    with pytest.raises(PresetError) as exc:
        resolve(MLP_TO_CNN, ["data.name=fashion_mnist", f"data.root={tmp_path}/fashion-mnis",
                             f"teacher.checkpoint={tmp_path}/teacher.safetensor"])
    text = str(exc.value)
    assert f'no such folder: {tmp_path}/fashion-mnis (did you mean "{tmp_path}/fashion-mnist"?)' in text
    assert f'no such file: {tmp_path}/teacher.safetensor (did you mean "{tmp_path}/teacher.safetensors"?)' in text


@pytest.mark.parametrize("requested, local_rank, index", [("cuda", None, 0), ("cuda:1", None, 1), ("auto", None, 0),
                                                          ("cuda", 1, 1)])
def test_a_cuda_device_always_names_its_index(monkeypatch, requested, local_rank, index):
    """torch.cuda.set_device refuses a bare "cuda" (as the first GPU check found): the selected
    device carries its index, also under torchrun. The GPU is faked: none exists here."""
    import torch
    from torch.cuda._utils import _get_device_index

    from fbt_engine.train.distributed import DistInfo
    from fbt_engine.train.engine import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    info = DistInfo() if local_rank is None else DistInfo(rank=local_rank, world=2, local_rank=local_rank)
    device = select_device(requested, info)
    assert device == torch.device("cuda", index)
    assert _get_device_index(device) == index  # what set_device calls, and what raised before


def test_a_cuda_device_beyond_the_count_is_a_clear_error(monkeypatch):
    import torch

    from fbt_engine.train.engine import EngineError, select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(EngineError, match="cuda:1: only 1 CUDA device"):
        select_device("cuda:1")


@pytest.mark.parametrize("setting, nhwc", [("auto", False), ("on", True), ("off", False)])
def test_channels_last_puts_every_convolution_and_the_input_in_nhwc(setting, nhwc):
    """Student, teacher (which the method holds outside its module tree) and the method's own
    modules; "auto" is NHWC on CUDA only, so off on this CPU."""
    import torch

    from fbt_engine.train.engine import prepare
    from fbt_engine.train.loop import fit_channels

    resolved = resolve(str(PRESETS / "cnn_to_cnn.toml"), ["data.subset=256", f'train.channels_last="{setting}"'])
    p = prepare(resolved, torch.device("cpu"))
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    assert p.memory_format == fmt
    for part in (p.student.model, p.teacher.model, p.method):
        convs = [w for w in part.parameters() if w.dim() == 4]
        assert convs and all(w.is_contiguous(memory_format=fmt) for w in convs), type(part).__name__
    x, _ = next(iter(p.data.train.epoch(0)))  # grayscale: NCHW keeps the 3-channel expansion a view
    assert fit_channels(x, p.student.in_chans, fmt).is_contiguous(memory_format=torch.channels_last) == nhwc


@pytest.mark.parametrize("setting, weights, chosen", [
    ("auto", 4, "channels_last"), ("off", 4, "contiguous_format"), ("auto", 5, "contiguous_format"),
])
def test_channels_last_on_cuda(setting, weights, chosen):
    """What a CUDA run gets (no GPU needed to choose): NHWC for "auto", NCHW for models with 5-D
    weights, which NHWC cannot hold."""
    import torch
    from torch import nn

    from fbt_engine.train.engine import memory_format

    model = nn.Conv2d(3, 8, 3) if weights == 4 else nn.Conv3d(3, 8, 3)
    assert memory_format(setting, torch.device("cuda", 0), {"student": model}) == getattr(torch, chosen)


def test_channels_last_on_refuses_5d_weights_by_name():
    import torch
    from torch import nn

    from fbt_engine.train.engine import EngineError, memory_format

    with pytest.raises(EngineError, match='channels_last = "on": the teacher has 5-D weights'):
        memory_format("on", torch.device("cuda", 0), {"student": nn.Conv2d(3, 8, 3), "teacher": nn.Conv3d(3, 8, 3)})


@pytest.mark.parametrize("old, new", [(False, "off"), (True, "on")])
def test_a_saved_config_with_the_old_boolean_channels_last_still_resumes(tmp_path, old, new):
    """train.channels_last was a boolean until 2026-11; runs saved then hold it in config.toml,
    which resuming reads back."""
    from fbt_engine.train.engine import to_config_table

    table = to_config_table(resolve(MLP_TO_CNN).config)
    table["train"]["channels_last"] = old
    (tmp_path / "config.toml").write_text(tomli_w.dumps(table))
    resolved = collect(tmp_path / "config.toml")
    assert resolved.problems == [] and resolved.config.train.channels_last == new


@pytest.mark.parametrize("typed,meant", [
    ("deit_tiny", "deit_tiny_patch16_224"),  # by letters alone: rdnet_tiny
    ("swin_tiny", "swin_tiny_patch4_window7_224"),
    ("resnt18", "resnet18"), ("mixer_nan", "mixer_nano"), ("resnet11_cifar", "resnet18_cifar"),
])
def test_a_mistyped_model_is_told_one_of_its_family(typed, meant):
    from fbt_engine.registry import did_you_mean

    assert did_you_mean(typed, known_model_names()) == f' (did you mean "{meant}"?)'


def test_a_mistyped_model_of_no_known_name_is_told_its_family_or_nothing():
    from fbt_engine.registry import did_you_mean

    assert did_you_mean("resnet_nonexist", known_model_names()).startswith(' (did you mean "resnet')  # not test_convnext
    assert did_you_mean("xyz", known_model_names()) == ""
