"""The shipped presets: valid, FBT, and a fusion model that adds at most 10 % of the student."""

from __future__ import annotations

import pytest

from conftest import PRESETS
from fbt_engine.config.presets import resolve
from fbt_engine.methods.base import build_method
from fbt_engine.models.factory import build_staged, count_params

SHIPPED = ["mlp_to_cnn", "vit_to_cnn", "cnn_to_vit", "cnn_to_mlp", "cnn_to_cnn"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_preset_is_fbt_with_a_small_fusion_model(name):
    cfg = resolve(PRESETS / f"{name}.toml").config
    assert cfg.method.name == "fbt" and cfg.data.name == "fashion_mnist_5k"
    student = build_staged(cfg.student.model, 10, 28, cfg.student.kwargs)
    teacher = build_staged(cfg.teacher.model, 10, 28, cfg.teacher.kwargs)
    method = build_method(student, teacher, cfg.method, cfg.train.label_smoothing)
    assert count_params(method.fusion) <= 0.10 * count_params(student.model)
    assert student.is_cnn != teacher.is_cnn or name == "cnn_to_cnn"
