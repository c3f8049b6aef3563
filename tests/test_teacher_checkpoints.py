"""Loading teacher weights: every nested layout, old timm layouts, clear refusals."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import tomli_w
import torch

from conftest import PRESETS, run_fbt, tiny_sets
from fbt_engine.models.factory import create_model
from fbt_engine.train.metrics import near_chance
from fbt_engine.train.teacher import TeacherError, cache_key, load_weights


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd},
    lambda sd: {"model": sd, "epoch": 3},
    lambda sd: {"state_dict_ema": sd, "optimizer": {}},
    lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
], ids=["raw", "state_dict", "model", "state_dict_ema", "ddp-module-prefix"])
def test_nested_layouts_load(tmp_path, wrap):
    source = create_model("resnet10_cifar", 10, 28)
    path = tmp_path / "teacher.pth"
    torch.save(wrap(source.state_dict()), path)
    target = create_model("resnet10_cifar", 10, 28)
    load_weights(target, path)
    assert same_weights(source, target)


def test_old_timm_swin_layout_is_converted(tmp_path):
    """timm 0.6 put Swin's patch merging at the end of a stage and had no head.fc (OFA-KD's teachers)."""
    source = create_model("swin_pico_patch4_window7_224", 100, 224)
    old = {}
    for key, value in source.state_dict().items():
        m = re.match(r"layers\.(\d+)\.downsample\.(.*)", key)
        if m:
            key = f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
        old[key.replace("head.fc.", "head.")] = value
    torch.save({"model": old}, tmp_path / "swin.pth")
    target = create_model("swin_pico_patch4_window7_224", 100, 224)
    load_weights(target, tmp_path / "swin.pth")
    assert same_weights(source, target)


def test_a_checkpoint_of_another_model_is_refused_with_the_keys(tmp_path):
    torch.save(create_model("resnet10_cifar_slim", 10, 28).state_dict(), tmp_path / "slim.pth")
    with pytest.raises(TeacherError, match=r"does not fit CifarResNet: .*missing|shape"):
        load_weights(create_model("resnet10_cifar", 10, 28), tmp_path / "slim.pth")


def test_a_checkpoint_for_other_classes_names_the_heads_shapes(tmp_path):
    torch.save(create_model("resnet10_cifar", 100, 28).state_dict(), tmp_path / "c100.pth")
    with pytest.raises(TeacherError) as refused:
        load_weights(create_model("resnet10_cifar", 10, 28), tmp_path / "c100.pth")
    assert str(refused.value).endswith(": 2 keys of another shape (e.g. head.fc.weight 100×128 (the model's: "
                                       "10×128), head.fc.bias 100 (the model's: 10))")


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherError, match="cannot read"):
        load_weights(create_model("resnet10_cifar", 10, 28), tmp_path / "junk.pth")


@pytest.mark.parametrize("extra", [(), ("teacher.kwargs.pretrained=true",)], ids=["", "pretrained-too"])
def test_a_near_chance_teacher_is_an_error_before_any_run_exists(fbt_home, tmp_path, extra):
    """Also with pretrained = true beside the checkpoint, whose weights replace pretrained ones:
    none are fetched (fbt's small models have none to fetch)."""
    untrained = create_model("mixer_nano", 10, 28)
    torch.save(untrained.state_dict(), tmp_path / "untrained.pth")
    result = run_fbt("run", str(PRESETS / "mlp_to_cnn.toml"),
                     *tiny_sets(f'teacher.checkpoint="{tmp_path / "untrained.pth"}"', *extra))
    assert result.returncode == 3, result.stderr
    assert "near chance" in result.stderr and "Traceback" not in result.stderr
    assert not (fbt_home / "runs").exists() or not any((fbt_home / "runs").iterdir())


def test_a_preset_finds_the_checkpoint_beside_it_from_any_working_directory(fbt_home, tmp_path):
    """`checkpoint = "untrained.pth"` in a preset means the file beside the preset, wherever fbt
    runs from: the run reads it (and refuses it for its accuracy, which proves it was read)."""
    folder = tmp_path / "experiment"
    folder.mkdir()
    torch.save(create_model("mixer_nano", 10, 28).state_dict(), folder / "untrained.pth")
    preset = tomllib.loads((PRESETS / "mlp_to_cnn.toml").read_text())
    preset["teacher"]["checkpoint"] = "untrained.pth"
    (folder / "mine.toml").write_text(tomli_w.dumps(preset))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_fbt("run", str(folder / "mine.toml"), *tiny_sets(), cwd=elsewhere)
    assert result.returncode == 3, result.stderr
    assert f"{folder / 'untrained.pth'}" in result.stderr and "near chance" in result.stderr


def test_a_cached_teacher_skips_the_teacher_phase(with_cached_teacher):
    result = run_fbt("run", str(PRESETS / "mlp_to_cnn.toml"), *tiny_sets(), "--json")
    assert result.returncode == 0, result.stderr
    phases = [line for line in result.stdout.splitlines() if '"type":"phase"' in line]
    assert '"source":"cache"' in phases[0] and '"skipped":true' in phases[0]
    assert not any('"phase":"teacher_training"' in line and '"type":"step"' in line
                   for line in result.stdout.splitlines())
    (info,) = [json.loads(p.read_text()) for p in (with_cached_teacher / "teachers").rglob("teacher.json")]
    assert (info["subset"], info["val_images"]) == (500, 100)  # what its best_top1 was measured on
    # one epoch on 500 images leaves it near chance, which the run says (a loaded one is refused)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    top1 = next(e for e in events if e["type"] == "phase" and e["phase"] == "distillation")["teacher"]["top1"]
    warned = [e["message"] for e in events if e["type"] == "warning"]
    assert warned == ([f"the teacher trained with [teacher.recipe] scores {top1:.1f}% top-1, near chance (10.0%): "
                       "distilling from it teaches little; give it more epochs or data"] if near_chance(top1, 10) else [])


@pytest.mark.parametrize("classes,below,above", [(2, 54.9, 55.1), (10, 18.9, 19.1), (100, 1.9, 2.1), (1000, 0.19, 0.21)])
def test_near_chance_is_twice_chance_or_a_tenth_of_the_way_to_100(classes, below, above):
    """Twice chance, with 2 classes, was 100 %: every teacher was near chance."""
    assert near_chance(below, classes) and not near_chance(above, classes)


def test_doctor_checks_a_preset_and_its_teacher_checkpoint(fbt_home, tmp_path):
    good = run_fbt("doctor", "--preset", "mlp_to_cnn")
    assert good.returncode == 0 and "no checkpoint and none cached" in good.stdout
    torch.save(create_model("mixer_nano", 10, 28).state_dict(), tmp_path / "untrained.pth")
    bad = run_fbt("doctor", "--preset", "mlp_to_cnn", "--set", f'teacher.checkpoint="{tmp_path / "untrained.pth"}"')
    assert bad.returncode == 3 and "near chance" in bad.stdout
    torch.save(create_model("resnet10_cifar", 10, 28).state_dict(), tmp_path / "other.pth")
    wrong = run_fbt("doctor", "--preset", "mlp_to_cnn", "--set", f'teacher.checkpoint="{tmp_path / "other.pth"}"')
    assert wrong.returncode == 3 and "does not fit MlpMixer" in wrong.stdout and "Traceback" not in wrong.stderr


def _key(*sets: str) -> str:
    from fbt_engine.config.presets import resolve

    return cache_key(resolve(str(PRESETS / "mlp_to_cnn.toml"), list(sets)).config, 10, 28)


@pytest.mark.parametrize("change", ["data.rrc_scale=[0.5, 1.0]", 'data.randaugment="rand-m9-mstd0.5"',
                                    "data.random_erasing=0.25", "data.mixup=0.8", "data.cutmix=1.0",
                                    "data.pad=0", "data.hflip=false", "data.subset=500", "teacher.recipe.lr=0.01",
                                    "train.precise_bn=0", "train.precise_bn=512"])
def test_a_cached_teacher_is_not_reused_across_what_shapes_its_weights(fbt_home, change):
    """A teacher trained with Mixup or RandAugment (the paper presets') was reused without them.
    PreciseBN measures the BatchNorm statistics a trained teacher is cached with."""
    assert _key(change) != _key()


def test_teachers_cached_before_unmixed_precise_bn_are_found_unless_their_data_mixed(fbt_home):
    """PreciseBN measured on mixed batches until it took them un-mixed: a teacher whose data mixes
    was cached with other statistics (its old key below), one whose data does not is the same
    teacher and stays found. A key that changes makes every user's cached teachers train again:
    change these only on purpose."""
    assert _key() == "f8bd4977d031a97d"
    assert _key("data.mixup=0.8", "train.precise_bn=0") == "fe01fe6c8761ceb4"
    assert _key("data.mixup=0.8") != "18c50d4f54dfe06f"


@pytest.mark.parametrize("change", ["data.workers=7", "data.eval_batch_size=64", 'data.pipeline="classic"',
                                    "run.seed=5", "train.epochs=9", 'method.name="kd"'])
def test_a_cached_teacher_is_shared_across_what_does_not(fbt_home, change):
    assert _key(change) == _key()
