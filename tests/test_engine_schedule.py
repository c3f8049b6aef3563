"""The per-step learning-rate schedule: linear warm-up, then cosine (or constant), by hand."""

from __future__ import annotations

import math

import pytest
import torch

from fbt_engine.models.factory import build_staged
from fbt_engine.train.optim import (
    OptimSpec, ScheduleSpec, build_optimizer, build_scheduler, group_layout, legacy_layout, lr_factor, param_groups,
    regrouped,
)


def test_warm_up_is_linear_from_the_start_ratio():
    spec = ScheduleSpec("cosine", total_steps=100, warmup_steps=10, warmup_lr_ratio=0.01)
    assert lr_factor(0, spec) == pytest.approx(0.01)
    assert lr_factor(5, spec) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(9, spec) == pytest.approx(0.01 + 0.99 * 0.9)
    assert lr_factor(10, spec) == pytest.approx(1.0)  # the peak, where the cosine starts


@pytest.mark.parametrize("min_ratio", [0.0, 0.1])
def test_cosine_after_warm_up(min_ratio):
    spec = ScheduleSpec("cosine", total_steps=100, warmup_steps=10, min_lr_ratio=min_ratio)
    assert lr_factor(55, spec) == pytest.approx(min_ratio + (1 - min_ratio) * 0.5)  # half way down
    assert lr_factor(32.5, spec) == pytest.approx(min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(100, spec) == pytest.approx(min_ratio)
    assert lr_factor(150, spec) == pytest.approx(min_ratio)  # clamped past the end
    values = [lr_factor(s, spec) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_no_warm_up_and_the_constant_schedule():
    assert lr_factor(0, ScheduleSpec("cosine", 50, 0)) == 1.0
    constant = ScheduleSpec("constant", 50, 5, warmup_lr_ratio=0.2)
    assert lr_factor(0, constant) == pytest.approx(0.2)
    assert [lr_factor(s, constant) for s in (5, 20, 49, 80)] == [1.0] * 4


def test_the_scheduler_applies_the_factor_per_optimiser_step():
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer([model], OptimSpec("sgd", 0.5, 1e-4), torch.device("cpu"))
    spec = ScheduleSpec("cosine", total_steps=20, warmup_steps=4, warmup_lr_ratio=0.1, min_lr_ratio=0.05)
    scheduler = build_scheduler(optimizer, spec)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5 * lr_factor(s, spec) for s in range(20)])


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    decay, no_decay = param_groups([model, model], 0.05)  # shared modules are counted once
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3, 3, 3])] and decay["weight_decay"] == 0.05
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0


def test_no_weight_decay_on_what_timm_exempts():
    """A ViT student's class token and position embedding, and L2G's copies of them, are not decayed,
    as timm trains its ViTs; their other matrices are."""
    from fbt_engine.methods.base import build_method
    from fbt_engine.methods.params import FBTParams

    student, teacher = build_staged("deit_nano", 10, 32), build_staged("resnet10_cifar", 10, 32)
    method = build_method(student, teacher, FBTParams(), label_smoothing=0.0)
    decay, no_decay = param_groups([method], 0.05)
    exempt = {id(p) for p in no_decay["params"]}
    named = [student.model.cls_token, student.model.pos_embed, method.fusion.projector.prefix,
             method.fusion.projector.pos]
    assert all(p.ndim == 3 and id(p) in exempt for p in named)
    assert id(student.model.patch_embed.proj.weight) in {id(p) for p in decay["params"]}


def test_a_checkpoint_of_the_older_groups_resumes_by_name():
    """Weight decay's exemptions moved a ViT's class token and positions to the other group: an
    optimiser state saved with the older groups (1-D tensors apart, no layout saved) must load, each
    parameter with its own moments and the learning rate the schedule had reached."""
    model = build_staged("deit_nano", 10, 32).model
    old_groups = legacy_layout(model)
    named = dict(model.named_parameters())
    old = torch.optim.AdamW([{"params": [named[n] for n in old_groups[0]], "weight_decay": 0.05},
                             {"params": [named[n] for n in old_groups[1]], "weight_decay": 0.0}], lr=0.01)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    old.step()
    for group in old.param_groups:
        group["lr"] = 0.004  # where a schedule had got to
    saved = old.state_dict()
    new = build_optimizer([model], OptimSpec("adamw", 0.01, 0.05), torch.device("cpu"))
    layout = group_layout(new, model)
    assert layout != old_groups and "pos_embed" in layout[1]
    with pytest.raises(ValueError):  # what a resume raised
        new.load_state_dict(saved)
    new.load_state_dict(regrouped(saved, old_groups, new, layout))
    pos = named["pos_embed"]
    assert torch.equal(new.state[pos]["exp_avg"], old.state[pos]["exp_avg"])
    assert [g["weight_decay"] for g in new.param_groups] == [0.05, 0.0]
    assert all(g["lr"] == 0.004 for g in new.param_groups)
    wrong = [old_groups[0][:-1], old_groups[1] + old_groups[0][-1:]]  # a layout that is not the state's
    with pytest.raises(ValueError, match="cannot resume"):  # not moments handed to the wrong parameters
        regrouped(saved, wrong, new, layout)
