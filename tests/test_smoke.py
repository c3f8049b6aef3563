import json

from conftest import PRESETS, run_fbt, tiny_sets


def test_tiny_run_finishes_with_events_and_weights(fbt_home):
    result = run_fbt("run", str(PRESETS / "mlp_to_cnn.toml"), *tiny_sets(), "--json")
    assert result.returncode == 0, result.stderr
    types = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert "epoch" in types and "stages" in types
    (run_dir,) = (fbt_home / "runs").iterdir()
    assert (run_dir / "student.safetensors").is_file()
