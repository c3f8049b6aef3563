"""[method.<name>] sub-tables: a preset carries settings for several methods; method.name picks."""

from conftest import PRESETS
from fbt_engine.config.presets import collect


def test_switching_method_keeps_a_preset_with_fbt_settings_valid():
    fbt = collect(PRESETS / "vit_to_cnn.toml")
    assert not fbt.problems and fbt.config.method.l2g_mlp_ratio == 0.5
    kd = collect(PRESETS / "vit_to_cnn.toml", ["method.name=kd", "method.kd.temperature=2"])
    assert not kd.problems and kd.config.method.name == "kd" and kd.config.method.temperature == 2


def test_every_method_table_is_checked_under_its_own_keys():
    problems = [str(p) for p in collect(PRESETS / "vit_to_cnn.toml",
                                        ["method.kd.temprature=3", "method.fbt.l2g_mlp_ratio=-1"]).problems]
    assert any("method.kd.temprature: unknown key" in p and 'did you mean "temperature"' in p for p in problems)
    assert any("method.fbt.l2g_mlp_ratio: expected a value ≥ 0" in p for p in problems)


def test_a_key_set_flat_and_in_the_method_table_is_an_error():
    problems = [str(p) for p in collect(PRESETS / "vit_to_cnn.toml", ["method.l2g_mlp_ratio=1.0"]).problems]
    assert any("set both in [method] and in [method.fbt]" in p for p in problems)
