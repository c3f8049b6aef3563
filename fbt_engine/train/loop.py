"""The training loop shared by both phases (teacher training and distillation).

The hot loop keeps every number on the device: loss terms accumulate in one tensor and are read
back only at log steps, which is also where a non-finite loss is caught (with the exact step it
first appeared at). Checkpoints carry the position inside the epoch, and the data order and
augmentation depend only on (seed, epoch, step), so a resumed run repeats no step and skips none.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from fbt_engine.compiling import call_with_fallback
from fbt_engine.config.schema import CUDA_GRAPH_MODES
from fbt_engine.data.sources import DataBundle
from fbt_engine.methods.base import PAIRS, Distiller
from fbt_engine.models.adapters import evaluating
from fbt_engine.train import checkpoint, distributed
from fbt_engine.train.cpushare import CpuShare
from fbt_engine.train.metrics import linear_cka, mean_cosine, near_chance, norm_ratio, retrieval_top1, topk_correct
from fbt_engine.train.optim import group_layout, legacy_layout, regrouped
from fbt_engine.train.report import Reporter


# The functions that read the device back on purpose, all at log steps or an epoch's end (any_rank:
# processes agree on a stop request); nothing else inside a training step may (tests/test_host_syncs.py,
# bench/sync_check.py on CUDA)
READ_BACK_AT = frozenset({"_log_interval", "any_rank", "_end_epoch"})


def read_site(stack: traceback.StackSummary, allowed: Iterable[str] = READ_BACK_AT) -> tuple[str, bool] | None:
    """Where a host read with this Python stack happened, for the checks above: None outside a
    training loop, else (its innermost three fbt_engine frames, whether it is at an allowed point)."""
    names = {frame.name for frame in stack}
    if "run_phase" not in names:
        return None
    ours = [f"{f.name} ({Path(f.filename).name}:{f.lineno})" for f in stack if "/fbt_engine/" in f.filename]
    return " ← ".join(reversed(ours[-3:])), bool(names & set(allowed))


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, terms: list[str]):
        self.step = step
        super().__init__(f"non-finite loss at step {step} (terms: {', '.join(terms)})")


class Interrupted(Exception):
    """A stop was requested; the loop saved `last` and left."""


class StopFlag:
    """While installed (a context manager), SIGINT/SIGTERM ask the loop to stop after the current
    step; a second SIGINT stops at once, until `settle()`. The previous handlers come back on exit,
    except where the run `ends_process`: its end is recorded, and a Ctrl-C or a SIGTERM between here
    and the process's exit would only print a traceback and change the exit code."""

    def __init__(self, ends_process: bool = False) -> None:
        self.requested = False
        self._settled = False
        self._previous: dict[int, Any] = {}
        self._ends_process = ends_process

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if self._ends_process else handler)

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT and not self._settled:
            raise KeyboardInterrupt
        self.requested = True

    def settle(self) -> None:
        """The run is ending and writing what it must: a further Ctrl-C would only cut that short."""
        self._settled = True


@dataclass
class LoopState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken in this phase
    step_in_epoch: int = 0  # steps taken in the epoch under way
    best_top1: float = -1.0
    best_epoch: int = 0
    # the epoch under way's loss sums (total, then each term) over its steps so far: an epoch
    # resumed half-way reports its training loss over all of its steps
    epoch_loss_sums: list[float] = field(default_factory=list)


def fit_channels(x: torch.Tensor, channels: int, memory_format: torch.memory_format = torch.contiguous_format
                 ) -> torch.Tensor:
    """Grayscale batches expanded to the channel count the model was built for, in the models'
    memory format (a view when nothing needs to move), with the same strides whichever pipeline
    made them: a compiled step specialises on its input's strides, and the two pipelines' batches
    differ in the strides of their size-1 dimensions, which address nothing."""
    if x.shape[1] == 1 and channels > 1:
        x = x.expand(-1, channels, -1, -1)  # stride 0 across channels, whatever x's were
        return x if memory_format is torch.contiguous_format else x.contiguous(memory_format=memory_format)
    if x.shape[1] != channels:
        raise ValueError(f"the data has {x.shape[1]} channels but the model takes {channels}")
    x = x.contiguous(memory_format=memory_format)
    dense = dense_strides(x.shape, memory_format)
    return x if x.stride() == dense else x.as_strided(x.shape, dense)


def dense_strides(shape: torch.Size, memory_format: torch.memory_format) -> tuple[int, ...]:
    """The strides of a dense N, C, H, W tensor in memory_format (NHWC or NCHW)."""
    _, c, h, w = shape
    return (c * h * w, 1, w * c, c) if memory_format is torch.channels_last else (c * h * w, h * w, w, 1)


def uses_bf16(device: torch.device, amp: str) -> bool:
    """train.amp: "auto" is bf16 on CUDA."""
    return amp == "bf16" or (amp == "auto" and device.type == "cuda")


def autocast_for(device: torch.device, amp: str) -> Callable[[], contextlib.AbstractContextManager]:
    if not uses_bf16(device, amp):
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


@dataclass
class Phase:
    name: str  # "teacher_training" | "distillation"
    method: Distiller
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    data: DataBundle
    epochs: int
    channels: int
    grad_clip: float
    log_every: int
    eval_every: int
    autocast: Callable[[], contextlib.AbstractContextManager]
    run_dir: Path
    checkpoint_prefix: str  # "" for distillation, "teacher_" for the teacher phase
    evaluated_as: str  # whose accuracy the phase's evaluation reports: "student" or "teacher"
    fixed_metrics: dict[str, Any] | None = None  # e.g. the frozen teacher's accuracy, repeated each epoch
    probe: tuple[torch.Tensor, torch.Tensor] | None = None  # fixed batch for per-stage statistics
    ema: Any = None  # timm ModelEmaV3 of the student: evaluated and exported in its place
    memory_format: torch.memory_format = torch.contiguous_format
    compile_mode: str | None = None  # torch.compile's mode for the training forward; None: eager
    train_module: torch.nn.Module | None = None  # the method under DistributedDataParallel, when distributed
    world: int = 1  # processes training together; batches are per process
    is_main: bool = True  # the one process that writes checkpoints
    precise_bn: int = 0  # training images BatchNorm's statistics are measured on before each evaluation
    cpu_share: CpuShare | None = None  # on a CPU other runs use too: this run's threads follow their count

    @property
    def global_batch(self) -> int:
        return self.data.train.batch_size * self.world

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return fit_channels(x, self.channels, self.memory_format)

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What evaluation scores: the method's models, the EMA student in the student's place."""
        logits = self.method.predict(x)
        if self.ema is not None:
            logits = {"student": self.ema.module(x), "student_live": logits.pop("student"), **logits}
        return logits

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.train)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    # -- checkpoints ------------------------------------------------------------------------------

    def path(self, kind: str) -> Path:
        return checkpoint.checkpoint_path(self.run_dir, kind, self.checkpoint_prefix)

    def save(self, kind: str, state: LoopState) -> Path:
        path = self.path(kind)
        if not self.is_main:
            return path
        checkpoint.save(path, {
            "format": 1, "phase": self.name, "state": asdict(state), "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(), "optimizer_layout": group_layout(self.optimizer, self.method),
            "scheduler": self.scheduler.state_dict(),
            "rng": checkpoint.rng_state(), "ema": self.ema.state_dict() if self.ema is not None else None,
        })
        return path

    def restore(self, payload: dict[str, Any]) -> LoopState:
        self.method.load_state_dict(payload["method"])
        saved, layout = payload["optimizer"], group_layout(self.optimizer, self.method)
        saved_layout = payload.get("optimizer_layout") or legacy_layout(self.method)
        # the groups change with fbt's versions (weight decay's exemptions): a resume goes on by name
        self.optimizer.load_state_dict(saved if saved_layout == layout else
                                       regrouped(saved, saved_layout, self.optimizer, layout))
        self.scheduler.load_state_dict(payload["scheduler"])
        checkpoint.set_rng_state(payload["rng"])
        if self.ema is not None and payload.get("ema") is not None:
            self.ema.load_state_dict(payload["ema"])
        return LoopState(**payload["state"])


@torch.no_grad()
def recalibrate_batchnorm(phase: Phase, epoch: int) -> int:
    """PreciseBN: the BatchNorm statistics of the models evaluated, measured afresh (an equal-weight
    average, over every process's batches) on the first `phase.precise_bn` images of the epoch's
    training batches, un-mixed (mixed batches vary less than evaluation's images), with the
    weights as they are now. The running averages follow the weights with a lag of about ten
    steps, which early in a run, while the weights move fast, leaves them far from what the layers
    see (FBT's student of mlp_to_cnn: 13.5% top-1 after its first epoch on them, 54% on these).
    The random state is the same afterwards, so training does not depend on it. Returns the number
    of batches each process ran (0 where no model has BatchNorm in training)."""
    models = [phase.method] + ([phase.ema.module] if phase.ema is not None else [])
    modes = [m.training for m in models]
    for model in models:
        model.train()  # a Distiller keeps its frozen teacher in eval mode
    norms = [m for model in models for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    batches = min(phase.steps_per_epoch, math.ceil(phase.precise_bn / phase.global_batch)) if norms else 0
    if batches:
        kept = [(m.momentum, {k: v.clone() for k, v in m.named_buffers()}) for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: every batch counts the same
        device = next(phase.method.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for _, (x, _) in zip(range(batches), phase.data.train.epoch(epoch, mix=False)):
                with phase.autocast():
                    phase.predict(phase.inputs(x))
        for m, (momentum, buffers) in zip(norms, kept):
            m.momentum = momentum
            # a layer not on the path evaluation takes keeps its averages; every layer its count of
            # the batches it trained on
            ran = bool(m.num_batches_tracked)
            for k, v in buffers.items():
                if not ran or k == "num_batches_tracked":
                    getattr(m, k).copy_(v)
        if phase.world > 1:  # each process ran as many batches: the mean is over all of them
            for m in norms:
                for stat in (m.running_mean, m.running_var):
                    stat.copy_(distributed.all_reduce_sum(stat) / phase.world)
    for model, mode in zip(models, modes):
        model.train(mode)
    return batches


@torch.no_grad()
def evaluate(predict: Callable[[torch.Tensor], dict[str, torch.Tensor]], data: DataBundle,
             inputs: Callable[[torch.Tensor], torch.Tensor], autocast) -> dict[str, Any]:
    """Top-1/top-5 (%) of every model `predict` returns, and the first model's validation loss.
    Distributed, each process scores its share of the validation set and the counts are summed."""
    correct: dict[str, list[torch.Tensor]] = {}
    loss_sum, n, first = None, 0, None
    for x, y in data.val.epoch(0):
        with autocast():
            logits = predict(inputs(x))
        first = first or next(iter(logits))
        for name, out in logits.items():
            c = topk_correct(out, y)
            correct[name] = [a + b for a, b in zip(correct[name], c)] if name in correct else c
        batch_loss = torch.nn.functional.cross_entropy(logits[first].float(), y, reduction="sum")
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        n += len(y)
    names = list(correct)
    totals = distributed.all_reduce_sum(torch.stack(
        [c.float() for name in names for c in correct[name]] + [loss_sum.float(), torch.tensor(float(n), device=loss_sum.device)]
    )).tolist()
    n_all = totals[-1]
    result: dict[str, Any] = {name: {"top1": 100.0 * totals[2 * i] / n_all, "top5": 100.0 * totals[2 * i + 1] / n_all}
                              for i, name in enumerate(names)}
    result["val_loss"] = totals[-2] / n_all
    return result


@torch.no_grad()
def alignment_stats(method: Distiller, x: torch.Tensor) -> dict[str, Any]:
    """METHOD §5 on a fixed probe batch: per-stage CKA (student vs teacher) and, for the pooled
    features of every pair, CKA, mean cosine and retrieval top-1 in the pair's common space
    (where the method has one), and the learner/source feature-norm ratio."""
    s, t = method.student_features(x), method.teacher_features(x)
    stages = [{"stage": k + 1, "cka_ts": linear_cka(s.stages[k], t.stages[k])} for k in range(4)]
    pooled = {"student": s.head.feature, "teacher": t.head.feature}
    fusion = method.fusion_output(s, t)
    if fusion is not None:
        pooled["fusion"] = fusion.feature
    pairs: dict[str, dict[str, float | None]] = {}
    for pair, (src, dst) in PAIRS.items():
        if src not in pooled or dst not in pooled:
            continue
        entry: dict[str, float | None] = {
            "cka": linear_cka(pooled[dst], pooled[src]),
            "norm_ratio": norm_ratio(pooled[dst], pooled[src]), "cos": None, "retrieval": None,
        }
        space = method.pair_space(pair)
        if space is not None:
            z_src, z_dst = space(pooled[src], pooled[dst])
            entry["cos"], entry["retrieval"] = mean_cosine(z_dst, z_src), retrieval_top1(z_dst, z_src)
        pairs[pair] = entry
    return {"stages": stages, "pooled": pairs}


class StepLosses(NamedTuple):
    total: torch.Tensor  # the sum of the loss terms: what backward starts from
    values: torch.Tensor  # [total, *terms] in fp32, detached: what the log accumulates
    finite: torch.Tensor  # a bool scalar: every value is finite


class TrainStep:
    """The training step up to the optimiser: the batch fitted to the model, the method's forward
    and the loss bookkeeping the log needs, through torch.compile when asked (so that the
    bookkeeping's small ops join the compiled graph instead of being launched one by one), then the
    backward.

    If compiling fails (no compiler, an unsupported backend, a backward graph that does not build)
    in the first steps, where compiling and CUDA graphs' recording happen, the step is made again
    eagerly and training goes on without the compiler, with a warning event saying why. The retry
    starts from the buffers the failed call started from: a backward fails after its forward has
    updated BatchNorm's running statistics, which would otherwise count that batch twice. Under DDP
    only a failed forward is made again: a failed backward has left gradient reductions half done.
    Later errors are the step's own.

    Compiling takes tens of seconds on a GPU, during which no step is logged: the engine's log says
    so before the first step, and how long those first steps took once they are done."""

    COMPILING_STEPS = 3  # compiled at the 1st call; CUDA graphs warm up at the 1st, record at the 2nd

    def __init__(self, phase: Phase, reporter: Reporter):
        self.module = phase.train_module or phase.method
        self.inputs, self.terms = phase.inputs, phase.method.loss_terms()
        self.autocast, self.optimizer, self.world = phase.autocast, phase.optimizer, phase.world
        self.reporter = reporter
        mode = phase.compile_mode
        self.compiled = None if mode is None else torch.compile(self.forward, mode=mode)
        self.trials = self.COMPILING_STEPS
        # a CUDA-graph replay reuses its output memory: a new step must be declared so that the
        # previous step's outputs, already consumed, may be overwritten
        self.graphs = mode in CUDA_GRAPH_MODES
        on_cuda = next(phase.method.parameters()).device.type == "cuda"  # a CPU has no CUDA graphs to record
        self.how = f"torch.compile, mode {mode}" + (", CUDA graphs" if self.graphs and on_cuda else "")
        self.trials_start = 0.0
        if self.compiled is not None:
            reporter.log(f"{phase.name.replace('_', ' ')}: compiling the training step ({self.how}); "
                         "its first steps take longer")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> StepLosses:
        losses = self.module(x, y).losses
        total = sum(losses.values())
        values = torch.stack([total.detach().float()] + [losses[t].detach().float() for t in self.terms])
        return StepLosses(total, values, torch.isfinite(values).all())

    def _forward(self, forward, x: torch.Tensor, y: torch.Tensor) -> StepLosses:
        if forward is self.compiled and self.graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with self.autocast():
            return forward(x, y)

    def _backward(self, step: StepLosses) -> StepLosses:
        self.optimizer.zero_grad(set_to_none=True)  # also drops what a failed backward had accumulated
        step.total.backward()  # compiled at the first backward, not with the forward
        return step

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> StepLosses:
        # outside the compiled step, whose graph then sees the same strides from either pipeline
        x = self.inputs(x)
        if self.compiled is None:
            return self._backward(self._forward(self.forward, x, y))
        if self.trials == 0:
            return self._backward(self._forward(self.compiled, x, y))
        if self.trials == self.COMPILING_STEPS:
            self.trials_start = time.perf_counter()
        step = self._trial(x, y)
        self.trials -= 1
        if self.trials == 0 and self.compiled is not None:
            self.reporter.log(f"compiled: the first {self.COMPILING_STEPS} steps, which compile and warm up, took "
                              f"{time.perf_counter() - self.trials_start:.1f} s ({self.how})")
        return step

    def _trial(self, x: torch.Tensor, y: torch.Tensor) -> StepLosses:
        """One of the first steps, where a compile failure falls back to eager."""
        buffers = list(self.module.buffers())
        saved, draws = [b.clone() for b in buffers], checkpoint.rng_state()

        def retry(then: Callable[[StepLosses], StepLosses]) -> StepLosses:
            """The step as eager would have taken it: the failed try's BatchNorm statistics and random
            draws (dropout, drop-path) undone."""
            with torch.no_grad():
                for buffer, before in zip(buffers, saved):
                    buffer.copy_(before)
            checkpoint.set_rng_state(draws)
            return then(self._forward(self.forward, x, y))

        if self.world > 1:
            return self._backward(call_with_fallback(lambda: self._forward(self.compiled, x, y),
                                                     lambda: retry(lambda step: step), self._fell_back))
        return call_with_fallback(lambda: self._backward(self._forward(self.compiled, x, y)),
                                  lambda: retry(self._backward), self._fell_back)

    def _fell_back(self, why: str) -> None:
        self.compiled = None
        self.reporter.warn(f"torch.compile failed ({why}); training without it")


def run_phase(phase: Phase, state: LoopState, reporter: Reporter, stop: StopFlag) -> LoopState:
    method, train_step = phase.method, TrainStep(phase, reporter)
    terms = train_step.terms
    device = next(method.parameters()).device
    if phase.compile_mode is not None and device.type == "cuda":  # launches cost only there
        phase.data.train.compile_augmentation(lambda why: reporter.warn(
            f"torch.compile failed for the batch augmentation ({why}); augmenting without it"))
    reporter.human.start_phase(phase.name.replace("_", " "), phase.total_steps, state.step)
    method.train()
    for epoch in range(state.epoch, phase.epochs):
        epoch_start, resumed_at = time.perf_counter(), state.step_in_epoch
        summed_from = 0  # the epoch's step the loss sums start at
        if not (resumed_at and state.epoch_loss_sums):
            state.epoch_loss_sums = [0.0] * (len(terms) + 1)
            summed_from = resumed_at  # a checkpoint of an older fbt has no sums: this part only
        interval = torch.zeros(len(terms) + 1, device=device)
        finite: list[torch.Tensor] = []
        interval_start, interval_t = state.step, time.perf_counter()
        for x, y in phase.data.train.epoch(epoch, state.step_in_epoch):
            if phase.cpu_share is not None and (changed := phase.cpu_share.recount()):
                reporter.log(changed)
            step = train_step(x, y)
            if phase.grad_clip:
                torch.nn.utils.clip_grad_norm_(method.parameters(), phase.grad_clip)
            phase.optimizer.step()
            lr = phase.optimizer.param_groups[0]["lr"]  # the rate this step used
            phase.scheduler.step()
            state.step += 1
            if phase.ema is not None:
                phase.ema.update(method.student, step=state.step)
            state.step_in_epoch += 1
            interval += step.values
            # kept until the log step, past the next CUDA-graph replay, which reuses the output's memory
            finite.append(step.finite.clone())
            last_of_epoch = state.step_in_epoch == phase.steps_per_epoch
            # A single process stops right after the step a stop was asked at; distributed processes
            # agree on stopping at log steps, where they synchronise anyway.
            if state.step % phase.log_every == 0 or last_of_epoch or (phase.world == 1 and stop.requested):
                sums = _log_interval(phase, reporter, state.step, epoch, lr, interval, finite, terms,
                                     interval_start, interval_t)
                method.keep_in_range()  # at log steps only: no launch on the others' hot path
                state.epoch_loss_sums = [a + b for a, b in zip(state.epoch_loss_sums, sums)]
                interval.zero_()
                finite.clear()
                interval_start, interval_t = state.step, time.perf_counter()
                if distributed.any_rank(stop.requested, device):
                    path = phase.save("last", state)
                    reporter.emit("checkpoint", phase=phase.name, kind="last", epoch=epoch + 1, step=state.step,
                                  path=str(path.relative_to(reporter.dir)))
                    raise Interrupted
        means = [total / max(1, state.step_in_epoch - summed_from) for total in state.epoch_loss_sums]
        ran = state.step_in_epoch - resumed_at  # the steps epoch_time holds
        state.epoch, state.step_in_epoch, state.epoch_loss_sums = epoch + 1, 0, []
        _end_epoch(phase, state, reporter, means, terms, time.perf_counter() - epoch_start, ran)
    return state


def _log_interval(phase: Phase, reporter: Reporter, step: int, epoch: int, lr: float, interval: torch.Tensor,
                  finite: list[torch.Tensor], terms: list[str], interval_start: int, interval_t: float) -> list[float]:
    """A log step: the read-back of the interval's loss sums and finiteness flags (reduced over
    processes), its `step` event and the NaN check. Returns the sums averaged over processes."""
    n = step - interval_start
    reduced = distributed.all_reduce_sum(torch.cat([interval, (~torch.stack(finite)).float()]))
    means = (reduced[:len(interval)] / (n * phase.world)).tolist()
    elapsed = time.perf_counter() - interval_t  # after the read-back: the device has finished the interval
    reporter.emit("step", phase=phase.name, step=step, epoch=epoch + 1, lr=lr, loss=means[0],
                  losses=dict(zip(terms, means[1:])), img_s=n * phase.global_batch / elapsed if elapsed > 0 else None,
                  **device_load(interval.device))
    # the interval's step event first, so a NaN still shows on the curves it broke
    _check_finite(reduced[len(interval):] == 0, interval_start, terms, reduced[:len(interval)])
    reporter.human.advance(step, f"epoch {epoch + 1}/{phase.epochs} loss {means[0]:.4f}")
    return [mean * n for mean in means]  # the interval's sums (averaged over processes)


def device_load(device: torch.device) -> dict[str, float]:
    """{"gpu_mem_gb": peak memory the allocator reserved} on CUDA (no sync); on a CPU, {"threads":
    the threads the run computes with}, fewer while other runs share it (cpushare.py)."""
    if device.type != "cuda":
        return {"threads": torch.get_num_threads()}
    return {"gpu_mem_gb": round(torch.cuda.max_memory_reserved(device) / 2**30, 2)}


# A fusion model that learns leaves chance within its first few dozen steps: 53 % after
# mlp_to_cnn's first epoch of 39 (a teacher of 8 epochs); one of a 1-epoch, 32 % teacher stayed there.
FUSION_GRACE_STEPS = 100


def _fusion_check(reporter: Reporter, step: int, payload: dict[str, Any], classes: int) -> None:
    """FBT's student learns the fusion model's features and logits: a fusion model at chance gives
    it nothing to learn, while the run looks healthy (the student's own CE falls)."""
    top1 = payload["fusion"]["top1"]
    if step < FUSION_GRACE_STEPS or not near_chance(top1, classes):
        return
    teacher = (payload.get("teacher") or {}).get("top1")
    reporter.warn_once("fusion_near_chance", (
        f"the fusion model scores {top1:.1f}% top-1 after {step} steps, near chance ({100.0 / classes:.1f}%): "
        "the student learns little from it. "
        + (f"A weak teacher ({teacher:.1f}%) or too" if teacher is not None else "Too")
        + " high a learning rate can keep it there"))


def _check_finite(finite: torch.Tensor, interval_start: int, terms: list[str], sums: torch.Tensor) -> None:
    """`finite`: one flag per step of the interval (false if any process saw a non-finite loss)."""
    if bool(finite.all()):
        return
    first_bad = int((~finite).nonzero()[0, 0])
    bad_terms = [t for t, v in zip(terms, sums[1:].tolist()) if not math.isfinite(v)] or ["total"]
    raise NonFiniteLoss(interval_start + first_bad + 1, bad_terms)


def _end_epoch(phase: Phase, state: LoopState, reporter: Reporter, train_means: list[float],
               terms: list[str], epoch_time: float, steps_timed: int) -> None:
    epoch = state.epoch
    payload: dict[str, Any] = {
        "phase": phase.name, "epoch": epoch, "step": state.step, "epoch_time": epoch_time,
        "lr": phase.optimizer.param_groups[0]["lr"],
        "train_loss": train_means[0], "train_losses": dict(zip(terms, train_means[1:])),
        # none where a resume came between the epoch's last step and its evaluation: no step was timed
        "img_s": steps_timed * phase.global_batch / epoch_time if steps_timed else None,
        # a resume split the epoch: its time and speed are of the steps after it alone
        **({"timed_steps": steps_timed} if steps_timed < phase.steps_per_epoch else {}),
        **device_load(next(phase.method.parameters()).device),
    }
    is_eval = epoch % phase.eval_every == 0 or epoch == phase.epochs
    if is_eval:
        # a paper pair's evaluation runs for seconds with no other event: a watcher says what it waits for
        reporter.emit("phase", phase="eval", during=phase.name, epoch=epoch, step=state.step,
                      images=phase.data.val_images)
        reporter.human.advance(state.step, f"epoch {epoch}/{phase.epochs} evaluating")
        if phase.precise_bn:
            recalibrate_batchnorm(phase, epoch - 1)
        distributed.broadcast_buffers(phase.method)
        if phase.ema is not None:  # its statistics follow each process's own batches: rank 0's, as exported
            distributed.broadcast_buffers(phase.ema.module)
        with evaluating(phase.method):
            metrics = evaluate(phase.predict, phase.data, phase.inputs, phase.autocast)
        payload["val_loss"] = metrics.pop("val_loss")
        payload[phase.evaluated_as] = metrics.pop("student")
        payload.update(metrics)  # "fusion" where the method has one
        payload.update(phase.fixed_metrics or {})
    reporter.emit("epoch", **payload)
    if phase.probe is not None and is_eval and phase.is_main:
        x, _ = phase.probe
        with evaluating(phase.method):
            stats = alignment_stats(phase.method, phase.inputs(x))
        reporter.emit("stages", phase=phase.name, epoch=epoch, step=state.step, **stats)
    top1 = payload.get(phase.evaluated_as, {}).get("top1")
    if top1 is not None and top1 > state.best_top1:
        state.best_top1, state.best_epoch = top1, epoch
        path = phase.save("best", state)
        reporter.emit("checkpoint", phase=phase.name, kind="best", epoch=epoch, step=state.step,
                      path=str(path.relative_to(reporter.dir)), top1=top1)
    path = phase.save("last", state)
    reporter.emit("checkpoint", phase=phase.name, kind="last", epoch=epoch, step=state.step,
                  path=str(path.relative_to(reporter.dir)))
    line = f"[{phase.name}] epoch {epoch}/{phase.epochs} loss {payload['train_loss']:.4f}"
    if is_eval:
        who = payload[phase.evaluated_as]
        line += f" val top-1 {who['top1']:.2f}%"
        if "fusion" in payload:
            line += f" fusion {payload['fusion']['top1']:.2f}%"
    if not steps_timed:
        line += " (its steps ran before the resume)"
    else:
        split = f" over its last {steps_timed} of {phase.steps_per_epoch} steps, after the resume" \
            if steps_timed < phase.steps_per_epoch else ""
        line += f" ({epoch_time:.1f}s, {payload['img_s']:.0f} img/s{split})"
    reporter.log(line)
    if is_eval and "fusion" in payload:
        _fusion_check(reporter, state.step, payload, phase.data.num_classes)
    reporter.human.advance(state.step, f"epoch {epoch}/{phase.epochs} loss {payload['train_loss']:.4f}")
    reporter.checkpoint_index()
