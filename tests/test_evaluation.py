"""What a run reports as its accuracy is what the weights it saves score, evaluated as a user would."""

from __future__ import annotations

import contextlib
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from timm.utils import ModelEmaV3

from conftest import PRESETS, TINY
from fbt_engine.config.presets import resolve
from fbt_engine.store.runs import RunStore
from fbt_engine.train.engine import RunOptions, prepare, run, save_students
from fbt_engine.methods.baselines import Scratch
from fbt_engine.methods.params import ScratchParams
from fbt_engine.train.loop import Phase, evaluate, fit_channels, recalibrate_batchnorm


@pytest.mark.parametrize("method", ["kd", "fbt"])
def test_the_reported_accuracy_is_the_saved_students_in_eval_mode(with_cached_teacher, method):
    """Evaluation runs the models in eval mode: BatchNorm with its running statistics, which the
    validation images leave alone, and no dropout. In train mode the reported top-1 was the batch
    statistics' and the saved student's running statistics had absorbed the validation set."""
    sets = [*TINY, f'method.name="{method}"']
    assert run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), sets=sets, quiet=True)) == 0
    store = RunStore()
    run_id = store.resolve("last")
    events = store.events(run_id)
    last_epoch = [e for e in events if e["type"] == "epoch" and e["phase"] == "distillation"][-1]
    assert events[-1]["type"] == "run_finished"
    assert events[-1]["final"]["top1"] == last_epoch["student"]["top1"]

    p = prepare(resolve(str(PRESETS / "mlp_to_cnn.toml"), sets), torch.device("cpu"))
    student = p.student.model
    student.load_state_dict(load_file(store.run_dir(run_id) / "student.safetensors"))
    student.eval()
    buffers = {k: v.clone() for k, v in student.state_dict().items() if "running" in k}
    assert buffers  # the student has BatchNorm, whose mode is what this test is about
    scored = evaluate(lambda x: {"student": student(x)}, p.data,
                      partial(fit_channels, channels=p.student.in_chans), contextlib.nullcontext)
    assert scored["student"]["top1"] == pytest.approx(last_epoch["student"]["top1"], abs=1e-9)
    assert scored["val_loss"] == pytest.approx(last_epoch["val_loss"], rel=1e-4)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_the_best_epochs_weights_score_the_reported_best(with_cached_teacher, ema):
    """With this learning rate the tiny run's first epoch scores best (18 % against 11 % on this
    machine, without EMA), so the best weights are not the final ones. With EMA, what is evaluated
    and kept is the EMA's weights, which best.pt holds apart from the student's."""
    sets = [*TINY, "train.epochs=3", "optim.lr=1.0", f"train.ema={ema}"]
    assert run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), sets=sets, quiet=True)) == 0
    store = RunStore()
    run_id = store.resolve("last")
    finished = store.events(run_id)[-1]
    epochs = {e["epoch"]: e for e in store.events(run_id) if e["type"] == "epoch" and e["phase"] == "distillation"}
    assert finished["best"]["top1"] == max(e["student"]["top1"] for e in epochs.values())
    assert finished["best"]["epoch"] < max(epochs)  # what the test is about

    p = prepare(resolve(str(PRESETS / "mlp_to_cnn.toml"), sets), torch.device("cpu"))
    student = p.student.model.eval()
    folder = store.run_dir(run_id)
    best, final = load_file(folder / finished["best_student_weights"]), load_file(folder / "student.safetensors")
    student.load_state_dict(best)
    scored = evaluate(lambda x: {"student": student(x)}, p.data,
                      partial(fit_channels, channels=p.student.in_chans), contextlib.nullcontext)
    assert scored["student"]["top1"] == pytest.approx(finished["best"]["top1"], abs=1e-9)
    assert scored["val_loss"] == pytest.approx(epochs[finished["best"]["epoch"]]["val_loss"], rel=1e-4)
    assert not all(torch.equal(best[k], final[k]) for k in best)
    with safe_open(str(folder / finished["best_student_weights"]), framework="pt") as f:
        assert f.metadata()["weights"] == ("best_ema" if ema else "best")
        assert f.metadata()["epoch"] == str(finished["best"]["epoch"])

    # a best.pt that does not hold the best the run reports (an attempt that a resume replayed after
    # a crash between best.pt and last.pt) is not passed off as the best epoch's weights
    said: list[str] = []
    replayed = SimpleNamespace(dir=folder, log=said.append, fold=SimpleNamespace(
        best_epoch=finished["best"]["epoch"], best_top1=finished["best"]["top1"] - 1.0))
    (folder / "student_best.safetensors").unlink()
    p.ema = None
    assert save_students(p, replayed)[1] is None and not (folder / "student_best.safetensors").exists()
    assert "an attempt that a resume replayed" in said[0]


def test_precise_bn_measures_the_statistics_of_the_weights_as_they_are(fbt_home, tmp_path):
    """Before an evaluation the student's BatchNorm statistics are the equal-weight average over
    the first training batches, whatever the running averages held; the random state is left as
    it was (the student's dropout draws from it), so training does not depend on the setting; the
    frozen teacher's statistics, and the momentum, are as they were."""
    sets = [*TINY, "student.kwargs.drop_rate=0.5", "train.precise_bn=100", "data.mixup=0.8", "data.mix_prob=1.0"]
    p = prepare(resolve(str(PRESETS / "mlp_to_cnn.toml"), sets), torch.device("cpu"))
    ema = ModelEmaV3(p.student.model, decay=0.9)
    phase = Phase("distillation", p.method, None, None, p.data, 1, p.student.in_chans, 0.0, 1, 1,
                  contextlib.nullcontext, tmp_path, "", "student", ema=ema,
                  precise_bn=p.resolved.config.train.precise_bn)
    norm = p.student.model.bn1
    for stale in (norm, ema.module.bn1):
        stale.running_mean.fill_(5.0)
        stale.running_var.fill_(100.0)
    momentum, tracked = norm.momentum, norm.num_batches_tracked.clone()
    seen: list[torch.Tensor] = []
    norm.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    images: list[torch.Tensor] = []
    p.student.model.conv1.register_forward_pre_hook(lambda _, args: images.append(args[0].detach().clone()))
    p.method.unused = torch.nn.BatchNorm1d(3)  # a layer evaluation never runs keeps its averages
    p.method.unused.running_mean.fill_(7.0)
    frozen = {k: v.clone() for k, v in p.teacher.model.state_dict().items()}
    rng = torch.get_rng_state()

    assert recalibrate_batchnorm(phase, 0) == 2  # 100 images in batches of 64
    assert len(seen) == 2 and p.method.training and not ema.module.training
    unmixed = [phase.inputs(x) for x, _ in p.data.train.epoch(0, mix=False)][:2]  # what evaluation sees: no Mixup
    assert len(images) == 2 and all(torch.equal(a, b) for a, b in zip(images, unmixed))
    assert torch.allclose(ema.module.bn1.running_mean, norm.running_mean)  # a copy of the same weights
    per_channel = torch.stack([x.transpose(0, 1).flatten(1).mean(1) for x in seen])
    assert torch.allclose(norm.running_mean, per_channel.mean(0), atol=1e-5)
    unbiased = torch.stack([x.transpose(0, 1).flatten(1).var(1) for x in seen])
    assert torch.allclose(norm.running_var, unbiased.mean(0), rtol=1e-4)
    assert norm.momentum == momentum and torch.equal(norm.num_batches_tracked, tracked)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(p.method.unused.running_mean, torch.full((3,), 7.0))
    assert all(torch.equal(v, frozen[k]) for k, v in p.teacher.model.state_dict().items())


def test_precise_bn_runs_nothing_without_batchnorm(fbt_home, tmp_path):
    """A model without BatchNorm (the Mixer teacher, trained in the teacher phase) costs no batch."""
    p = prepare(resolve(str(PRESETS / "mlp_to_cnn.toml"), TINY), torch.device("cpu"))
    method = Scratch(p.teacher, None, ScratchParams(), 0.0)
    phase = Phase("teacher_training", method, None, None, p.data, 1, p.teacher.in_chans, 0.0, 1, 1,
                  contextlib.nullcontext, tmp_path, "teacher_", "teacher", precise_bn=4096)
    assert recalibrate_batchnorm(phase, 0) == 0


def test_precise_bn_changes_what_is_evaluated_and_not_how_the_student_trains(fbt_home):
    """Two runs apart only in train.precise_bn: the saved students' weights are the same bit for bit
    (the student's dropout draws from the random state the recalibration leaves alone), their
    BatchNorm statistics are not. Each trains its teacher (the setting is in the cache's key), so
    that both reach distillation with the same random state."""
    students = []
    for images in (0, 100):
        sets = [*TINY, "train.epochs=2", "student.kwargs.drop_rate=0.5", f"train.precise_bn={images}"]
        assert run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), sets=sets, quiet=True)) == 0
        store = RunStore()
        students.append(load_file(store.run_dir(store.resolve("last")) / "student.safetensors"))
    averages, measured = students
    statistics = {k for k in averages if "running" in k}
    assert statistics and all(torch.equal(averages[k], measured[k]) for k in averages if k not in statistics)
    assert not any(torch.equal(averages[k], measured[k]) for k in statistics)


def test_a_fusion_model_that_stays_at_chance_is_warned_of_once(fbt_home):
    """FBT's student learns from the fusion model: at chance after its first epochs, it teaches
    nothing while the student's own CE falls, and the run looks healthy."""
    from fbt_engine.train.loop import _fusion_check
    from fbt_engine.train.report import HumanOutput, Reporter

    store = RunStore()
    rid = store.create(config={}, preset_raw=b"", preset_source="p.toml", name="", tags=[],
                       extra_meta={"segments": 1}).name
    reporter = Reporter(store, rid, json_stdout=False, human=HumanOutput(quiet=True))

    def warnings() -> list[str]:
        return [e["message"] for e in store.events(rid) if e["type"] == "warning"]

    at = {"fusion": {"top1": 9.0}, "teacher": {"top1": 32.0}}
    _fusion_check(reporter, 39, at, classes=10)  # its first steps: it may not have left chance yet
    _fusion_check(reporter, 117, {"fusion": {"top1": 53.0}, "teacher": {"top1": 32.0}}, classes=10)
    assert warnings() == []
    _fusion_check(reporter, 117, at, classes=10)
    _fusion_check(reporter, 156, at, classes=10)
    assert warnings() == ["the fusion model scores 9.0% top-1 after 117 steps, near chance (10.0%): the student "
                          "learns little from it. A weak teacher (32.0%) or too high a learning rate can keep it "
                          "there"]
    reporter.finish("finished", 0)


@pytest.mark.parametrize("method", ["fbt", "kd"])
def test_the_fusion_check_runs_at_each_evaluation_of_a_method_with_a_fusion_model(with_cached_teacher, monkeypatch,
                                                                                  method):
    """Its wiring, on a real run: every fusion model taken for one at chance, from the first step."""
    import fbt_engine.train.loop as loop

    monkeypatch.setattr(loop, "near_chance", lambda top1, classes: classes == 10)
    monkeypatch.setattr(loop, "FUSION_GRACE_STEPS", 1)
    assert run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), sets=[*TINY, f'method.name="{method}"'],
                          quiet=True)) == 0
    store = RunStore()
    events = store.events(store.resolve("last"))
    fusion = [e for e in events if e["type"] == "epoch"][-1].get("fusion")
    warned = [e["message"] for e in events if e.get("kind") == "fusion_near_chance"]
    if method == "kd":  # no fusion model, nothing to say
        assert fusion is None and warned == []
    else:
        teacher = [e for e in events if e["type"] == "epoch"][-1]["teacher"]["top1"]
        assert warned == [f"the fusion model scores {fusion['top1']:.1f}% top-1 after 7 steps, near chance (10.0%): "
                          f"the student learns little from it. A weak teacher ({teacher:.1f}%) or too high a "
                          "learning rate can keep it there"]
