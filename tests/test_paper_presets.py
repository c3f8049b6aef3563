"""A paper preset end to end on a fabricated CIFAR-100 folder, at reduced size: the OFA-KD
ViT-student recipe (RandAugment, Mixup/CutMix, random erasing, AdamW, grad clip) through FBT."""

from __future__ import annotations

from conftest import PRESETS, run_fbt
from helpers_engine import fabricate_cifar, file_events, only_run


def test_paper_preset_runs_on_a_cifar100_folder_at_reduced_size(fbt_home, tmp_path):
    fabricate_cifar(tmp_path, 100, per_file=200)
    result = run_fbt(
        "run", str(PRESETS / "paper" / "cifar100_convnext_t_to_deit_t.toml"),
        "--set", f'data.root="{tmp_path}"', "--set", "data.download=false", "--set", "data.img_size=32",
        "--set", "data.subset=200", "--set", "data.batch_size=20", "--set", "data.eval_batch_size=50",
        "--set", "train.epochs=1", "--set", "teacher.recipe.epochs=1", "--set", "train.log_every=2",
        "--set", "sched.warmup_epochs=0", "--set", "teacher.recipe.warmup_epochs=0", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    events = file_events(only_run(fbt_home))
    started = events[0]
    assert started["data"]["classes"] == 100 and started["data"]["img_size"] == 32
    cfg = started["config"]
    assert (cfg["teacher"]["model"], cfg["student"]["model"], cfg["method"]["name"]) == (
        "convnext_tiny", "deit_tiny_patch16_224", "fbt")
    assert cfg["data"]["randaugment"] == "rand-m9-mstd0.5-inc1" and cfg["data"]["mixup"] == 0.8
    step = next(e for e in events if e["type"] == "step" and e["phase"] == "distillation")
    assert {"ce", "fusion/ce", "ts/nce", "tf/logit", "fs/nce"} <= set(step["losses"])
    stages = next(e for e in events if e["type"] == "stages")
    assert len(stages["stages"]) == 4 and set(stages["pooled"]) == {"ts", "tf", "fs"}
    assert events[-1]["type"] == "run_finished"
