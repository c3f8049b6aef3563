"""Batched augmentations: shapes, ranges, identities and per-image independence."""

from __future__ import annotations

import pytest
import torch

from fbt_engine.data.augment import (
    RAND_OPS, parse_randaugment, rand_augment, random_erasing, random_resized_crop, step_generator,
)


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
