"""One short real training run per method: every loss term it logs falls."""

from __future__ import annotations

import shutil

import pytest

from conftest import PRESETS, TINY, run_fbt, tiny_sets
from fbt_engine.store.events import effective
from fbt_engine.store.runs import RunStore
from fbt_engine.train.engine import RunOptions, run

# A teacher that has learnt something (a near-uniform one makes KD terms start near zero), then
# three epochs of the tiny run with a step event every 2 steps.
TEACHER = "teacher.recipe.epochs=5"
SETS = [*TINY, TEACHER, "train.epochs=3", "optim.lr=0.05"]
WINDOW = 3  # step events averaged at each end


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory):
    home = tmp_path_factory.mktemp("trained-teacher")
    result = run_fbt("run", str(PRESETS / "mlp_to_cnn.toml"), *tiny_sets(TEACHER), home=home)
    assert result.returncode == 0, result.stderr
    return home / "teachers"


@pytest.mark.parametrize("method, extra", [
    ("scratch", []), ("kd", []), ("ofa_logit", []), ("fitnet_mse", []), ("fbt", []),
    ("fbt", ['train.channels_last="on"']),  # CUDA's default, whose NHWC tensors meet the fusion's reshapes
])
def test_every_loss_term_falls(fbt_home, trained_teacher, method, extra):
    shutil.copytree(trained_teacher, fbt_home / "teachers")
    code = run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), sets=[*SETS, f'method.name="{method}"', *extra],
                          quiet=True))
    assert code == 0
    store = RunStore()
    steps = [e for e in effective(store.events(store.resolve("last")))
             if e["type"] == "step" and e["phase"] == "distillation"]
    assert len(steps) >= 2 * WINDOW
    terms = steps[0]["losses"].keys()
    for term in terms:
        first = sum(e["losses"][term] for e in steps[:WINDOW]) / WINDOW
        last = sum(e["losses"][term] for e in steps[-WINDOW:]) / WINDOW
        assert last < first, f"{method}: {term} went from {first:.4f} to {last:.4f}"
