"""The FBT method on every pair of model families (METHOD §2): assembly, weight sharing, what
trains and what stays frozen, gradient flow of the detached target, and the stage-3 reuse."""

from __future__ import annotations

import itertools
import math

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


@pytest.mark.parametrize("pool", ["avg", "cls"])
def test_without_stage4_a_class_token_head_still_sees_the_image(pool):
    """With no block after L2G, F's class token was L2G's parameter alone: a head that reads it (timm's
    ViTs, the paper's ViT-S and DeiT-T) gave every image the same logits, and pool = "cls" the same
    feature."""
    torch.manual_seed(0)
    t = build_staged(FAMILIES["vit"], CLASSES, SIZE, {"global_pool": "token"})
    s = build_staged(FAMILIES["cnn"], CLASSES, SIZE)
    method = build_method(s, t, FBTParams(fusion_stage4=False, pool=pool), label_smoothing=0.1)
    x, _ = batch(6)
    out = method.fusion(method.student_view.run_to(x, 3)[-1])
    assert out.logits.std(dim=0).min() > 0 and out.feature.std(dim=0).min() > 0
    with_stage4 = build_method(s, t, FBTParams(pool=pool), label_smoothing=0.1)
    assert not with_stage4.fusion.projector.prefix_sees_tokens  # its blocks let the token attend


def test_learnable_temperature_is_clamped():
    method, _, _ = make("mixer", "cnn", nce_tau=0.07, nce_tau_min=0.05, nce_tau_max=0.5)
    loss = method.pair_losses["ts"]
    with torch.no_grad():
        loss.log_tau.fill_(10.0)
    assert loss.tau.item() == pytest.approx(0.5)
    # past the bound the loss still pulls on it (a plain clamp passes no gradient there, and the
    # temperature stayed stuck), and the loop's clamp in place brings it back to the bound
    source = torch.randn(8, loss.source_head.in_features)
    learner = torch.randn(8, loss.learner_head.in_features)
    loss(source, learner).backward()
    assert loss.log_tau.grad.item() != 0.0
    method.keep_in_range()
    assert loss.log_tau.item() == pytest.approx(math.log(0.5)) and loss.tau.item() == pytest.approx(0.5)
    fixed, _, _ = make("mixer", "cnn", learn_tau=False)
    assert not fixed.pair_losses["ts"].log_tau.requires_grad


@pytest.mark.parametrize("teacher,student", [("mixer", "cnn"), ("cnn", "vit")])  # F borrows its back, its front
def test_an_unfrozen_teacher_trains_what_f_borrows_and_nothing_else(teacher, student):
    """freeze_teacher_in_fusion = false: exactly the teacher modules F computes with are trainable
    and get gradients (a trainable parameter without one fails DDP), and the teacher is not counted
    as a module the method adds."""
    method, s, t = make(teacher, student, freeze_teacher_in_fusion=False)
    borrowed = ids(method.borrowed_teacher_parameters())
    assert borrowed and borrowed == ids(q for q in t.model.parameters() if q.requires_grad)
    x, y = batch()
    sum(method(x, y).losses.values()).backward()
    assert ids(q for q in t.model.parameters() if q.grad is not None) == borrowed
    frozen, _, _ = make(teacher, student)
    assert ({k: sum(q.numel() for q in m.parameters()) for k, m in method.new_modules().items()}
            == {k: sum(q.numel() for q in m.parameters()) for k, m in frozen.new_modules().items()})


def test_an_unfrozen_teacher_trained_in_the_run_still_trains_inside_f(fbt_home):
    """The teacher phase trains the whole teacher and hands it back as the method left it: the
    modules F borrows go on training during distillation, the others stay as the phase left them."""
    from safetensors.torch import load_file

    from conftest import PRESETS, TINY
    from fbt_engine.store.runs import RunStore
    from fbt_engine.train.engine import RunOptions, run

    sets = [*TINY, 'method.name="fbt"', "method.freeze_teacher_in_fusion=false"]
    assert run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), sets=sets, quiet=True)) == 0
    store = RunStore()
    (cached,) = (fbt_home / "teachers").glob("*/*.safetensors")
    after_teacher_phase = load_file(cached)
    final = torch.load(store.run_dir(store.resolve("last")) / "checkpoints" / "last.pt", weights_only=False)["method"]
    prefix = "teacher_in_fusion."
    changed = {k[len(prefix):] for k, v in final.items()
               if k.startswith(prefix) and not torch.equal(v.cpu(), after_teacher_phase[k[len(prefix):]])}
    assert changed and all(k.startswith(("blocks.10.", "blocks.11.", "norm.", "head.")) for k in changed), changed


@pytest.mark.parametrize("teacher,student", [("vit", "cnn"), ("cnn", "vit")])
def test_pool_cls_reads_the_class_token_of_every_token_model(teacher, student):
    """pool = "cls": the teacher's, the student's and F's pooled features are all class tokens
    where the model has one, so each InfoNCE pair compares like with like."""
    method, s, t = make(teacher, student, pool="cls")
    x, y = batch()
    out = method.features(x)
    for view, feats in ((t, out["teacher"]), (s, out["student"])):
        expected = feats.stages[3][:, 0] if view.specs[3].prefix_tokens else feats.stages[3].mean(dim=(2, 3))
        assert torch.equal(feats.head.feature, expected)


def test_l2g_takes_its_class_token_from_the_teacher_the_run_trained(fbt_home, capsys):
    """F's class token and position embedding start as the back model's own (METHOD §2). A teacher
    trained in the run is untrained when F is built: F takes them again once it is trained, so the
    first run of a preset starts distillation where a run on the cached teacher does. At lr 0,
    distillation leaves them where they started (and the run warns that it will, on stderr too)."""
    from conftest import PRESETS, TINY, warnings_of
    from fbt_engine.config.presets import resolve
    from fbt_engine.store.events import read_events
    from fbt_engine.store.runs import RunStore
    from fbt_engine.train.engine import RunOptions, prepare, run

    preset, sets = str(PRESETS / "vit_to_cnn.toml"), [*TINY, "optim.lr=0"]
    assert run(RunOptions(preset=preset, sets=sets)) == 0
    store = RunStore()
    warning = "--set: optim.lr: is 0: no weight will learn (BatchNorm's running statistics still move)"
    events = read_events(store.run_dir(store.resolve("last")) / "events.jsonl")
    assert warnings_of(events) == [warning]
    assert f"warning: {warning}" in capsys.readouterr().err
    final = torch.load(store.run_dir(store.resolve("last")) / "checkpoints" / "last.pt", weights_only=False)["method"]
    on_cached_teacher = prepare(resolve(preset, sets), torch.device("cpu")).method.fusion.projector
    assert on_cached_teacher.prefix is not None and on_cached_teacher.pos is not None
    assert torch.equal(final["fusion.projector.prefix"], on_cached_teacher.prefix.detach())
    assert torch.equal(final["fusion.projector.pos"], on_cached_teacher.pos.detach())


@pytest.mark.parametrize("width", [64, 100, 112, 384, 20])
def test_l2g_attention_splits_any_width_into_whole_heads(width):
    """Heads of about 32 channels, as many as divide the width (a ResNet-like 112 or a 100-wide
    token model would not split into width // 32 heads)."""
    from fbt_engine.methods.fusion import WindowAttentionBlock

    block = WindowAttentionBlock(width, window=7, mlp_ratio=1.0)
    assert width % block.heads == 0 and block.heads >= max(1, width // 64)
    x = torch.randn(2, 9, 9, width)
    assert block(x).shape == x.shape


@pytest.mark.parametrize("teacher,student,front", [
    ("mixer", "cnn", "teacher"), ("cnn", "vit", "student"), ("cnn", "mobilenetv2", "teacher"), ("vit", "swin", "teacher"),
])
def test_fusion_front_puts_either_model_first(teacher, student, front):
    """fusion_front (METHOD §2's inferred plan, as a switch): F = the chosen model's stages 1–3 →
    L2G → the other's stage 4 and head; it trains, and the teacher stays frozen."""
    method, s, t = make(teacher, student, fusion_front=front)
    back = s if front == "teacher" else t
    assert (method.plan.front, method.plan.back) == (front, "student" if front == "teacher" else "teacher")
    x, y = batch()
    out = method.features(x)
    assert out["fusion"].logits.shape == (4, CLASSES) and out["fusion"].feature.shape[1] == back.specs[3].width
    sum(method(x, y).losses.values()).backward()
    assert all(q.grad is None for q in t.model.parameters())
    assert all(q.grad is not None for q in method.fusion.projector.parameters())


def test_l2g_embed_init_random_leaves_the_models_own_alone():
    """l2g_embed_init = "random": L2G's class token and positions start at timm's init, not the
    back model's, and stay so when a teacher trained in the run is handed back."""
    own, _, _ = make("vit", "cnn")
    rand, _, t = make("vit", "cnn", l2g_embed_init="random")
    assert rand.fusion.projector.prefix.shape == own.fusion.projector.prefix.shape
    assert not torch.equal(rand.fusion.projector.prefix, own.fusion.projector.prefix)
    before = rand.fusion.projector.pos.detach().clone()
    rand.teacher_trained()
    assert torch.equal(rand.fusion.projector.pos, before)
