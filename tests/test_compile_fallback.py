"""train.compile and train.compile_mode: what is compiled, in which mode, declared how; a compiler
that fails (no toolchain, unsupported backend) never fails the run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import PRESETS, REPO, TINY, compiler_failing_at, warnings_of
from fbt_engine.store.runs import RunStore
from fbt_engine.config.schema import TrainSection
from fbt_engine.train.engine import RunOptions, compile_mode, run

# The fake compilers below stand in for the training step's: on a CUDA machine the batch's
# augmentation would be compiled through them too, so these runs stay on the CPU.
COMPILED = [*TINY, 'run.device="cpu"', 'train.compile="on"']


def _run_compiled(*extra: str) -> tuple[int, list[dict]]:
    """A tiny compiled run: its exit code and its events."""
    code = run(RunOptions(preset=str(PRESETS / "mlp_to_cnn.toml"), quiet=True, sets=[*COMPILED, *extra]))
    store = RunStore()
    return code, store.events(store.resolve("last"))


def test_a_failing_compiler_falls_back_to_eager_with_one_warning(with_cached_teacher, monkeypatch):
    calls = []
    # what a machine without a toolchain says
    monkeypatch.setattr(torch, "compile", compiler_failing_at(1, "no C++ compiler found", calls))
    code, events = _run_compiled()
    assert code == 0
    warnings = warnings_of(events)
    assert len(warnings) == 1 and "torch.compile failed" in warnings[0]
    assert "no C++ compiler found" in warnings[0]
    assert calls == [1]  # tried once, then eager for good
    assert events[-1]["type"] == "run_finished"
    assert "compiling the training step" in _engine_log() and "compiled:" not in _engine_log()
    assert f"warning: {warnings[0]}" in _engine_log()  # and on stderr, for a headless run


def _backward_that_fails(params: list[torch.Tensor]) -> type[torch.autograd.Function]:
    """A node whose backward fails half-way: the gradients it leaves must not reach the retry's."""
    class Failing(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.clone()

        @staticmethod
        def backward(ctx, grad):
            for p in params:
                p.grad = torch.full_like(p, float("nan"))
            raise RuntimeError("could not lower the backward graph")
    return Failing


def _engine_log() -> str:
    """The last run's engine log (stdout.log), what the dashboard's log pane shows."""
    store = RunStore()
    return (store.run_dir(store.resolve("last")) / "stdout.log").read_text(encoding="utf-8")


def _student_weights() -> dict[str, torch.Tensor]:
    """The last run's distilled student, BatchNorm's running statistics included."""
    store = RunStore()
    return load_file(store.run_dir(store.resolve("last")) / "student.safetensors")


@pytest.mark.parametrize("student", [[], ["student.kwargs.drop_rate=0.5"]], ids=["plain", "dropout"])
def test_a_backward_that_fails_to_compile_falls_back_too(with_cached_teacher, monkeypatch, student):
    """AOTAutograd compiles the backward at the first backward, after the forward has run: that
    failure too is a compile failure, not the end of the run, and the eager retry starts from clean
    gradients (NaN ones left behind would end the run with a non-finite loss), from the running
    statistics and the random state the failed forward found (its dropout drew masks), so the
    student comes out as an eager run's would."""
    assert _run_compiled('train.compile="off"', *student)[0] == 0
    eager = _student_weights()
    calls = []

    def compile_with_a_broken_backward(fn, mode=None, **kwargs):
        failing = _backward_that_fails(list(fn.__self__.module.parameters()))

        def compiled(*args):
            calls.append(1)
            out = fn(*args)
            return out._replace(total=failing.apply(out.total))
        return compiled

    monkeypatch.setattr(torch, "compile", compile_with_a_broken_backward)
    code, events = _run_compiled(*student)
    assert code == 0
    warnings = warnings_of(events)
    assert warnings == ["torch.compile failed (RuntimeError: could not lower the backward graph); training without it"]
    assert calls == [1]
    assert events[-1]["type"] == "run_finished"
    fell_back = _student_weights()
    assert any(name.endswith("running_mean") for name in fell_back)
    for name, tensor in eager.items():
        assert torch.equal(fell_back[name], tensor), name


def test_a_failure_after_the_compiling_steps_is_the_steps_own(with_cached_teacher, monkeypatch):
    """Past the steps where compiling and CUDA graphs' recording happen, an error (an out-of-memory,
    say) is not blamed on the compiler: the run fails with it."""
    monkeypatch.setattr(torch, "compile", compiler_failing_at(5, "CUDA out of memory", []))
    code, events = _run_compiled()
    assert code != 0
    assert not warnings_of(events)
    assert events[-1]["type"] == "run_failed" and "CUDA out of memory" in events[-1]["message"]


@pytest.mark.parametrize("compile_, mode, device, world, chosen", [
    ("auto", "auto", "cpu", 1, None), ("auto", "auto", "cuda:0", 1, "reduce-overhead"),
    ("auto", "auto", "cuda:0", 2, "default"), ("auto", "reduce-overhead", "cuda:0", 2, "reduce-overhead"),
    ("auto", "default", "cuda:0", 1, "default"), ("on", "auto", "cpu", 1, "default"),
    ("on", "reduce-overhead", "cpu", 1, "reduce-overhead"),
    ("off", "reduce-overhead", "cuda:0", 1, None),
])
def test_the_compile_mode_applies_only_when_compiling(compile_, mode, device, world, chosen):
    """"auto" is CUDA graphs on one CUDA process, the default mode under DDP or on a CPU; a mode
    named is kept."""
    assert compile_mode(TrainSection(compile=compile_, compile_mode=mode), torch.device(device), world) == chosen


# `fbt run` in a process of its own, torch.compile replaced by one that notes where inductor would
# write (importing timm fixes that place, so only a fresh process shows when it is set)
_NOTING_RUN = """
import json, os, sys, torch
seen = []
torch.compile = lambda fn, mode=None, **kw: seen.append(os.environ.get("TORCHINDUCTOR_CACHE_DIR")) or fn
from fbt_engine.cli import main
code = main(["run", *sys.argv[1:]])
print(json.dumps({"code": code, "seen": seen}))
"""


@pytest.mark.parametrize("given", [False, True], ids=["fbt's", "the user's"])
def test_compiled_code_is_cached_with_fbts_data_unless_the_user_says_where(with_cached_teacher, monkeypatch, tmp_path,
                                                                           given):
    """torch.compile caches what it compiled under TORCHINDUCTOR_CACHE_DIR, /tmp by default: kept
    in fbt's data home instead, a pair's later runs warm up from it after a reboot too (on this
    CPU a tiny pair's distillation step compiled in 47 s cold, in 4.5 s warm)."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env |= {"FBT_HOME": str(with_cached_teacher)} | ({"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")} if given else {})
    sets = [arg for item in COMPILED for arg in ("--set", item)]
    result = subprocess.run([sys.executable, "-c", _NOTING_RUN, str(PRESETS / "mlp_to_cnn.toml"), *sets, "--quiet"],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["code"] == 0 and out["seen"]
    assert set(out["seen"]) == {str(tmp_path / "mine") if given else str(with_cached_teacher / "compile-cache")}


@pytest.mark.parametrize("mode, graphs", [("reduce-overhead", True), ("default", False), ("max-autotune", True)])
def test_the_mode_reaches_torch_compile_and_cuda_graph_steps_are_declared(with_cached_teacher, monkeypatch, mode, graphs):
    """CUDA graphs reuse a replay's output memory, so every step must be declared before the forward
    (torch.compiler.cudagraph_mark_step_begin). CUDA graphs cannot run here: the compiler is replaced
    by a recorder that runs the module eagerly; the run's steps are counted from its events."""
    modes, marks = [], []

    def recording_compile(module, mode=None, **kwargs):
        modes.append(mode)
        return lambda *args, **kw: module(*args, **kw)

    monkeypatch.setattr(torch, "compile", recording_compile)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    code, events = _run_compiled(f'train.compile_mode="{mode}"')
    assert code == 0
    started = next(e for e in events if e["type"] == "run_started")
    assert started["device"]["compile"] == mode
    assert set(modes) == {mode}
    steps = max(e["step"] for e in events if e["type"] == "step" and e["phase"] == "distillation")
    assert len(marks) == (steps if graphs else 0)
    # the wait for compiling is announced, and its length told once the compiling steps are done
    how = f"(torch.compile, mode {mode})"  # and ", CUDA graphs" in a graph mode on CUDA, which a CPU has none of
    log = _engine_log()
    assert f"distillation: compiling the training step {how}; its first steps take longer" in log
    assert re.search(rf"compiled: the first 3 steps, which compile and warm up, took \d+\.\d s {re.escape(how)}", log)


def test_a_steps_flag_outlives_the_next_replay(with_cached_teacher, monkeypatch):
    """A CUDA-graph replay writes its outputs into the memory of the previous replay's, and the loop
    keeps each step's finiteness flag until its log step, so it must keep a copy. Faked here by a
    compiler whose bookkeeping outputs are the same tensors at every call, overwritten in place: a
    non-finite loss at the 2nd step of a 4-step interval must still fail the run at that step."""
    calls = []

    def replaying_compile(fn, mode=None, **kwargs):
        static: dict[str, torch.Tensor] = {}

        def replay(*args):
            out = fn(*args)
            calls.append(1)
            if len(calls) == 2:
                out = out._replace(values=out.values * float("nan"), finite=torch.tensor(False))
            for name in ("values", "finite"):
                static.setdefault(name, getattr(out, name).clone()).copy_(getattr(out, name))
            return out._replace(**static)
        return replay

    monkeypatch.setattr(torch, "compile", replaying_compile)
    code, events = _run_compiled('train.compile_mode="reduce-overhead"', "train.log_every=4")
    assert code == 1
    failed = events[-1]
    assert failed["type"] == "run_failed" and failed["error"] == "NonFiniteLoss"
    assert failed["message"].startswith("non-finite loss at step 2 ")


def test_an_error_of_the_step_itself_is_not_called_a_compile_failure(with_cached_teacher, monkeypatch):
    """The compiled step fails, and so does the same step run eagerly: the run fails with the step's
    own error, and no warning blames the compiler."""
    from fbt_engine.methods.fbt import FBT

    def broken_forward(self, x, y):
        raise ValueError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, **kw: fn)
    monkeypatch.setattr(FBT, "forward", broken_forward)
    code, events = _run_compiled()
    assert code != 0
    assert not warnings_of(events)
    assert events[-1]["type"] == "run_failed" and events[-1]["error"] == "ValueError"


@pytest.mark.parametrize("dataset", ["fashion_mnist_5k", "cifar10"])  # one channel, and three
@pytest.mark.parametrize("layout", ["off", "on"])  # NCHW, and NHWC as on CUDA
def test_a_step_fed_by_either_pipeline_is_one_compiled_graph(tmp_path, monkeypatch, dataset, layout):
    """A compiled graph specialises on its input's strides, and the two pipelines' batches differ in
    theirs (fbt's is NHWC in memory; for one channel only the strides of a size-1 dimension differ,
    which address nothing). The step brings its input to the models' layout before the compiled
    graph sees it, so a run on the classic pipeline finds what a run on fbt's compiled (the compile
    cache's key), instead of compiling again: the GPU check's classic run did."""
    from functools import partial

    from torch._dynamo.utils import counters

    from fbt_engine.config.presets import resolve
    from fbt_engine.train.engine import _phase, prepare
    from fbt_engine.train.loop import TrainStep
    from fbt_engine.train.optim import OptimSpec
    from fbt_engine.train.report import HumanOutput, Reporter
    from helpers_engine import fabricate_cifar

    if dataset == "cifar10":
        fabricate_cifar(tmp_path, 10, per_file=20)
    eager_backend = partial(torch.compile, backend="eager")  # dynamo's graphs without inductor's minutes
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, **kw: eager_backend(fn))
    torch._dynamo.reset()
    counters.clear()
    store = RunStore(tmp_path / "home")
    for pipeline in ("device", "classic"):
        resolved = resolve(str(PRESETS / "mlp_to_cnn.toml"), [
            f'data.name="{dataset}"', f'data.root="{tmp_path}"', "data.subset=40", "data.batch_size=8",
            f'data.pipeline="{pipeline}"', 'method.name="scratch"', 'train.compile="on"', f'train.channels_last="{layout}"'])
        p = prepare(resolved, torch.device("cpu"))
        phase = _phase("distillation", p.method, p, 1, OptimSpec("sgd", 0.01, 0.0, 0.9), 0.0, "cosine", 0.0, 0.0, 0.0,
                       tmp_path, "", "student")
        run_dir = store.create(config={}, preset_raw=b"", preset_source="test", name=pipeline, tags=[], extra_meta={})
        reporter = Reporter(store, run_dir.name, False, HumanOutput(quiet=True))
        x, y = next(iter(p.data.train.epoch(0)))
        TrainStep(phase, reporter)(x, y)
        reporter.finish("finished", 0)
    assert counters["stats"]["unique_graphs"] == 1
