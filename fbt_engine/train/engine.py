"""One run, headless: validate, prepare everything that can fail cheaply, then create the run
folder and train. Nothing is written to the run store until the config, device, data, models and
teacher weights are known to be usable, so bad input never leaves a half-made run behind.

Exit codes: 0 ok, 1 run failed, 2 usage or config error, 3 environment, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import platform
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import tomli_w
import torch

import fbt_engine
from fbt_engine import paths
from fbt_engine.config.fields import to_table
from fbt_engine.config.presets import PresetError, Resolved, collect, command_line_sets, resolve
from fbt_engine.config.schema import Config, TrainSection
from fbt_engine.data.sources import DataBundle, DataError, load_data
from fbt_engine.formats import counted, cpu_name, os_error, usable_cores
from fbt_engine.methods.base import Distiller, build_method
from fbt_engine.methods.baselines import Scratch
from fbt_engine.methods.params import ScratchParams
from fbt_engine.models.adapters import StagedModel, UnsupportedModel
from fbt_engine.models.factory import count_params, create_model
from fbt_engine.models.pretrained import WeightsUnreachable
from fbt_engine.store.events import effective, read_events, training_phase
from fbt_engine.store.export import STUDENT_FILES
from fbt_engine.store.runs import RunStore, process_start_ticks, write_text_atomic
from fbt_engine.train import checkpoint, distributed, teacher as teacher_mod
from fbt_engine.train.cpushare import CpuShare
from fbt_engine.train.distributed import DistInfo
from fbt_engine.train.loop import (
    Interrupted, LoopState, NonFiniteLoss, Phase, StopFlag, autocast_for, evaluate, fit_channels, run_phase, uses_bf16,
)
from fbt_engine.train.metrics import near_chance
from fbt_engine.train.optim import OptimSpec, ScheduleSpec, build_optimizer, build_scheduler
from fbt_engine.train.report import HumanOutput, Reporter, SilentReporter

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
RESUMABLE_SETTINGS = ("train.epochs",)  # what --set may change when resuming
PROBE_IMAGES = 256


class EngineError(Exception):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunOptions:
    preset: str | None = None
    sets: list[str] = field(default_factory=list)
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    device: str | None = None
    json: bool = False
    resume: str | None = None
    run_id: str | None = None
    quiet: bool = False
    ends_process: bool = False  # the process exits when the run returns (see StopFlag)


@dataclass
class Prepared:
    resolved: Resolved
    device: torch.device
    data: DataBundle
    student: StagedModel
    teacher: StagedModel | None
    teacher_source: teacher_mod.TeacherSource | None
    method: Distiller
    dist: DistInfo = DistInfo()
    memory_format: torch.memory_format = torch.contiguous_format  # the models' and their input's
    ema: Any = None  # set by the distillation phase when train.ema is on
    teacher_acc: dict[str, float] | None = None  # the frozen teacher's validation top-1/top-5
    cpu_share: CpuShare | None = None  # this run's part of a CPU other runs compute on too


def select_device(requested: str, info: DistInfo = DistInfo()) -> torch.device:
    """The training device; under torchrun, CUDA processes take the GPU of their local rank."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and info.active:
        requested = f"cuda:{info.local_rank}"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EngineError(f"run.device: {requested}: CUDA is not available on this machine "
                              "(--device cpu runs on the CPU)", EXIT_ENV)
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise EngineError(f"run.device: {requested}: only {counted(torch.cuda.device_count(), 'CUDA device')}", EXIT_ENV)
        return torch.device("cuda", index)  # torch.cuda.set_device refuses a CUDA device without its index
    return torch.device(requested)


def describe_device(device: torch.device, train: TrainSection, fmt: torch.memory_format, world: int) -> dict[str, Any]:
    """The device and how the run computes on it (precision, layout, compile mode)."""
    common = {"amp": "bf16" if uses_bf16(device, train.amp) else "off",
              "layout": "NHWC" if fmt is torch.channels_last else "NCHW",
              "compile": compile_mode(train, device, world) or "off"}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1), **common}
    threads = torch.get_num_threads()
    return {"type": "cpu", "name": cpu_name(threads), "cores": usable_cores(), "threads": threads, **common}


def versions() -> dict[str, str]:
    import timm

    return {"fbt": fbt_engine.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "cuda": torch.version.cuda or ""}


# -- preparing ---------------------------------------------------------------------------------------

def _resolve(options: RunOptions, store: RunStore) -> tuple[Resolved, str | None, tuple[int, str] | None]:
    """The run's config, and for a resume its id and where it goes on from (see resume_point)."""
    if options.resume:
        run_id = store.resolve(options.resume)
        run_dir = store.run_dir(run_id)
        bad = [s for s in options.sets if s.partition("=")[0].strip() not in RESUMABLE_SETTINGS]
        if bad:
            raise EngineError(f"--set {bad[0]}: a resumed run keeps its config; only "
                              f"{', '.join(RESUMABLE_SETTINGS)} may change", EXIT_USAGE)
        # a saved config's paths are absolute; one an older fbt saved may hold them as typed,
        # relative to where that run was started, which is most likely where it is resumed
        before = collect(run_dir / "config.toml", relative_to=Path.cwd()).config
        resolved = collect(run_dir / "config.toml", options.sets, relative_to=Path.cwd())
        resolved.problems = [p for p in resolved.problems if not p.newer_rule]
        if resolved.problems:
            raise PresetError(resolved.problems)
        resolved.raw = (run_dir / "preset.toml").read_bytes()
        resolved.changed = {key: [_dotted(before, key), _dotted(resolved.config, key)] for key in RESUMABLE_SETTINGS
                            if _dotted(before, key) != _dotted(resolved.config, key)}
        point = resume_point(run_dir)
        started = _distillation_epochs_started(run_dir, point)
        if resolved.config.train.epochs < started:  # it would end at once, on weights no epoch evaluated
            raise EngineError(f"--set train.epochs={resolved.config.train.epochs}: the run has started epoch {started} "
                              f"of its distillation; give {started} or more", EXIT_USAGE)
        return resolved, run_id, point
    if options.run_id and (error := store.fresh_id_error(options.run_id)):
        raise EngineError(error, EXIT_USAGE)
    if options.preset is None:
        raise EngineError("fbt run: give a preset (a file or a preset name) or --resume RUN", EXIT_USAGE)
    resolved = resolve(options.preset, command_line_sets(options.sets, options.device, options.name))
    resolved.config.run.tags = sorted(set(resolved.config.run.tags) | set(options.tags))
    return resolved, None, None


def _resumed_teacher(store: RunStore, run_id: str | None, point: tuple[int, str] | None) -> Path | None:
    """The cached teacher a resumed distillation goes on from: the one its earlier segments found
    or trained (meta's teacher_weights), found by its key in today's cache (the data home may have
    moved). None for a new run, one still training its teacher, or a teacher from a checkpoint or
    timm, which the config finds again."""
    if run_id is None or point is None or point[1] != "distillation":
        return None
    weights = Path(store.read_meta(run_id).get("teacher_weights") or "")
    if weights.name != teacher_mod.CACHED_WEIGHTS or weights.parent.parent.name != paths.teacher_cache_dir().name:
        return None
    return paths.teacher_cache_dir() / weights.parent.name / weights.name


def _distillation_epochs_started(run_dir: Path, point: tuple[int, str]) -> int:
    """How many distillation epochs the run to resume has begun, the one it stopped in included."""
    step, phase = point
    if phase != "distillation" or step == 0:
        return 0
    per_epoch = next(e["steps_per_epoch"] for e in reversed(effective(read_events(run_dir / "events.jsonl")))
                     if e["type"] == "phase" and e["phase"] == "distillation")
    return -(-step // per_epoch)


def _dotted(cfg: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def prepare(resolved: Resolved, device: torch.device, info: DistInfo = DistInfo(),
            cached_teacher: Path | None = None) -> Prepared:
    """Data, models and method for a run; `cached_teacher`: see teacher.locate."""
    cfg = resolved.config
    if cfg.data.batch_size % info.world:
        raise EngineError(f"data.batch_size: the global batch {cfg.data.batch_size} does not split over "
                          f"{info.world} processes", EXIT_USAGE)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    checkpoint.seed_everything(cfg.run.seed)
    try:
        data = load_data(cfg.data, device, cfg.run.seed, rank=info.rank, world=info.world)
    except DataError as exc:
        raise EngineError(str(exc), EXIT_ENV) from None
    student = _build_model("student", cfg.student.model, cfg.student.kwargs, data)
    # a checkpoint's weights replace pretrained ones: those are not fetched for nothing
    teacher_kwargs = {k: v for k, v in cfg.teacher.kwargs.items() if k != "pretrained" or not cfg.teacher.checkpoint}
    teacher = _build_model("teacher", cfg.teacher.model, teacher_kwargs, data) if cfg.method.needs_teacher else None
    models = {"student": student.model} | ({"teacher": teacher.model} if teacher is not None else {})
    fmt = memory_format(cfg.train.channels_last, device, models)
    for model in models.values():
        # in place: the adapter's references to its modules stay valid; the teacher is no module of
        # the method, so this is where its layout is set
        model.to(device, memory_format=fmt)
    if teacher is not None and teacher.in_chans != student.in_chans:
        raise EngineError(f"teacher.kwargs: the teacher takes {teacher.in_chans} input channels and the student "
                          f"{student.in_chans}; give both the same in_chans", EXIT_USAGE)
    if data.info.channels > student.in_chans:
        raise EngineError(f"student.kwargs: {cfg.data.name} has {data.info.channels} channels but the student "
                          f"takes {student.in_chans}", EXIT_USAGE)
    source = None
    if teacher is not None:
        try:
            source = teacher_mod.locate(cfg, data.num_classes, data.img_size, cached_teacher)
            if source.kind in ("checkpoint", "cache"):
                teacher_mod.load_weights(teacher.model, source.weights)
        except teacher_mod.TeacherError as exc:
            raise EngineError(str(exc), EXIT_ENV) from None
    try:
        method = build_method(student, teacher, cfg.method, cfg.train.label_smoothing).to(device, memory_format=fmt)
    except (UnsupportedModel, ValueError) as exc:
        raise EngineError(f"method: {exc}", EXIT_USAGE) from None
    prepared = Prepared(resolved, device, data, student, teacher, source, method, info, fmt)
    if source is not None and source.kind in ("checkpoint", "pretrained"):
        acc, chance = teacher_accuracy(prepared), 100.0 / data.num_classes
        if near_chance(acc["top1"], data.num_classes):
            raise EngineError(
                f"teacher: {source.weights} scores {acc['top1']:.1f}% top-1 on {cfg.data.name}'s "
                f"validation images, near chance ({chance:.1f}%): a checkpoint for other classes, another class "
                "order or another input normalisation?", EXIT_ENV)
    return prepared


def _build_model(side: str, name: str, kwargs: dict[str, Any], data: DataBundle) -> StagedModel:
    """One side's model in its four-stage view, any failure named by that side's dotted keys."""
    try:
        return StagedModel(create_model(name, data.num_classes, data.img_size, kwargs), data.img_size)
    except WeightsUnreachable as exc:
        instead = ("to train the teacher here, or give teacher.checkpoint" if side == "teacher"
                   else "to train it from scratch")
        raise EngineError(f"{side}.kwargs.pretrained: {exc}; or set {side}.kwargs.pretrained = false {instead}",
                          EXIT_ENV) from None
    except Exception as exc:
        if kwargs.get("pretrained") and not isinstance(exc, (TypeError, UnsupportedModel)):
            raise EngineError(f"{side}.kwargs.pretrained: timm could not load {name}'s pretrained weights "
                              f"({type(exc).__name__}: {exc}); is the network reachable?", EXIT_ENV) from None
        raise _model_error(side, name, kwargs, data, exc) from None


def _model_error(side: str, name: str, kwargs: dict[str, Any], data: DataBundle, exc: Exception) -> Exception:
    if isinstance(exc, UnsupportedModel):
        return EngineError(f"{side}.model: {name}: {exc}", EXIT_USAGE)
    if isinstance(exc, (TypeError, ValueError, RuntimeError, AssertionError)):
        where = f"{side}.kwargs" if kwargs else f"{side}.model"
        return EngineError(f"{where}: {name} cannot be built at {data.img_size} px with {kwargs or 'no kwargs'}: "
                           f"{exc}", EXIT_USAGE)
    return exc


def teacher_accuracy(p: Prepared) -> dict[str, float]:
    """The frozen teacher's validation accuracy, measured once per run."""
    if p.teacher_acc is None:
        cfg = p.resolved.config
        inputs = partial(fit_channels, channels=p.student.in_chans, memory_format=p.memory_format)
        p.teacher.model.eval()
        p.teacher_acc = evaluate(lambda x: {"teacher": p.teacher.model(x)}, p.data, inputs,
                                 autocast_for(p.device, cfg.train.amp))["teacher"]
    return p.teacher_acc


# -- running ----------------------------------------------------------------------------------------

def param_counts(p: Prepared) -> dict[str, int]:
    counts = {"student": count_params(p.student.model)}
    if p.teacher is not None:
        counts["teacher"] = count_params(p.teacher.model)
    new = {name: count_params(m) for name, m in p.method.new_modules().items()}
    if "fusion" in new:
        counts["fusion"] = p.method.fusion_param_count()
        counts["fusion_new"] = new["fusion"]
    counts["method_new"] = sum(new.values())
    return counts


def _phase(name: str, method: Distiller, p: Prepared, epochs: int, optim: OptimSpec, warmup_epochs: float,
           sched_name: str, warmup_ratio: float, min_ratio: float, grad_clip: float, run_dir: Path,
           prefix: str, evaluated_as: str) -> Phase:
    cfg = p.resolved.config
    steps = len(p.data.train)
    sched = ScheduleSpec(sched_name, steps * epochs, int(round(warmup_epochs * steps)), warmup_ratio, min_ratio)
    optimizer = build_optimizer([method], optim, p.device)
    train_module = None
    if p.dist.active:
        from torch.nn.parallel import DistributedDataParallel

        train_module = DistributedDataParallel(method, device_ids=[p.device.index] if p.device.type == "cuda" else None)
    return Phase(name, method, optimizer, build_scheduler(optimizer, sched), p.data, epochs, p.student.in_chans,
                 grad_clip, cfg.train.log_every, cfg.train.eval_every, autocast_for(p.device, cfg.train.amp),
                 run_dir, prefix, evaluated_as, memory_format=p.memory_format,
                 compile_mode=compile_mode(cfg.train, p.device, p.dist.world),
                 train_module=train_module, world=p.dist.world, is_main=p.dist.is_main,
                 precise_bn=cfg.train.precise_bn, cpu_share=p.cpu_share)


def on_cuda_when_auto(setting: str, device: torch.device) -> bool:
    """An "auto" | "on" | "off" setting: "auto" is on for CUDA only. train.compile: the warm-up pays
    for itself within an epoch there, not on a CPU. train.channels_last: cuDNN's bf16 convolutions
    and batch norms run NHWC, so NCHW tensors are converted at every layer there; a CPU gains nothing."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def compile_mode(train: TrainSection, device: torch.device, world: int) -> str | None:
    """torch.compile's mode for the training forward, or None to run it eagerly. "auto" takes CUDA
    graphs (reduce-overhead): on an H100 they ran mlp_to_cnn's FBT epoch 3.5× and the paper pair's
    1.55× faster than the default mode (docs/PERF.md), whose steps wait on Python's kernel launches.
    Under DDP it keeps the default mode: gradient all-reduces split the graph, and CUDA graphs with
    them have not been measured here. A CPU has no CUDA graphs."""
    if not on_cuda_when_auto(train.compile, device):
        return None
    if train.compile_mode == "auto":
        return "reduce-overhead" if device.type == "cuda" and world == 1 else "default"
    return train.compile_mode


def memory_format(setting: str, device: torch.device, models: dict[str, torch.nn.Module]) -> torch.memory_format:
    """train.channels_last. NHWC holds 4-D tensors only: "auto" keeps NCHW for models with 5-D
    weights (3-D convolutions), "on" refuses them."""
    if not on_cuda_when_auto(setting, device):
        return torch.contiguous_format
    volumetric = [role for role, model in models.items() if any(w.dim() == 5 for w in model.parameters())]
    if volumetric and setting == "on":
        raise EngineError(f'train.channels_last = "on": the {volumetric[0]} has 5-D weights, which the NHWC '
                          'layout cannot hold; use "auto" or "off"', EXIT_USAGE)
    return torch.contiguous_format if volumetric else torch.channels_last


TEACHER_PREFIX = "teacher_"  # of the teacher phase's checkpoints (teacher_last.pt)


def teacher_phase(p: Prepared, reporter: Reporter, stop: StopFlag, resuming: bool) -> None:
    cfg, source = p.resolved.config, p.teacher_source
    if source.kind != "train":
        reporter.emit("phase", phase="teacher_training", source=source.kind, skipped=True, path=str(source.weights))
        reporter.log(f"teacher {cfg.teacher.model}: loaded from {source.kind} ({source.weights})")
        if resuming and p.dist.is_main:  # stopped while training it, and another run cached it since
            for kind in ("last", "best"):
                checkpoint.checkpoint_path(reporter.dir, kind, TEACHER_PREFIX).unlink(missing_ok=True)
        return
    r = cfg.teacher.recipe
    # the distillation method froze it (all of it, or all but what its fusion model trains): this
    # phase trains all of it, then hands it back as the method left it
    trainable = [q.requires_grad for q in p.teacher.model.parameters()]
    p.teacher.model.train().requires_grad_(True)
    method = Scratch(p.teacher, None, ScratchParams(), r.label_smoothing).to(p.device)
    optim = OptimSpec(r.optimizer, r.lr, r.weight_decay, r.momentum)
    phase = _phase("teacher_training", method, p, r.epochs, optim, r.warmup_epochs, "cosine", 0.01, 0.0,
                   r.grad_clip, reporter.dir, TEACHER_PREFIX, "teacher")
    state = LoopState()
    if resuming and phase.path("last").is_file():
        state = phase.restore(checkpoint.load(phase.path("last"), p.device))
    reporter.emit("phase", phase="teacher_training", source="train", epochs=r.epochs,
                  steps_per_epoch=phase.steps_per_epoch, from_step=state.step)
    epochs = counted(r.epochs, "epoch")
    reporter.log(f"teacher {cfg.teacher.model}: " + (f"training on from step {state.step} of {phase.total_steps}"
                                                     if state.step else f"training from scratch for {epochs}"))
    state = run_phase(phase, state, reporter, stop)
    p.teacher.model.eval()
    for q, flag in zip(p.teacher.model.parameters(), trainable):
        q.requires_grad_(flag)
    p.method.teacher_trained()
    if p.dist.is_main:  # cache the final weights: what the next run with this teacher would also get
        teacher_mod.save_to_cache(source, p.teacher.model, {
            "model": cfg.teacher.model, "best_top1": state.best_top1, "run": reporter.run_id,
            "recipe": to_table(r), "data": cfg.data.name, "subset": cfg.data.subset,
            "val_images": p.data.val_images,  # what best_top1 was measured on
        })
        # where a resume finds it: a run resumed in this phase by a newer fbt may cache it under another key
        reporter.store.update_meta(reporter.run_id, teacher_weights=str(source.weights))
        for kind in ("last", "best"):  # only needed to resume this phase, which is now done
            phase.path(kind).unlink(missing_ok=True)
    distributed.barrier()


def distill_phase(p: Prepared, reporter: Reporter, stop: StopFlag, resuming: bool) -> LoopState:
    cfg = p.resolved.config
    fixed = None
    if p.teacher is not None:
        reporter.emit("phase", phase="eval", during="distillation", epoch=0, images=p.data.val_images)
        fixed = {"teacher": teacher_accuracy(p)}
        top1, chance = fixed["teacher"]["top1"], 100.0 / p.data.num_classes
        reporter.log(f"teacher top-1 {top1:.2f}% on {p.data.val_images} validation images")
        if near_chance(top1, p.data.num_classes) and p.teacher_source.kind in ("train", "cache"):  # loaded: refused
            reporter.warn_once("teacher_near_chance",
                               f"the teacher trained with [teacher.recipe] scores {top1:.1f}% top-1, near chance "
                               f"({chance:.1f}%): distilling from it teaches little; give it more epochs or data")
    o = cfg.optim
    phase = _phase("distillation", p.method, p, cfg.train.epochs,
                   OptimSpec(o.name, o.lr, o.weight_decay, o.momentum, o.nesterov, tuple(o.betas)),
                   cfg.sched.warmup_epochs, cfg.sched.name, cfg.sched.warmup_lr_ratio, cfg.sched.min_lr_ratio,
                   o.grad_clip, reporter.dir, "", "student")
    phase.fixed_metrics = fixed
    if cfg.train.ema:
        from timm.utils import ModelEmaV3

        phase.ema = ModelEmaV3(p.student.model, decay=cfg.train.ema)
    if p.teacher is not None:
        phase.probe = p.data.val.fixed_batch(PROBE_IMAGES)
    state = LoopState()
    if resuming and phase.path("last").is_file():
        state = phase.restore(checkpoint.load(phase.path("last"), p.device))
    p.ema = phase.ema
    reporter.emit("phase", phase="distillation", epochs=cfg.train.epochs, steps_per_epoch=phase.steps_per_epoch,
                  from_step=state.step, teacher=fixed["teacher"] if fixed else None)
    return run_phase(phase, state, reporter, stop)


def save_students(p: Prepared, reporter: Reporter) -> tuple[Path, Path | None]:
    """The student's final weights (its EMA's, where train.ema is on) and those of its best
    evaluated epoch, taken from the best checkpoint: None where that is not the epoch the run
    reports as its best (a resume replayed the epoch it holds, after a crash between best.pt and
    last.pt, and the replay did not score as well)."""
    run_dir = reporter.dir
    model = p.ema.module if p.ema is not None else p.student.model
    ema = "_ema" if p.ema is not None else ""
    final = _write_student(p, run_dir / STUDENT_FILES["final"], model.state_dict(), "ema" if ema else "final")
    best_checkpoint = checkpoint.checkpoint_path(run_dir, "best")
    if not best_checkpoint.is_file():
        return final, None
    payload = checkpoint.load(best_checkpoint, torch.device("cpu"))
    kept = payload["state"]
    if (kept["best_epoch"], kept["best_top1"]) != (reporter.fold.best_epoch, reporter.fold.best_top1):
        reporter.log(f"not keeping the best epoch's weights: best.pt holds epoch {kept['best_epoch']} at "
                     f"{kept['best_top1']:.2f}%, an attempt that a resume replayed")
        return final, None
    prefix, table = ("module.", payload["ema"]) if ema else ("student.", payload["method"])
    state = {k.removeprefix(prefix): v for k, v in table.items() if k.startswith(prefix)}
    best = _write_student(p, run_dir / STUDENT_FILES["best"], state, f"best{ema}",
                          epoch=kept["best_epoch"])
    return final, best


def _write_student(p: Prepared, path: Path, state: dict[str, torch.Tensor], weights: str,
                   epoch: int | None = None) -> Path:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata={
        "model": p.resolved.config.student.model, "fbt": fbt_engine.__version__, "weights": weights,
        **({"epoch": str(epoch)} if epoch is not None else {}),
        "kwargs": json.dumps(p.student.model.fbt_kwargs), "classes": json.dumps(p.data.classes),
        "input": json.dumps(p.data.preprocessing(p.student.in_chans))})
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def _open_run(p: Prepared, options: RunOptions, store: RunStore, resume_id: str | None,
              launched: float) -> tuple[str, int]:
    """(run id, segment) of a new run folder, or of the run being resumed."""
    cfg = p.resolved.config
    if resume_id is None:
        run_dir = store.create(
            config=to_config_table(cfg), preset_raw=p.resolved.raw, preset_source=p.resolved.source,
            name=cfg.run.name, tags=cfg.run.tags, run_id=options.run_id,
            extra_meta={"started": launched, "segments": 1, "versions": versions(),
                        "needs_teacher": cfg.method.needs_teacher,
                        "teacher_weights": str(p.teacher_source.weights) if p.teacher_source else ""},
        )
        return run_dir.name, 1
    try:
        meta = store.claim(resume_id, pid=os.getpid(), pid_start=process_start_ticks(os.getpid()),
                           host=socket.gethostname(), heartbeat=time.time(), ended=None, exit_code=None)
    except (RuntimeError, ValueError) as exc:
        raise EngineError(f"--resume {resume_id}: {exc}", EXIT_USAGE) from None
    if p.resolved.changed:  # the run's resolved config stays the one it now runs with
        write_text_atomic(store.run_dir(resume_id) / "config.toml", tomli_w.dumps(to_config_table(cfg)))
    store.refresh_index(resume_id)  # running in `fbt runs ls` now, and so watched for a crash
    return resume_id, int(meta["segments"])


def to_config_table(cfg: Config) -> dict[str, Any]:
    table = to_table(cfg)
    table["method"] = {"name": cfg.method.name, **table["method"]}
    return table


class Refusal(Exception):
    """The run cannot start: a message for stderr and the exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message, code)
        self.message, self.code = message, code


def _attempt(step):
    """`step()` on every process; a refusal on any process is a refusal on all of them (with the
    first one's message), so no rank waits forever for one that gave up."""
    try:
        result, refusal = step(), None
    except PresetError as exc:
        result, refusal = None, ("\n".join(f"error: {p}" for p in exc.problems), exc.exit_code)
    except EngineError as exc:
        result, refusal = None, (f"error: {exc}", exc.exit_code)
    except LookupError as exc:  # no such run to resume
        result, refusal = None, (f"error: {exc}", EXIT_USAGE)
    except OSError as exc:  # the data home cannot be written as it is (full, read-only, its index locked)
        result, refusal = None, (f"error: {os_error(exc)}", EXIT_ENV)
    refusals = [r for r in distributed.all_gather_objects(refusal) if r is not None]
    if refusals:
        raise Refusal(*refusals[0])
    return result


def run(options: RunOptions) -> int:
    """One run, start to end; under torchrun, this process's part of it (rank 0 writes the store)."""
    launched = time.time()  # a run's duration counts its preparation (data, models, teacher) too
    info = distributed.from_env()
    human = HumanOutput(quiet=options.quiet or not info.is_main)
    store = RunStore()
    with contextlib.ExitStack() as held:
        try:
            resolved, resume_id, resume_from = _attempt(lambda: _resolve(options, store))
            device = _attempt(lambda: select_device(resolved.config.run.device, info))
            distributed.init(info, device)
            held.callback(distributed.shutdown)
            prepared = _attempt(lambda: prepare(resolved, device, info, _resumed_teacher(store, resume_id, resume_from)))
            # after the preparation: a download or a hub's weights do not compute
            share = CpuShare.claim(device, info.world, compile_mode(resolved.config.train, device, info.world) is not None)
            if share is not None:
                held.callback(share.close)
            prepared.cpu_share = share
            run_id, segment = distributed.broadcast(
                _attempt(lambda: _open_run(prepared, options, store, resume_id, launched) if info.is_main else None))
        except Refusal as exc:
            print(exc.message, file=sys.stderr)
            return exc.code
        reporter = (Reporter(store, run_id, options.json, human) if info.is_main
                    else SilentReporter(store.runs_dir / run_id, run_id, human, info.rank))
        with StopFlag(options.ends_process) as stop:
            return execute(prepared, run_id, segment, resume_from, reporter, stop, launched)


def execute(p: Prepared, run_id: str, segment: int, resume_from: tuple[int, str] | None, reporter: Reporter,
            stop: StopFlag, launched: float) -> int:
    """The run, from its start or, resumed, from `resume_from` (step, phase)."""
    cfg = p.resolved.config
    resuming = resume_from is not None
    started = time.time()
    phase_name = "teacher_training" if p.teacher_source and p.teacher_source.kind == "train" else "distillation"
    try:
        device = describe_device(p.device, cfg.train, p.memory_format, p.dist.world)
        if resume_from is not None:
            from_step, phase_name = resume_from
            before = _processes_before(reporter.dir) if p.dist.is_main else p.dist.world  # rank 0 reports
            # the device may not be the one the run started on: a resume's stream says where it goes on
            reporter.emit("resume", run_id=run_id, segment=segment, phase=phase_name, from_step=from_step,
                          changed=p.resolved.changed, device=device, processes=p.dist.world, launched=launched)
            reporter.log(f"resuming {run_id} as segment {segment} from {phase_name} step {from_step} "
                         f"({device['name']})")
            if before != p.dist.world:
                processes = f"{before} process{'es' * (before != 1)}"
                reporter.warn(f"the run trained in {processes} and goes on in {p.dist.world}: the global batch "
                              f"stays {cfg.data.batch_size}, each process's batch and BatchNorm's statistics change "
                              f"(--nproc-per-node {before} goes on as it trained)")
        else:
            reporter.emit("run_started", run_id=run_id, segment=segment, config=to_config_table(cfg), device=device,
                          params=param_counts(p), data=p.data.describe(), uses_teacher=p.teacher is not None,
                          steps_per_epoch=len(p.data.train), loss_terms=p.method.loss_terms(), versions=versions(),
                          processes=p.dist.world, batch_per_process=p.data.train.batch_size)
            reporter.log(f"run {run_id}: {cfg.method.name} {cfg.teacher.model + ' → ' if p.teacher else ''}"
                         f"{cfg.student.model} on {cfg.data.name} ({device['name']})")
            if p.dist.active:
                reporter.log(f"{p.dist.world} processes: global batch {cfg.data.batch_size} = {p.dist.world} × "
                             f"{p.data.train.batch_size}; lr {cfg.optim.lr} applies to the global batch as given "
                             "(no scaling rule)")
            for doubt in p.resolved.doubts:
                reporter.warn(str(doubt))
        if p.cpu_share is not None and p.cpu_share.joined:
            reporter.log(p.cpu_share.joined)
        if p.teacher is not None:
            phase_name = "teacher_training"
            teacher_phase(p, reporter, stop, resuming)
        phase_name = "distillation"
        state = distill_phase(p, reporter, stop, resuming)
        stop.settle()  # trained: what is left is writing it down
        in_sync = _ranks_in_sync(p)
        weights, best_weights = save_students(p, reporter) if p.dist.is_main else (None, None)
        summary = reporter.fold
        reporter.emit("run_finished", best={"top1": summary.best_top1, "epoch": summary.best_epoch},
                      final={"top1": summary.final_top1}, fusion={"top1": summary.fusion_top1},
                      teacher={"top1": summary.teacher_top1}, steps=state.step, wall_time=time.time() - started,
                      student_weights=weights.name if weights else None,
                      best_student_weights=best_weights.name if best_weights else None, ranks_in_sync=in_sync)
        reporter.finish("finished", EXIT_OK, f"finished: best top-1 {summary.best_top1:.2f}% (epoch "
                        f"{summary.best_epoch}), final {summary.final_top1:.2f}% — {reporter.dir}")
        return EXIT_OK
    except (Interrupted, KeyboardInterrupt) as exc:
        stop.settle()
        saved = isinstance(exc, Interrupted)  # else a second Ctrl-C stopped it at once, saving nothing
        reporter.emit("run_interrupted", phase=phase_name, saved=saved)
        reporter.finish("interrupted", EXIT_INTERRUPTED,
                        ("interrupted" if saved else f"stopped at once: nothing saved since {_saved_point(reporter.dir)}")
                        + f"; resume with: fbt run --resume {run_id}")
        return EXIT_INTERRUPTED
    except NonFiniteLoss as exc:
        stop.settle()
        reporter.emit("run_failed", error="NonFiniteLoss", message=str(exc), step=exc.step, phase=phase_name)
        reporter.finish("failed", EXIT_FAILED, f"failed: {exc}")
        return EXIT_FAILED
    except Exception as exc:  # the run failed: record it fully, then report it briefly
        stop.settle()
        tail = traceback.format_exc().splitlines()[-25:]
        reporter.emit("run_failed", error=type(exc).__name__, message=str(exc), traceback="\n".join(tail),
                      phase=phase_name, rank=p.dist.rank)
        reporter.finish("failed", EXIT_FAILED, f"failed: {type(exc).__name__}: {exc}")
        return EXIT_FAILED


def _processes_before(run_dir: Path) -> int:
    """The processes the run's last segment trained in (older runs: unsaid, one)."""
    said = [e.get("processes") for e in read_events(run_dir / "events.jsonl") if e["type"] in ("run_started", "resume")]
    return int(said[-1] or 1) if said else 1


def _saved_point(run_dir: Path) -> str:
    """Where a resume of a run stopped at once goes on from, in words."""
    try:
        step, phase = resume_point(run_dir)
    except EngineError:  # its checkpoint is unreadable: the resume will say so
        return "its last checkpoint"
    return f"{phase.replace('_', ' ')} step {step}"


def _ranks_in_sync(p: Prepared) -> bool:
    """Whether every process ends with the same student (DDP's promise, checked): its weights, and
    its BatchNorm statistics, which each process moves with its own batches and the last evaluation
    made rank 0's everywhere."""
    if not p.dist.active:
        return True
    model = p.ema.module if p.ema is not None else p.student.model
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return len(set(distributed.all_gather_objects(digest.hexdigest()))) == 1


def resume_point(run_dir: Path) -> tuple[int, str]:
    """(step, phase) a run resumes from: its newest `last` checkpoint, or, when the earlier segment
    died before writing one, step 0 of the phase it had reached (so its steps are superseded)."""
    for prefix, phase in (("", "distillation"), (TEACHER_PREFIX, "teacher_training")):
        path = checkpoint.checkpoint_path(run_dir, "last", prefix)
        if path.is_file():
            try:  # mapped, not read: only the step is wanted (a paper pair's checkpoint is hundreds of MB)
                payload = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
                return int(payload["state"]["step"]), phase
            except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError) as exc:
                raise EngineError(f"{path}: cannot read this checkpoint ({type(exc).__name__}: {exc}); the run "
                                  "cannot resume from it", EXIT_ENV) from None
    # the frozen teacher's evaluation (after a teacher trained here was cached) counts as distillation's
    reached = [training_phase(e) for e in effective(read_events(run_dir / "events.jsonl")) if e["type"] == "phase"]
    return 0, "distillation" if "distillation" in reached else "teacher_training"
