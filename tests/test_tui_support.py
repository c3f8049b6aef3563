"""Helpers for the TUI tests (this module has no tests of its own): driving the app through
Pilot, and run folders written through the engine's own store API, so History has something
to show without training anything."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from fbt_engine.config.fields import to_table
from fbt_engine.config.presets import collect
from fbt_engine.store.events import EventWriter
from fbt_engine.store.runs import RunStore, new_run_id

from conftest import PRESETS, TINY

MLP_TO_CNN = PRESETS / "mlp_to_cnn.toml"
FBT_TERMS = ["ce", "fusion/ce", "ts/nce", "ts/logit", "tf/nce", "tf/logit", "fs/nce", "fs/logit"]


def run_app(scenario: Callable[[Any, Any], Awaitable[None]], size: tuple[int, int] = (160, 48),
            start_mode: str = "presets") -> None:
    """Run `scenario(app, pilot)` in a fresh app; afterwards nothing it started is left running."""
    from fbt_tui.app import FbtApp
    from fbt_tui.screens.dialogs import ErrorDialog

    async def main() -> None:
        app = FbtApp(start_mode=start_mode)
        try:
            async with app.run_test(size=size) as pilot:
                await pilot.pause(0.2)
                try:
                    await scenario(app, pilot)
                except Exception as exc:
                    # a failure with an error dialog open may be that dialog's doing: say what it said
                    dialogs = [s for s in app.screen_stack if isinstance(s, ErrorDialog)]
                    if dialogs:
                        raise AssertionError(f"{type(exc).__name__}: {exc}\nwith an error dialog open: "
                                             f"{dialogs[-1].title_text}: {dialogs[-1].message}") from exc
                    raise
        finally:
            for handle in list(app.manager.handles.values()):
                if handle.proc is not None and handle.proc.poll() is None:
                    os.killpg(handle.proc.pid, signal.SIGKILL)
                    handle.proc.wait(timeout=10)
            app.cleanup()

    asyncio.run(main())


async def wait_for(pilot, predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def shown_error(app):
    """The error dialog on top, once composed (a dialog just pushed has no widgets yet), or None."""
    from fbt_tui.screens.dialogs import ErrorDialog

    screen = app.screen
    return screen if isinstance(screen, ErrorDialog) and screen.query("#error-message") else None


async def open_from_history(app, pilot):
    """The only run of History, opened in its dashboard tab: its RunView."""
    from fbt_tui.widgets.run_view import RunView

    if app.current_mode != "history":
        await app.switch_mode("history")
    await wait_for(pilot, lambda: app.screen.query("#history-table"), 10, "History")
    await wait_for(pilot, lambda: app.screen.query_one("#history-table").row_count == 1, 10, "the run's row")
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.screen.query(RunView), 10, "the run's tab")
    return app.screen.query_one(RunView)


def tiny_form_values() -> dict[str, str]:
    """The conftest TINY settings as Presets-form fields (plus the one without a field)."""
    values = dict(item.split("=", 1) for item in TINY)
    return {"train.epochs": values["train.epochs"], "teacher.recipe.epochs": values["teacher.recipe.epochs"],
            "data.batch_size": values["data.batch_size"], "data.subset": values["data.subset"],
            "extra": f"train.log_every={values['train.log_every']}"}


def config_table(**changes: Any) -> dict[str, Any]:
    """mlp_to_cnn's resolved config, as a run stores it, with dotted-key changes."""
    cfg = collect(MLP_TO_CNN).config
    table = to_table(cfg)
    table["method"] = {"name": cfg.method.name, **table["method"]}
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = table
        for part in parents:
            node = node[part]
        node[leaf] = value
    return table


def fake_run(home: Path, name: str, *, top1: tuple[float, ...] = (40.0, 55.0, 50.0), status: str = "finished",
             started: float | None = None, tags: tuple[str, ...] = (), steps_per_epoch: int = 4,
             student_file: bool = True, fusion: bool = True, terms: tuple[str, ...] = tuple(FBT_TERMS),
             **config: Any) -> str:
    """A complete run folder (meta, config, events, weights) as the engine would leave it; with
    `fusion` false, as a method without a fusion model's (kd); `terms`: its loss terms."""
    store = RunStore(home)
    started = started or time.time()
    run_id = new_run_id(started)
    cfg = config_table(**{"run.name": name, **config})
    folder = store.create(config=cfg, preset_raw=MLP_TO_CNN.read_bytes(), preset_source=str(MLP_TO_CNN), name=name,
                          tags=list(tags), extra_meta={}, run_id=run_id)
    writer = EventWriter(folder / "events.jsonl")
    t = started
    writer.write("run_started", time=t, run_id=run_id, segment=1, config=cfg,
                 device={"type": "cpu", "name": "CPU (2 cores)", "amp": "off"},
                 params={"student": 308826, "teacher": 244502, "fusion": 147772}, uses_teacher=True,
                 data={"name": "fashion_mnist_5k", "classes": 10, "img_size": 28, "train_images": 500,
                       "val_images": 100}, steps_per_epoch=steps_per_epoch, loss_terms=list(terms))
    writer.write("phase", time=t, phase="distillation", epochs=len(top1), steps_per_epoch=steps_per_epoch,
                 from_step=0, teacher={"top1": 70.0, "top5": 95.0})
    step = 0
    for epoch, acc in enumerate(top1, start=1):
        for _ in range(steps_per_epoch):
            step += 1
            t += 1
            losses = {term: 3.0 / (1 + 0.1 * step) + i * 0.1 for i, term in enumerate(terms)}
            writer.write("step", time=t, phase="distillation", step=step, epoch=epoch, lr=0.05,
                         loss=sum(losses.values()), losses=losses, img_s=500.0)
        writer.write("epoch", time=t, phase="distillation", epoch=epoch, step=step, epoch_time=4.0, lr=0.05,
                     train_loss=20.0 / epoch, train_losses={}, img_s=500.0, val_loss=2.0 / epoch,
                     student={"top1": acc, "top5": 90.0}, teacher={"top1": 70.0, "top5": 95.0},
                     **({"fusion": {"top1": acc - 5, "top5": 88.0}} if fusion else {}))
        writer.write("stages", time=t, phase="distillation", epoch=epoch, step=step,
                     stages=[{"stage": k, "cka_ts": 0.9 - 0.1 * k + 0.01 * epoch} for k in range(1, 5)],
                     pooled={p: {"cka": 0.5 + 0.05 * epoch, "cos": 0.3, "retrieval": 0.1, "norm_ratio": 0.8}
                             for p in ("ts", "tf", "fs")})
    if status == "finished":
        best = max(top1)
        writer.write("run_finished", time=t, best={"top1": best, "epoch": top1.index(best) + 1},
                     final={"top1": top1[-1]}, fusion={"top1": top1[-1] - 5 if fusion else None},
                     teacher={"top1": 70.0}, steps=step,
                     wall_time=t - started, student_weights="student.safetensors",
                     best_student_weights="student_best.safetensors")
        if student_file:  # weights as the engine writes them: a tensor, and the run's record beside it
            from safetensors.numpy import save_file

            for file, weights, value in (("student.safetensors", "final", 1), ("student_best.safetensors", "best", 2)):
                save_file({"w": np.full(3, value, dtype=np.float32)}, str(folder / file),
                          metadata={"kwargs": "{}", "input": '{"img_size": 28}', "weights": weights,
                                    **({"epoch": str(top1.index(best) + 1)} if weights == "best" else {})})
    writer.close()
    store.update_meta(run_id, status=status, started=started, ended=t, heartbeat=t,
                      exit_code=0 if status == "finished" else 1)
    store.refresh_index(run_id)
    store.close()
    return run_id
