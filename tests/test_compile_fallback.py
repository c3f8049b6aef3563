"""train.compile: a compiler that fails (no toolchain, unsupported backend) never fails the run."""

from __future__ import annotations

import torch

from conftest import PRESETS, TINY
from fbt_engine.store.runs import RunStore
from fbt_engine.train.engine import RunOptions, run


def test_a_failing_compiler_falls_back_to_eager_with_one_warning(with_cached_teacher, monkeypatch):
    calls = []

    def broken_compile(module, **kwargs):
        def compiled(*args, **kw):
            calls.append(1)
            raise RuntimeError("no C++ compiler found")  # what a machine without a toolchain says
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    code = run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), sets=[*TINY, 'train.compile="on"'], quiet=True))
    assert code == 0
    store = RunStore()
    events = store.events(store.resolve("last"))
    warnings = [e for e in events if e["type"] == "warning"]
    assert len(warnings) == 1 and "torch.compile failed" in warnings[0]["message"]
    assert "no C++ compiler found" in warnings[0]["message"]
    assert calls == [1]  # tried once, then eager for good
    assert events[-1]["type"] == "run_finished"
