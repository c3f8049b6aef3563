"""The training step never waits for the device (issue 5): between log steps, nothing in a step —
data, augmentation, forward, losses, backward, optimiser, EMA — reads a tensor back to the host.
On a GPU each such read stalls Python until every queued kernel has run, so the next step's
kernels start only after it and the GPU idles while Python catches up.

Real tiny runs, in this process, with every aten op watched: the ops that must read a tensor's
value (`.item()`, `bool(t)`, `nonzero`, boolean indexing, …) are recorded with the functions on
the stack, as are Python calls of `.tolist()`, `.cpu()` and `.numpy()` (which on a CPU tensor need
no aten op). Reading back is the point of the log step (`_log_interval`) and the epoch's end
(`_end_epoch`: evaluation, alignment stats, checkpoints), so reads there are allowed."""

from __future__ import annotations

import sys
import time
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import PRESETS, TINY
from fbt_engine.store.runs import RunStore
from fbt_engine.train.engine import RunOptions, run
from fbt_engine.train.loop import READ_BACK_AT, read_site

# aten ops whose result (or its size) depends on a tensor's values, so the host must wait for the
# device; some of them (bincount, histc) read only on CUDA
SYNCING_OPS = {"_local_scalar_dense", "is_nonzero", "nonzero", "masked_select", "_unique2", "unique_dim",
               "unique_consecutive", "equal", "repeat_interleave", "bincount", "histc"}
INDEXING_OPS = {"index", "index_put", "index_put_"}  # with a boolean mask: a nonzero inside
# a tensor made from host data (`torch.tensor(...)`): on CUDA a copy from pageable memory, which waits
HOST_DATA_OPS = {"lift_fresh"}
# Tensor methods that copy to the host whatever the device (`.to(device)` is left out: on this
# CPU-only machine a move to the tensor's own device looks the same as a copy to the host)
SYNCING_METHODS = ("tolist", "cpu", "numpy")
# torch.optim's `_get_value` reads the optimiser's step counters, tensors that stay on the CPU
# unless the optimiser is fused, as fbt's is on CUDA: a read here costs no device sync there
READ_BACK_ALLOWED = READ_BACK_AT | {"_get_value"}
# torch.optim makes its step counters from host numbers on the CPU (`device="cpu"`): no copy to the
# device there, and fbt's optimisers are fused on CUDA, where the counters are made on the device
HOST_DATA_ALLOWED_IN = "/torch/optim/"
EVERY_AUGMENTATION = ['data.augmentation="rrc"', "data.img_size=32", 'data.randaugment="rand-m9-mstd0.5-inc1"',
                      "data.random_erasing=0.25", "data.mixup=0.8", "data.cutmix=1.0"]


class SyncProbe(TorchDispatchMode):
    """Every host read made inside a training step, as (what, the innermost fbt functions)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    def record(self, what: str) -> None:
        stack = traceback.extract_stack()
        if what in HOST_DATA_OPS and any(HOST_DATA_ALLOWED_IN in frame.filename for frame in stack):
            return
        site = read_site(stack, READ_BACK_ALLOWED)
        if site is not None and not site[1]:
            self.reads.append((what, site[0]))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS or name in HOST_DATA_OPS or (name in INDEXING_OPS and _has_bool_index(args)):
            self.record(name)
        return func(*args, **(kwargs or {}))


def _has_bool_index(args: tuple) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)


@pytest.fixture
def probe(monkeypatch):
    with SyncProbe() as mode:
        for method in SYNCING_METHODS:
            original = getattr(torch.Tensor, method)

            def watched(self, *args, _original=original, _name=method, **kwargs):
                mode.record(f"Tensor.{_name}()")
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, method, watched)
        yield mode


@pytest.mark.parametrize("method, extra", [
    ("fbt", EVERY_AUGMENTATION + ["train.ema=0.99", "optim.grad_clip=1.0"]),
    ("scratch", []),
    ("kd", []),
    ("ofa_logit", []),
    ("fitnet_mse", []),
])
def test_no_step_reads_the_device_between_log_steps(with_cached_teacher, probe, method, extra):
    code = run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), quiet=True,
                          sets=[*TINY, f'method.name="{method}"', "train.log_every=4", *extra]))
    assert code == 0
    assert not probe.reads, "host reads inside training steps:\n" + "\n".join(
        f"  {what}: {where}" for what, where in sorted(set(probe.reads)))


@pytest.mark.parametrize("read, seen_as", [
    (lambda t: float(t), "_local_scalar_dense"),  # what a careless progress print would do
    (lambda t: t.tolist(), "Tensor.tolist()"),
    (lambda t: t[t > 0], "index"),
    (lambda t: t + torch.tensor([1.0], device=t.device), "lift_fresh"),  # a constant made per step
])
def test_the_probe_sees_a_read_inside_a_step(with_cached_teacher, probe, monkeypatch, read, seen_as):
    """The check above could pass by watching nothing: a step that reads a loss must be caught."""
    from fbt_engine.train import loop

    original = loop.TrainStep.__call__

    def reading(self, x, y):
        out = original(self, x, y)
        read(out.values[1:2])  # the first loss term
        return out

    monkeypatch.setattr(loop.TrainStep, "__call__", reading)
    assert run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), quiet=True, sets=[*TINY])) == 0
    assert any(what == seen_as for what, _ in probe.reads)


WAIT_S = 2.0


def test_a_step_events_img_s_counts_the_wait_for_the_device(with_cached_teacher, monkeypatch):
    """On a GPU the loop runs ahead of the device until the log step reads back; the interval's
    time must end after that read, else img/s measures how fast Python queues kernels. The read
    is made slow here (2 s), as a busy device would make it: no interval of 4 steps × 64 images
    may then claim more than 256 / 2 images/s (this CPU trains 3–5 times faster than that)."""
    original = torch.Tensor.tolist

    def slow_when_logging(self, *args, **kwargs):
        if sys._getframe(1).f_code.co_name == "_log_interval":
            time.sleep(WAIT_S)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "tolist", slow_when_logging)
    assert run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), quiet=True,
                          sets=[*TINY, "train.log_every=4"])) == 0
    store = RunStore()
    steps = [e for e in store.events(store.resolve("last")) if e["type"] == "step" and e["phase"] == "distillation"]
    assert steps and all(e["img_s"] <= 4 * 64 / WAIT_S for e in steps), [round(e["img_s"]) for e in steps]
