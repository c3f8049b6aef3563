"""Exports and comparisons straight from the run folders: full-resolution metrics (every logged
step, never sampled), the distilled student with its sidecar, and config diffs. No torch here."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from fbt_engine.models.names import own_model_names
from fbt_engine.store.events import effective
from fbt_engine.store.runs import RunStore
from fbt_engine.store.summary import RunSummary

FORMATS = ("csv", "json", "jsonl", "md")
# the student's weights a finished run keeps: its last epoch's (EMA's, with train.ema) and its best evaluated epoch's
STUDENT_FILES = {"final": "student.safetensors", "best": "student_best.safetensors"}
BEST_STEM = "_best"  # an exported file of the best weights ends its name so, by default
_STEP_COLUMNS = ["run", "phase", "step", "epoch", "time", "lr", "loss", "img_s"]


def step_rows(run_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged step; loss terms become `loss/<term>` columns."""
    return [_step_row(run_id, ev) for ev in effective(events) if ev["type"] == "step"]


def _step_row(run_id: str, ev: dict[str, Any]) -> dict[str, Any]:
    row = {"run": run_id, **{k: ev.get(k) for k in _STEP_COLUMNS[1:]}}
    row.update({f"loss/{k}": v for k, v in (ev.get("losses") or {}).items()})
    return row


def _epoch_columns(ev: dict[str, Any]) -> dict[str, Any]:
    row = {"train_loss": ev.get("train_loss"), "val_loss": ev.get("val_loss"), "epoch_time": ev.get("epoch_time")}
    for who in ("student", "teacher", "fusion"):
        for metric in ("top1", "top5"):
            row[f"{who}/{metric}"] = (ev.get(who) or {}).get(metric)
    row["timed_steps"] = ev.get("timed_steps")  # last: a reader by position keeps the columns it had
    return row


def epoch_rows(run_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"run": run_id, "phase": ev.get("phase"), "epoch": ev.get("epoch"), "step": ev.get("step"),
             **_epoch_columns(ev)} for ev in effective(events) if ev["type"] == "epoch"]


def metric_rows(run_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The CSV's one table: a row per logged step, each epoch's mean train loss, validation loss
    and accuracies on the row of the step that ended it (on a row of their own where that step was
    not logged), so that filtering on a validation column gives the epoch curve."""
    rows: list[dict[str, Any]] = []
    for ev in effective(events):
        if ev["type"] == "step":
            rows.append(_step_row(run_id, ev))
        elif ev["type"] == "epoch":
            last = rows[-1] if rows else {}
            if (last.get("phase"), last.get("step")) != (ev.get("phase"), ev.get("step")):
                last = {"run": run_id, **{k: ev.get(k) for k in _STEP_COLUMNS[1:5]}}
                rows.append(last)
            last.update(_epoch_columns(ev))
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key in the order first seen, the loss terms (which phases add as they come) together
    after the step's own columns."""
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    return sorted(cols, key=lambda c: 0 if c in _STEP_COLUMNS else 1 if c.startswith("loss/") else 2)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows) or _STEP_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(store: RunStore, run_ids: list[str]) -> str:
    lines = ["| run | name | method | teacher → student | status | best top-1 (epoch) | final top-1 | best fusion top-1 |",
             "|---|---|---|---|---|---|---|---|"]
    events = {rid: store.events(rid) for rid in run_ids}  # read once: the failures and the epochs come from them
    for rid in run_ids:
        s = store.summary(rid)
        lines.append(f"| {s.id} | {_md_cell(s.name)} | {s.method} | {s.pair} | {s.status} | "
                     f"{_fmt(s.best_top1)} ({_fmt(s.best_epoch)}) | {_fmt(s.final_top1)} | {_fmt(s.fusion_top1)} |")
    failures = [(rid, failure) for rid in run_ids if (failure := last_failure(events[rid])) is not None]
    if failures:
        lines.append("")
        lines += [f"- {rid} failed: {f.get('error')}: {f.get('message')}" for rid, f in failures]
    for rid in run_ids:
        rows = epoch_rows(rid, events[rid])
        if not rows:
            continue
        lines += ["", f"### {rid}", "", "| phase | epoch | train loss | val loss | student top-1 | teacher top-1 | fusion top-1 |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['phase']} | {r['epoch']} | {_fmt(r['train_loss'], 4)} | {_fmt(r['val_loss'], 4)} | "
                  f"{_fmt(r['student/top1'])} | {_fmt(r['teacher/top1'])} | {_fmt(r['fusion/top1'])} |" for r in rows]
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    """Text in a Markdown table's cell: a "|" would end the cell."""
    return text.replace("|", "\\|")


def last_failure(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run_failed event that ended the run's last segment, or None: a failure that a resume
    went on from is history, not why the run stands where it does."""
    for event in reversed(events):
        if event["type"] == "run_failed":
            return event
        if event["type"] in ("resume", "run_finished"):
            return None
    return None


def export_metrics(store: RunStore, run_ids: list[str], fmt: str) -> str:
    if fmt == "csv":
        return to_csv([row for rid in run_ids for row in metric_rows(rid, store.events(rid))])
    if fmt == "jsonl":
        # "type" first, as in events.jsonl (SPEC §6), then the run it is of
        return "".join(json.dumps({"type": ev["type"], "run": rid, **ev}, separators=(",", ":")) + "\n"
                       for rid in run_ids for ev in effective(store.events(rid)))
    if fmt == "json":
        runs = []
        for rid in run_ids:
            events = store.events(rid)
            runs.append({"summary": store.summary(rid).as_report(time.time()), "config": load_config(store, rid),
                         "steps": step_rows(rid, events), "epochs": epoch_rows(rid, events),
                         "failure": last_failure(events),
                         "stages": [e for e in effective(events) if e["type"] == "stages"]})
        return json.dumps(runs, indent=1) + "\n"  # a list however many runs: one shape for every caller
    if fmt == "md":
        return markdown(store, run_ids)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def load_config(store: RunStore, run_id: str) -> dict[str, Any]:
    """The run's config as it ran, with its tags as they are now: `fbt runs tag` changes meta.json,
    and the config.toml a resume reads is left as the run was started."""
    path = store.run_dir(run_id) / "config.toml"
    if not path.is_file():
        return {}
    cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    cfg.setdefault("run", {})["tags"] = list(store.read_meta(run_id).get("tags", []))
    return cfg


class ExportError(RuntimeError):
    pass


def recorded(weights: Path) -> dict[str, Any]:
    """What the run wrote beside the student's weights, in their metadata: `kwargs`, what
    timm.create_model needs besides the name and the class count to rebuild the student (img_size
    where the model took it, as a ViT at 32 px must be told), and `input`, how evaluation made the
    model's input from an image; `classes`, the class names in the order of the logits; `weights`,
    which of the run's weights these are (final, ema, best, best_ema) and `epoch`, the best one's
    epoch. Weights an older fbt saved have only some of them."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="np") as f:
            metadata = f.metadata() or {}
        found: dict[str, Any] = {key: json.loads(metadata[key]) for key in ("kwargs", "input", "classes", "epoch")
                                 if key in metadata}
        return found | ({"weights": metadata["weights"]} if "weights" in metadata else {})
    except (SafetensorError, ValueError) as exc:  # ValueError: a JSON value that is not JSON
        raise ExportError(f"{weights} cannot be read as safetensors weights ({exc})") from None


def student_paths(target: Path) -> tuple[Path, Path]:
    """The weights file (always .safetensors) and its sidecar TOML that exporting to `target` writes."""
    weights = target if target.suffix == ".safetensors" else target.with_suffix(".safetensors")
    return weights, weights.with_suffix(".toml")


def export_student(store: RunStore, run_id: str, target: Path, weights: str = "final") -> tuple[Path, Path]:
    """The student's weights (a timm-loadable state dict), its final or its best epoch's, and a
    sidecar TOML naming the model."""
    source = store.run_dir(run_id) / STUDENT_FILES[weights]
    if not source.is_file():
        status = store.read_meta(run_id).get("status")
        if status == "finished" and weights == "best":
            raise ExportError(f"run {run_id} kept no best epoch's weights (an earlier fbt, which kept only the "
                              "final ones, ran it, or its best checkpoint was an epoch that a resume replayed; "
                              "its log says which): export its final weights")
        raise ExportError(f"run {run_id} has no {source.name} (status: {status}); "
                          "weights are written when a run finishes")
    target, side = student_paths(target)
    if not target.parent.is_dir():  # as -o: a mistyped folder is said, not made
        raise ExportError(f"{target}: cannot write: no such folder {target.parent}")
    _write_pair(source, target, side, tomli_w.dumps(_sidecar(store, run_id, source, target)))
    return target, side


def _write_pair(source: Path, target: Path, side: Path, text: str) -> None:
    """The weights and their sidecar: each is written beside its place and moved there once both
    are written, so a full or read-only disk leaves no weights without a sidecar (nor an earlier
    export's sidecar beside new weights). Only a rename failing between the two could part them."""
    for path in (target, side):
        if path.is_dir():
            raise ExportError(f"{path}: cannot write: a folder is in the way")
    staged_weights = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staged_side = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    try:
        _writing(target, lambda: shutil.copyfile(source, staged_weights))
        _writing(side, lambda: staged_side.write_text(text, encoding="utf-8"))
        _writing(side, lambda: os.replace(staged_side, side))
        _writing(target, lambda: os.replace(staged_weights, target))
    finally:
        staged_weights.unlink(missing_ok=True)
        staged_side.unlink(missing_ok=True)


def _writing(path: Path, write: Callable[[], object]) -> None:
    try:
        write()
    except OSError as exc:  # a read-only or full file system, a folder in the way
        raise ExportError(f"{path}: cannot write: {exc.strerror}") from None


def _sidecar(store: RunStore, run_id: str, source: Path, target: Path) -> dict[str, Any]:
    """What the weights are, where they come from and how to load them."""
    cfg = load_config(store, run_id)
    summary = store.summary(run_id)
    started = next((e for e in store.events(run_id) if e["type"] == "run_started"), {})
    data = started.get("data", {})
    written = recorded(source)
    kwargs = written.get("kwargs", cfg["student"].get("kwargs", {}))
    own = cfg["student"]["model"] in own_model_names()  # fbt's own models load with fbt installed; timm's, anywhere
    return {
        "model": {"name": cfg["student"]["model"], "kwargs": kwargs,
                  "num_classes": data.get("classes", 0), "img_size": data.get("img_size", 0),
                  **({"class_names": written["classes"]} if "classes" in written else {})},
        "data": {"name": cfg["data"]["name"]},
        **({"input": written["input"]} if "input" in written else {}),
        "source": {"run": run_id, "method": summary.method, "teacher": summary.teacher,
                   "best_top1": summary.best_top1 or 0.0, "final_top1": summary.final_top1 or 0.0,
                   "weights": written.get("weights", "final"),
                   # top-1 is measured on these: a data.subset run evaluates on a slice
                   **({"val_images": data["val_images"]} if "val_images" in data else {}),
                   **({"epoch": written["epoch"]} if "epoch" in written else {})},
        "load": {"python": (  # runs as written beside the weights: every name in it is defined
            f"import timm{', fbt_engine.models.small' if own else ''}; from safetensors.torch import load_file; "
            f"m = timm.create_model({cfg['student']['model']!r}, num_classes={data.get('classes', 0)}"
            f"{''.join(f', {k}={v!r}' for k, v in kwargs.items())}); "
            f"m.load_state_dict(load_file({target.name!r})); m.eval()")},
        "config": cfg,
    }


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(configs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Only the dotted keys whose values differ between the configs (missing keys count)."""
    flat = [flatten(c) for c in configs]
    keys = sorted(set().union(*flat))
    return {k: [f.get(k) for f in flat] for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1}


def method_own_keys(diff: dict[str, list[Any]]) -> set[str]:
    """The keys in `diff` that are one method's own parameters, absent from the runs of another
    method and alike in the runs that have them: a consequence of method.name differing, not a
    choice of their own (fbt's τ set two ways in two fbt runs is still a difference)."""
    if "method.name" not in diff:
        return set()
    return {key for key, values in diff.items() if key.startswith("method.") and None in values
            and len({json.dumps(v, sort_keys=True) for v in values if v is not None}) == 1}


def compare(store: RunStore, run_ids: list[str]) -> tuple[list[RunSummary], dict[str, list[Any]]]:
    return [store.summary(r) for r in run_ids], config_diff([load_config(store, r) for r in run_ids])


def config_text(value: Any) -> str:
    """A config value as compare shows it: strings as they are, the rest as JSON (true, [0.9, 0.99])."""
    return value if isinstance(value, str) else json.dumps(value)


def compare_csv(summaries: list[RunSummary], diff: dict[str, list[Any]]) -> str:
    rows = []
    for i, s in enumerate(summaries):
        row = {"run": s.id, "name": s.name, "method": s.method, "teacher": s.teacher, "student": s.student,
               "status": s.status, "best_top1": s.best_top1, "best_epoch": s.best_epoch,
               "final_top1": s.final_top1, "fusion_top1": s.fusion_top1, "duration_s": s.elapsed(time.time())}
        row.update({k: None if v[i] is None else config_text(v[i]) for k, v in diff.items()})
        rows.append(row)
    return to_csv(rows)
