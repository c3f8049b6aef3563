"""The loss functions against values computed by hand (plain Python math, no torch)."""

import math

import pytest
import torch

from fbt_engine.methods.losses import feature_mse, info_nce, kd_loss, ofa_loss, unit_distance


def softmax(row, t=1.0):
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def test_info_nce_on_a_3x2_toy_batch():
    learner = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    source = [[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]]
    tau = 0.5
    unit = lambda v: [x / math.hypot(*v) for x in v]  # noqa: E731
    ln, sn = [unit(v) for v in learner], [unit(v) for v in source]
    expected = 0.0
    for i in range(3):
        logits = [sum(a * b for a, b in zip(ln[i], sn[j])) / tau for j in range(3)]
        expected += -math.log(softmax(logits)[i])
    expected /= 3
    got = info_nce(torch.tensor(learner), torch.tensor(source), tau, gather=False)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # By hand: rows' positive probabilities 0.5910, 0.3290, 0.2634 → mean −log = 0.9906
    assert got.item() == pytest.approx(0.9906, abs=1e-3)


@pytest.mark.parametrize("loss", [
    lambda a, b: info_nce(a, b, 0.07), lambda a, b: ofa_loss(a[:, :10], b[:, :10], torch.arange(64) % 10),
    lambda a, b: kd_loss(a[:, :10], b[:, :10], 4.0), unit_distance,
])
def test_the_losses_compute_in_fp32_under_bf16_autocast(loss):
    """Training runs under bf16 autocast on CUDA; the losses must not: InfoNCE's similarities over
    τ ≈ 0.07 span ±14, and a bf16 matmul there moved the loss by 2e-4 (here, on random rows)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 256, generator=g), torch.randn(64, 256, generator=g)
    exact = loss(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(a, b)
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(exact.item(), rel=1e-6)


def test_unit_distance_is_the_distance_between_unit_rows_whatever_their_scale():
    learner = torch.tensor([[3.0, 0.0], [0.0, 5.0]])
    source = torch.tensor([[0.0, 100.0], [0.0, 0.1]])
    # row 1: orthogonal unit vectors, distance² 2; row 2: the same direction, 0 → mean 1
    assert unit_distance(learner, source).item() == pytest.approx(1.0, abs=1e-6)
    assert unit_distance(1e4 * learner, source).item() == pytest.approx(1.0, abs=1e-6)


def test_fitnet_mse_is_the_plain_element_wise_mean():
    """FitNet's hint loss on (B, C, H, W) maps: no normalisation along any axis."""
    learner = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    source = torch.tensor([1.0, 0.0, 3.0, 0.0]).reshape(1, 1, 2, 2)
    assert feature_mse(learner, source).item() == pytest.approx((0 + 4 + 0 + 16) / 4)


@pytest.mark.parametrize("eps", [1.0, 1.5])
@pytest.mark.parametrize("drop_ce", [False, True])
def test_ofa_matches_the_formula(eps, drop_ce):
    s = [[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]]
    t = [[2.0, 0.0, 1.0], [0.0, 0.5, 1.5]]
    labels = [1, 2]
    expected = 0.0
    for srow, trow, c in zip(s, t, labels):
        ps, pt = softmax(srow), softmax(trow)
        for k in range(3):
            weight = (1 + pt[k]) ** eps - (1 if drop_ce else 0) if k == c else pt[k] ** eps
            expected += -weight * math.log(ps[k])
    expected /= 2
    got = ofa_loss(torch.tensor(s), torch.tensor(t), torch.tensor(labels), eps=eps, drop_ce=drop_ce)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_ofa_at_eps_one_is_cross_entropy_against_teacher_plus_onehot():
    s, t, y = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    target = torch.softmax(t, -1) + torch.nn.functional.one_hot(y, 5)
    expected = -(target * torch.log_softmax(s, -1)).sum(-1).mean()
    assert ofa_loss(s, t, y, eps=1.0, drop_ce=False).item() == pytest.approx(expected.item(), rel=1e-6)


def test_kd_is_kl_times_t_squared():
    s, t, temp = [[1.0, 2.0, 3.0]], [[3.0, 1.0, 0.0]], 4.0
    ps, pt = softmax(s[0], temp), softmax(t[0], temp)
    expected = sum(p * math.log(p / q) for p, q in zip(pt, ps)) * temp**2
    assert kd_loss(torch.tensor(s), torch.tensor(t), temp).item() == pytest.approx(expected, rel=1e-6)
