"""Parameter counts for the preset preview, without torch in this process: a past run's own
`run_started` counts when one matches, else a subprocess that builds the two models."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fbt_engine.config.schema import Config
from fbt_engine.data.catalog import DATASETS
from fbt_engine.store.runs import RunStore

# Runs in a child interpreter: it may import torch, this process may not.
_COUNT_SCRIPT = """
import json, sys
from fbt_engine.models.factory import count_params, create_model
spec = json.loads(sys.argv[1])
# weights change no count: pretrained ones are not fetched for one
print(json.dumps({side: count_params(create_model(name, spec["classes"], spec["img_size"],
                                                  kwargs | {"pretrained": False}))
                  for side, (name, kwargs) in spec["models"].items()}))
"""
TIMEOUT_S = 120


@dataclass(frozen=True)
class ModelSpec:
    """What the counts depend on."""

    student: str
    teacher: str  # "" when the method needs none
    classes: int
    img_size: int
    student_kwargs: str = "{}"
    teacher_kwargs: str = "{}"

    @classmethod
    def of(cls, cfg: Config) -> ModelSpec:
        info = DATASETS.get(cfg.data.name)
        img_size = cfg.data.img_size or (info.native_size if info else 0) or 224
        teacher = cfg.teacher.model if cfg.method.needs_teacher else ""
        return cls(cfg.student.model, teacher, info.num_classes if info else 0, img_size,
                   json.dumps(cfg.student.kwargs, sort_keys=True), json.dumps(cfg.teacher.kwargs, sort_keys=True))


def from_past_runs(store: RunStore, cfg: Config) -> tuple[dict[str, int], str] | None:
    """The counts a finished or running run of the same pair, method and data logged."""
    teacher = cfg.teacher.model if cfg.method.needs_teacher else ""
    for row in store.index.all():  # not list(): marking crashed runs is start-up's job, not a preview's
        if (row.student, row.teacher, row.method, row.dataset) != (cfg.student.model, teacher, cfg.method.name,
                                                                     cfg.data.name):
            continue
        first = _first_event(store.run_dir(row.id) / "events.jsonl")
        if first and first.get("type") == "run_started" and first.get("params"):
            img = (first.get("data") or {}).get("img_size")
            if not cfg.data.img_size or img == cfg.data.img_size:
                return first["params"], row.id
    return None


def _first_event(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            line = fh.readline()
        return json.loads(line) if line.endswith("\n") else None
    except (OSError, json.JSONDecodeError):
        return None


def count_in_subprocess(spec: ModelSpec, track: set[subprocess.Popen]) -> dict[str, int]:
    """Build the models in a child interpreter; `track` holds it while it runs, so quitting the
    app can end it."""
    models = {"student": [spec.student, json.loads(spec.student_kwargs)]}
    if spec.teacher:
        models["teacher"] = [spec.teacher, json.loads(spec.teacher_kwargs)]
    arg = json.dumps({"classes": spec.classes, "img_size": spec.img_size, "models": models})
    proc = subprocess.Popen([sys.executable, "-c", _COUNT_SCRIPT, arg], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    track.add(proc)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"counting parameters took over {TIMEOUT_S} s") from None
    finally:
        track.discard(proc)
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not build the models: {last}")
    return json.loads(out)
