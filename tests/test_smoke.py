import json

from conftest import PRESETS, run_fbt, tiny_sets


def test_tiny_run_finishes_with_events_and_weights(fbt_home):
    result = run_fbt("run", str(PRESETS / "mlp_to_cnn.toml"), *tiny_sets(), "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert "epoch" in types and "stages" in types
    (run_dir,) = (fbt_home / "runs").iterdir()
    assert (run_dir / "student.safetensors").is_file()
    _assert_every_evaluation_is_announced(events)


def _assert_every_evaluation_is_announced(events: list[dict]) -> None:
    """SPEC §6's `eval` phase, which the next event ends: a watcher knows the run is scoring, not
    stuck (seconds at 224 px)."""
    val_images = events[0]["data"]["val_images"]
    evaluated = [(e["phase"], e["epoch"]) for e in events if e["type"] == "epoch" and "val_loss" in e]
    announced = []
    events = [e for e in events if e["type"] != "warning"]  # a warning about the teacher follows its scoring
    for ev, after in zip(events, events[1:]):
        if ev["type"] == "phase" and ev["phase"] == "eval":
            assert ev["images"] == val_images
            if ev["epoch"] == 0:  # the frozen teacher, once, before distillation
                assert after["type"] == "phase" and after["phase"] == "distillation" and "step" not in ev
            else:
                assert (after["type"], after["phase"], after["epoch"], after["step"]) == (
                    "epoch", ev["during"], ev["epoch"], ev["step"]) and "val_loss" in after
                announced.append((ev["during"], ev["epoch"]))
    assert announced == evaluated == [("teacher_training", 1), ("distillation", 1)]
    assert sum(e["type"] == "phase" and e["phase"] == "eval" and e["epoch"] == 0 for e in events) == 1
