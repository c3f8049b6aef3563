"""The FBT method on every pair of model families (METHOD §2): assembly, weight sharing, what
trains and what stays frozen, gradient flow of the detached target, and the stage-3 reuse."""

from __future__ import annotations

import itertools

import pytest
import torch

from fbt_engine.methods.base import build_method
from fbt_engine.methods.params import FBTParams
from fbt_engine.models.factory import build_staged

SIZE, CLASSES = 32, 10
FAMILIES = {
    "cnn": "resnet10_cifar",
    "mobilenetv2": "mobilenetv2_100",
    "vit": "deit_nano",
    "mixer": "mixer_nano",
    "resmlp": "resmlp_nano",
    "swin": "swin_pico_patch4_window7_224",
}
PAIRS = list(itertools.product(FAMILIES, FAMILIES))  # (teacher, student), both directions and homogeneous


def make(teacher: str, student: str, **params):
    torch.manual_seed(0)
    t = build_staged(FAMILIES[teacher], CLASSES, SIZE)
    s = build_staged(FAMILIES[student], CLASSES, SIZE)
    return build_method(s, t, FBTParams(**params), label_smoothing=0.1), s, t


def batch(n: int = 4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, SIZE, SIZE, generator=g), torch.randint(0, CLASSES, (n,), generator=g)


def ids(params) -> set[int]:
    return {id(p) for p in params}


@pytest.mark.parametrize("teacher,student", PAIRS, ids=[f"{t}->{s}" for t, s in PAIRS])
def test_fusion_pair(teacher, student):
    method, s, t = make(teacher, student)
    x, y = batch()
    teacher_before = {k: v.clone() for k, v in t.model.state_dict().items()}

    # forward and backward run, with every term of the three pairs
    out = method(x, y)
    assert set(out.losses) == {"ce", "fusion/ce", "ts/nce", "ts/logit", "tf/nce", "tf/logit", "fs/nce", "fs/logit"}
    assert all(torch.isfinite(v) for v in out.losses.values())
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    sum(out.losses.values()).backward()
    opt.step()

    # the teacher never receives gradients and never changes
    assert all(p.grad is None and not p.requires_grad for p in t.model.parameters())
    after = t.model.state_dict()
    assert all(torch.equal(teacher_before[k], after[k]) for k in teacher_before)

    # the only parameters beyond the student's are the projector's and the loss heads'
    new = ids(method.parameters()) - ids(s.model.parameters())
    assert new == ids(method.fusion.parameters()) | ids(method.pair_losses.parameters())
    assert not ids(method.fusion.parameters()) & (ids(t.model.parameters()) | ids(s.model.parameters()))

    # F borrows the back model's modules live: changing its classifier changes F's logits
    back = t if method.plan.back == "teacher" else s
    method.eval()
    with torch.no_grad():
        before = method.predict(x)["fusion"].clone()
        weight = back.model.get_classifier().weight
        weight.add_(torch.randn_like(weight))
        assert not torch.allclose(method.predict(x)["fusion"], before)


@pytest.mark.parametrize("teacher,student", [("mixer", "cnn"), ("cnn", "vit"), ("cnn", "cnn"), ("vit", "mixer")])
@pytest.mark.parametrize("detach", [True, False])
def test_fusion_to_student_loss_and_the_projector(teacher, student, detach):
    """With detach_target, L(K_f, K_s) teaches the student only: no gradient reaches L2G."""
    method, _, _ = make(teacher, student, detach_target=detach)
    x, y = batch()
    out = method(x, y)
    (out.losses["fs/nce"] + out.losses["fs/logit"]).backward()
    grads = [p.grad for p in method.fusion.projector.parameters()]
    reached = any(g is not None and g.abs().sum() > 0 for g in grads)
    assert reached is (not detach)


@pytest.mark.parametrize("teacher,student", [("mixer", "cnn"), ("cnn", "vit"), ("swin", "mobilenetv2")])
def test_stage3_reuse_equals_recomputing(teacher, student):
    method, s, t = make(teacher, student)
    method.eval()
    x, _ = batch()
    with torch.no_grad():
        reused = method.features(x)["fusion"]
        front = s if method.plan.front == "student" else t
        recomputed = method.fusion(front.run_to(x, 3)[-1])
    assert torch.equal(reused.logits, recomputed.logits)
    assert torch.equal(reused.feature, recomputed.feature)


def test_the_plan_follows_the_families():
    assert make("mixer", "cnn")[0].plan.front == "student"  # student stages 1–3 → teacher stage 4
    assert make("cnn", "vit")[0].plan.front == "teacher"  # teacher stages 1–3 → student stage 4
    homogeneous = make("cnn", "mobilenetv2")[0]
    assert (homogeneous.plan.front, homogeneous.plan.kind) == ("student", "bridge")
    assert homogeneous.fusion.projector.block is None  # CNN→CNN: conv 1×1 + norm, no attention


@pytest.mark.parametrize("switch,expected_terms", [
    ({"use_nce": False}, {"ce", "fusion/ce", "ts/logit", "tf/logit", "fs/logit"}),
    ({"use_logit": False}, {"ce", "fusion/ce", "ts/nce", "tf/nce", "fs/nce"}),
    ({"use_tf": False}, {"ce", "fusion/ce", "ts/nce", "ts/logit", "fs/nce", "fs/logit"}),
    ({"feature_loss": "mse"}, {"ce", "fusion/ce", "ts/mse", "ts/logit", "tf/mse", "tf/logit", "fs/mse", "fs/logit"}),
    ({"fusion_ce": False, "use_ts": False, "use_fs": False}, {"ce", "tf/nce", "tf/logit"}),
])
def test_ablation_switches_change_the_objective(switch, expected_terms):
    method, _, _ = make("mixer", "cnn", **switch)
    x, y = batch()
    out = method(x, y)
    assert set(out.losses) == expected_terms == set(method.loss_terms())


def test_l2g_without_attention_or_stage4():
    plain, _, _ = make("mixer", "cnn")
    no_attn, _, _ = make("mixer", "cnn", l2g_attention=False)
    assert no_attn.fusion.projector.block is None and plain.fusion.projector.block is not None
    no_stage4, _, t = make("vit", "cnn", fusion_stage4=False)
    x, y = batch()
    calls = []
    hook = t.model.blocks[-1].register_forward_hook(lambda *a: calls.append(1))
    no_stage4.fusion(no_stage4.student_view.run_to(x, 3)[-1])
    hook.remove()
    assert calls == []  # F went from L2G straight to the teacher's head


def test_learnable_temperature_is_clamped():
    method, _, _ = make("mixer", "cnn", nce_tau=0.07, nce_tau_min=0.05, nce_tau_max=0.5)
    loss = method.pair_losses["ts"]
    with torch.no_grad():
        loss.log_tau.fill_(10.0)
    assert loss.tau.item() == pytest.approx(0.5)
    fixed, _, _ = make("mixer", "cnn", learn_tau=False)
    assert not fixed.pair_losses["ts"].log_tau.requires_grad
