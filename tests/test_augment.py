"""Batched augmentations: shapes, ranges, identities and per-image independence."""

from __future__ import annotations

import os
import random

import pytest
import numpy as np
import torch

from conftest import compiler_failing_at
from fbt_engine.config.schema import DataSection
from fbt_engine.data.augment import (
    RAND_OPS, mix_batch, rand_augment, random_erasing, random_resized_crop, step_generator,
)
from fbt_engine.data.sources import LoaderBatches, load_data
from fbt_engine.data.specs import parse_randaugment


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 16, c: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=gen(1), dtype=torch.uint8)


def test_step_generator_depends_only_on_seed_epoch_step():
    a = torch.rand(4, generator=step_generator(torch.device("cpu"), 3, 2, 7))
    b = torch.rand(4, generator=step_generator(torch.device("cpu"), 3, 2, 7))
    c = torch.rand(4, generator=step_generator(torch.device("cpu"), 3, 2, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_resized_crop_upsamples_like_bilinear_on_a_full_box():
    x = images().float()
    full = random_resized_crop(x, 224, (1.0, 1.0), (1.0, 1.0), gen())
    ref = torch.nn.functional.interpolate(x, size=224, mode="bilinear", align_corners=False)
    assert full.shape == (16, 3, 224, 224)
    assert (full - ref).abs().max() < 1e-2
    assert torch.equal(random_resized_crop(x, 32, (1.0, 1.0), (1.0, 1.0), gen()), x)


def test_random_resized_crop_draws_a_box_per_image():
    x = images(8).float()
    same = x[:1].expand(8, -1, -1, -1).contiguous()
    out = random_resized_crop(same, 32, (0.08, 1.0), (3 / 4, 4 / 3), gen())
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) > 1  # different crops of one image
    assert out.min() >= 0 and out.max() <= 255


def test_random_erasing_fills_one_box_per_chosen_image():
    x = torch.zeros(32, 3, 28, 28)
    out = random_erasing(x, 1.0, gen())
    erased = (out != 0).flatten(1).any(1)
    assert erased.float().mean() > 0.9
    area = (out != 0)[:, 0].flatten(1).float().mean(1)
    assert area.max() <= 1 / 3 + 0.05
    assert torch.equal(random_erasing(x, 0.0, gen()), x)


@pytest.mark.parametrize("name", list(RAND_OPS))
def test_each_rand_op_keeps_shape_and_range(name):
    x = images(6).float()
    out = RAND_OPS[name](x, torch.full((6,), 9.0), gen(), torch.tensor([128.0, 128.0, 128.0]))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255


def test_sharpness_matches_torchvision_per_image():
    """RandAugment's sharpness is PIL's (torchvision's adjust_sharpness) at each image's own factor."""
    import torchvision.transforms.functional as TF

    from fbt_engine.data.augment import _enhance_factor

    x, level = images(6), torch.full((6,), 9.0)
    out = RAND_OPS["SharpnessIncreasing"](x.float(), level, gen(3), torch.tensor([128.0, 128.0, 128.0]))
    factors = _enhance_factor(level, gen(3))
    for image, factor, got in zip(x, factors.tolist(), out):
        # torchvision rounds its smoothed image (±0.5) and its result (< 1) to uint8; a wrong kernel
        # would be tens of levels off
        assert (got - TF.adjust_sharpness(image, factor).float()).abs().max() < 1.5


def test_rand_augment_is_seeded_and_changes_images():
    x = images()
    fill = torch.tensor([128.0, 128.0, 128.0])
    a = rand_augment(x, "rand-m9-mstd0.5-inc1", fill, gen(5))
    b = rand_augment(x, "rand-m9-mstd0.5-inc1", fill, gen(5))
    assert a.dtype == torch.uint8 and torch.equal(a, b)
    assert (a != x).flatten(1).any(1).float().mean() > 0.3  # two ops at p=0.5 each: most images change
    assert torch.equal(rand_augment(x, "rand-m0-n0", fill, gen(5)), x)


def test_randaugment_spec_parsing():
    assert parse_randaugment("rand-m9-mstd0.5-inc1") == (9.0, 0.5, 2)
    assert parse_randaugment("rand-m7-n3") == (7.0, 0.0, 3)
    with pytest.raises(ValueError, match="unsupported"):
        parse_randaugment("rand-m9-w0")


@pytest.mark.parametrize("mixup,cutmix", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mix_batch_gives_soft_targets_that_match_the_pixels(mixup, cutmix):
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(4)])
    y = torch.tensor([0, 1, 2, 3])
    mixed, target = mix_batch(x, y, 4, mixup, cutmix, 1.0, 0.5, np.random.default_rng(0))
    assert torch.allclose(target.sum(1), torch.ones(4))
    # image 0 is mixed with image 3 (the batch reversed): its mean pixel is the targets' mix
    lam = target[0, 0].item()
    assert mixed[0].mean().item() == pytest.approx(lam * 0 + (1 - lam) * 3, abs=1e-5)
    assert target[0, 3].item() == pytest.approx(1 - lam, abs=1e-6)


def test_mix_batch_off_gives_one_hot_targets():
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    same, target = mix_batch(x, y, 4, 0.8, 1.0, 0.0, 0.5, np.random.default_rng(0))
    assert torch.equal(same, x) and torch.equal(target, torch.eye(4))


PAPER_AUG = dict(augmentation="rrc", img_size=32, randaugment="rand-m9-mstd0.5-inc1", random_erasing=0.25,
                 mixup=0.8, cutmix=1.0, subset=200, batch_size=32, workers=0)


@pytest.mark.parametrize("pipeline", ["device", "classic"])
def test_both_pipelines_give_normalised_batches_of_the_same_form(pipeline):
    data = load_data(DataSection(pipeline=pipeline, **PAPER_AUG), torch.device("cpu"), seed=0)
    x, y = next(iter(data.train.epoch(0)))
    assert x.shape == (32, 1, 32, 32) and x.dtype == torch.float32
    assert y.shape == (32, 10) and torch.allclose(y.sum(1), torch.ones(32))  # Mixup/CutMix soft targets
    assert -3 < x.mean().item() < 3
    vx, vy = next(iter(data.val.epoch(0)))
    assert vx.shape[1:] == (1, 32, 32) and vy.dtype == torch.int64  # evaluation: plain images, hard labels


@pytest.mark.parametrize("pipeline", ["device", "classic"])
def test_an_unmixed_epoch_is_the_training_epoch_before_its_mixup(pipeline):
    """What PreciseBN measures on: the same augmented images, the same order, not yet mixed."""
    data = load_data(DataSection(pipeline=pipeline, **PAPER_AUG), torch.device("cpu"), seed=3)
    mixed, plain = list(data.train.epoch(1)), list(data.train.epoch(1, mix=False))
    assert len(plain) == len(mixed) and all(y.dim() == 1 for _, y in plain)
    for step, ((x, y), (mx, my)) in enumerate(zip(plain, mixed)):
        again = data.train.aug.mix(x, y, 3, 1, step)
        assert torch.equal(again[0], mx) and torch.equal(again[1], my)
    assert not torch.equal(plain[0][0], mixed[0][0])


def test_device_pipeline_batches_are_reproducible_from_any_step():
    data = load_data(DataSection(pipeline="device", **PAPER_AUG), torch.device("cpu"), seed=3)
    full = list(data.train.epoch(1))
    tail = list(data.train.epoch(1, start_step=2))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[2:], tail))


def _classic(workers: int):
    """The paper protocol's per-image transforms (timm's RandAugment, random-resized-crop, flip,
    random erasing) in a loader with `workers` processes."""
    return load_data(DataSection(pipeline="classic", **{**PAPER_AUG, "workers": workers}), torch.device("cpu"),
                     seed=3).train


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))


def test_classic_batches_depend_only_on_seed_epoch_and_step_whatever_the_workers():
    """Each image's transforms are seeded by (seed, epoch, index): no workers, two persistent
    workers and a resumed epoch all give the same batches, augmentation included."""
    alone = _classic(0)
    first = list(alone.epoch(1))
    two = _classic(2)
    assert _same(list(two.epoch(1)), first)
    assert _same(list(two.epoch(1, start_step=2)), first[2:])
    second = list(two.epoch(2))  # workers that persisted: the next epoch's seeds, not the last's
    assert _same(second, list(alone.epoch(2))) and not _same(second, first)


class _Pids(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        return torch.zeros(1), os.getpid()


def test_loader_workers_persist_from_epoch_to_epoch():
    """A small-image epoch lasts a second or two: workers restarted every epoch would pay their
    start-up every epoch."""
    batches = LoaderBatches(_Pids(), DataSection(batch_size=4, workers=2), torch.device("cpu"), seed=0, train=True)
    first = {int(pid) for _, y in batches.epoch(0) for pid in y}
    assert len(first) == 2 and os.getpid() not in first
    assert {int(pid) for _, y in batches.epoch(1, start_step=3) for pid in y} == first


def test_classic_transforms_without_workers_leave_the_training_generators_alone():
    """Seeding each image's transforms in the main process must not reseed the training's draws."""
    data = _classic(0)

    def draws():
        return torch.rand(3).tolist(), random.random(), np.random.rand()

    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    expected = draws()
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    list(data.epoch(0))
    assert draws() == expected


@pytest.mark.parametrize("img_size", [0, 36])  # the dataset's own 28 px, and resized after the crop
def test_the_compiled_standard_augmentation_makes_the_eager_batches(img_size):
    """On a GPU the crop, flip and normalisation are compiled into a kernel or two (their launches
    are what a small model's step waits on); here a real compile on the CPU must give the batches
    the eager ops give, draw for draw."""
    torch._dynamo.reset()  # a compilation cached by an earlier test would not count as one
    section = DataSection(pad=2, batch_size=64, subset=256, img_size=img_size, workers=0)
    eager = list(load_data(section, torch.device("cpu"), seed=5).train.epoch(2))
    train = load_data(section, torch.device("cpu"), seed=5).train
    failures = []
    train.compile_augmentation(failures.append)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = list(train.epoch(2))
    assert failures == [] and torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # it did compile
    assert len(compiled) == len(eager) and eager[0][0].shape[-1] == (img_size or 28)
    for (x, y), (u, v) in zip(compiled, eager):
        assert torch.equal(y, v) and torch.allclose(x, u, atol=1e-5)


@pytest.mark.parametrize("fails_at", ["compile", "call"])
def test_a_failing_augmentation_compiler_leaves_it_eager_and_says_why_once(monkeypatch, fails_at):
    calls = []
    failing = compiler_failing_at(1, "no C++ compiler found", calls)

    def broken_compile(fn, **kwargs):
        if fails_at == "compile":
            raise RuntimeError("no C++ compiler found")
        return failing(fn, **kwargs)

    section = DataSection(pad=2, batch_size=64, subset=256, workers=0)
    eager = list(load_data(section, torch.device("cpu"), seed=5).train.epoch(0))
    train = load_data(section, torch.device("cpu"), seed=5).train
    monkeypatch.setattr(torch, "compile", broken_compile)
    failures = []
    train.compile_augmentation(failures.append)
    assert _same(list(train.epoch(0)), eager)
    assert failures == ["RuntimeError: no C++ compiler found"] and len(calls) == (fails_at == "call")


def test_past_the_first_batch_an_augmentation_error_is_its_own(monkeypatch):
    """Compiling happens at the first batch; an error later (an out-of-memory, say) is not blamed on
    the compiler, nor hidden by an eager retry."""
    train = load_data(DataSection(pad=2, batch_size=64, subset=256, workers=0), torch.device("cpu"), seed=5).train
    monkeypatch.setattr(torch, "compile", compiler_failing_at(2, "CUDA out of memory", []))
    failures = []
    train.compile_augmentation(failures.append)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        list(train.epoch(0))
    assert failures == []
