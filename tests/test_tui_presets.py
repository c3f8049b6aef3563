"""Presets mode: validation next to each field (the engine's own checks), the model picker,
saving a user preset without ever touching a built-in."""

import signal
import tomllib

import pytest

from textual import events
from textual.widgets import Input, OptionList, Select

from fbt_tui.screens.dialogs import ConfirmDialog, PromptDialog
from fbt_tui.screens.model_picker import ModelPicker
from fbt_tui.screens.presets import split_items

from test_tui_support import MLP_TO_CNN as MLP, run_app, wait_for


def field_error(screen, key: str) -> str:
    row = screen.query_one(f"#f-{key.replace('.', '-')}-row")
    return str(row.query_one(".field-error").render()) if row.has_class("-invalid") else ""


async def loaded(app, pilot):
    screen = app.screen
    await wait_for(pilot, lambda: screen.ref is not None and screen.ref.name == "mlp_to_cnn", 10, "the preset")
    return screen


def user_preset(home, name: str, data: str) -> None:
    """mlp_to_cnn as a user preset, with its [data] name line replaced by `data`."""
    user_dir = home / "config" / "presets"
    user_dir.mkdir(parents=True, exist_ok=True)
    (user_dir / f"{name}.toml").write_text(MLP.read_text().replace('name = "fashion_mnist_5k"', data))


async def shown(app, pilot, name: str):
    screen = app.screen
    screen.reload_list(select=name)
    await wait_for(pilot, lambda: screen.ref is not None and screen.ref.name == name, 10, "the preset")
    return screen


def test_errors_show_next_to_their_field_and_block_the_launch(fbt_home):
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        screen.query_one("#f-train-epochs", Input).value = "0"
        screen.query_one("#f-data-batch_size", Input).value = "lots"
        screen.query_one("#f-student-model", Input).value = "resnet11_cifar"
        screen.query_one("#f-extra", Input).value = "method.nce_wieght=2"
        screen.query_one("#f-optim-lr", Input).value = ""
        await pilot.pause()
        assert field_error(screen, "optim.lr").startswith("✗ empty: type a number")  # not a TOML lesson
        screen.query_one("#f-optim-lr", Input).value = "0.05"
        await pilot.pause()
        assert "expected a value ≥ 1, got 0" in field_error(screen, "train.epochs")
        assert "expected an integer" in field_error(screen, "data.batch_size")
        assert 'did you mean "resnet18_cifar"' in field_error(screen, "student.model")
        assert "nce_weight" in field_error(screen, "extra")  # the engine's own "did you mean"
        assert field_error(screen, "optim.lr") == ""
        preview = str(screen.query_one("#preview").render())
        assert "4 problems" in preview
        # not the schema's defaults (5 epochs, batch 128) that the config holds for the wrong fields
        assert "epochs   ? distillation" in preview and "batch  ?" in preview
        await pilot.press("enter")  # on the list: refused, nothing launched
        assert not app.manager.handles and app.current_mode == "presets"

        screen.query_one("#f-train-epochs", Input).value = "3"
        screen.query_one("#f-data-batch_size", Input).value = "64"
        screen.query_one("#f-extra", Input).value = ""
        screen.query_one("#f-method-name", Select).value = "kd"
        await pilot.pause()
        assert field_error(screen, "train.epochs") == ""
        # only what differs from the preset, strings quoted as TOML, numbers as typed
        assert screen.overrides() == ['student.model="resnet11_cifar"', 'method.name="kd"', "train.epochs=3",
                                      "data.batch_size=64"]

        await pilot.press("ctrl+r")  # back to the preset as written
        assert screen.overrides() == [] and not screen.problems
        screen.query_one("#f-data-subset", Input).value = "1000"  # the validation slice shrinks too: said
        await pilot.pause()
        assert "subset 1000 (validation: a fifth as many)" in str(screen.query_one("#preview").render())

    run_app(scenario)


def test_esc_leaves_a_field_so_that_the_mode_keys_work_again(fbt_home):
    """In a field, h is a letter of the value; esc goes back to the preset list, where h is History."""
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        extra = screen.query_one("#f-extra", Input)
        extra.focus()
        await pilot.press("h")
        assert extra.value == "h" and app.current_mode == "presets"
        await pilot.press("escape")
        assert app.focused is screen.query_one("#preset-list")
        await pilot.press("h")
        await wait_for(pilot, lambda: app.current_mode == "history", 5, "History")
        assert extra.value == "h"

    run_app(scenario)


def test_each_field_label_says_what_its_setting_does(fbt_home):
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        label = screen.query_one("#f-data-subset-row .field-label")
        assert label.tooltip.startswith("data.subset: train on a stratified") and "0 = all" in label.tooltip
        assert all(label.tooltip for label in screen.query(".field-label"))

    run_app(scenario)


def test_a_dropdown_takes_the_letters_typed_at_it(fbt_home):
    """A letter chooses the next option that starts with it; none reaches the app's one-key
    bindings ("h" had switched to History, a space had marked a run there)."""
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        optimizer = screen.query_one("#f-optim-name", Select)
        optimizer.focus()
        await pilot.press("a")
        assert optimizer.value == "adamw" and screen.overrides() == ['optim.name="adamw"']
        await pilot.press("h", "q", "p", "d", "x")
        assert app.current_mode == "presets" and app.screen is screen and optimizer.value == "adamw"
        await pilot.press("s")
        assert optimizer.value == "sgd" and screen.overrides() == []
        await pilot.press("space")  # opens the list, as before
        assert optimizer.expanded

    run_app(scenario)


def test_keys_typed_fast_apply_in_order(fbt_home):
    """A terminal hands keys typed fast to the app back to back, as posted here (pilot.press waits
    for each key to be handled). ctrl+a ctrl+k, a new value, tab, and the same in the next field:
    both fields used to be left empty, as ctrl+a, ctrl+k and tab ran only once they had bubbled
    up to the app, after the digits typed after them (Textual issue #6605)."""
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        epochs = screen.query_one("#f-train-epochs", Input)
        teacher_epochs = screen.query_one("#f-teacher-recipe-epochs", Input)
        epochs.focus()
        await pilot.pause()
        for key in ["ctrl+a", "ctrl+k", "1", "2", "tab", "ctrl+a", "ctrl+k", "3", "0", "tab"]:
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        batch = screen.query_one("#f-data-batch_size", Input)
        await wait_for(pilot, lambda: app.focused is batch, 5, "the focus two fields on")
        await pilot.pause()
        assert (epochs.value, teacher_epochs.value, batch.value) == ("12", "30", "128")
        assert screen.overrides() == ["train.epochs=12", "teacher.recipe.epochs=30"]

    run_app(scenario)


def test_moves_in_the_list_typed_fast_come_before_the_tab_after_them(fbt_home):
    """tab is a priority binding of the screen (see test_keys_typed_fast_apply_in_order): it ran as
    the app read it, before the list's arrow keys typed ahead of it had bubbled up to the app, so
    the form opened on the preset the list started on, and the arrows went to the form."""
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        options = screen.query_one("#preset-list", OptionList)
        start = screen.ref
        for key in ["down", "down", "tab"]:
            app.post_message(events.Key(key, None))
        await wait_for(pilot, lambda: isinstance(app.focused, Input), 5, "the form")
        await pilot.pause()
        assert screen.ref == screen.refs[int(options.get_option_at_index(options.highlighted).id)] != start
        await pilot.press("escape", "up", "up")  # two moves, as slow keys make them
        assert screen.ref == start

    run_app(scenario)


def test_back_from_another_mode_the_mode_keys_work_at_once(fbt_home):
    """A launch leaves from a field (enter in the form): coming back with p, h must not be typed
    into it. A dialog over the form (the model picker) still returns to its field."""
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        name = screen.query_one("#f-run-name", Input)
        name.focus()
        await pilot.press("x")
        await app.switch_mode("dashboard")
        await pilot.press("p")
        await wait_for(pilot, lambda: app.current_mode == "presets", 5, "Presets")
        await pilot.press("h")
        await wait_for(pilot, lambda: app.current_mode == "history", 5, "History")
        assert name.value.endswith("x")

    run_app(scenario)


def test_model_picker_fills_the_field(fbt_home):
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        field = screen.query_one("#f-teacher-model", Input)
        field.focus()
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ModelPicker) and "teacher" in str(app.screen.query_one(".dialog-title").render())
        await pilot.press(*"deit micro", "enter")
        assert field.value == "deit_micro"
        assert 'teacher.model="deit_micro"' in screen.overrides()
        await pilot.pause()
        assert app.focused is field  # back where the picker was opened

    run_app(scenario)


def test_save_as_user_preset_never_overwrites_a_builtin(fbt_home):
    user_dir = fbt_home / "config" / "presets"

    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        screen.query_one("#f-train-epochs", Input).value = "7"
        await pilot.pause()
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, PromptDialog)
        prompt = app.screen.query_one(Input)
        assert prompt.value == "mlp_to_cnn_custom"
        dialog = app.screen
        problem = dialog.query_one("#prompt-problem")
        for name, why in (("mlp_to_cnn", "a built-in preset is called 'mlp_to_cnn'"),  # refused in place
                          ("  ", "a preset needs a name"), ("../up", "'../up' is not a preset name")):
            prompt.value = name
            await pilot.press("enter")
            assert app.screen is dialog and str(problem.render()) == f"✗ {why}" + (
                "; built-ins are never overwritten or shadowed" if name == "mlp_to_cnn" else
                ": use letters, digits, _ . -" if name == "../up" else "")
        assert not user_dir.exists() or not any(user_dir.iterdir())

        screen.query_one("#f-run-name", Input).value = "one_launch"  # a name typed for one run
        prompt.value = "longer"
        await pilot.press("enter")
        saved = user_dir / "longer.toml"
        await wait_for(pilot, saved.exists, 5, "the saved preset")
        table = tomllib.loads(saved.read_text())
        assert table["train"]["epochs"] == 7 and table["student"]["model"] == "resnet10_cifar"
        assert table["run"]["name"] == "longer"  # its runs go by its name, as a built-in's do
        await wait_for(pilot, lambda: screen.ref is not None and screen.ref.name == "longer", 5, "the new preset")
        assert not screen.ref.builtin and screen.overrides() == []  # its own values now

    run_app(scenario)


def test_a_saved_copy_keeps_a_run_name_its_preset_chose(fbt_home):
    """Only a preset's own name (the built-ins' way) follows it to the copy; one it chose stays."""
    user_dir = fbt_home / "config" / "presets"
    user_dir.mkdir(parents=True)
    (user_dir / "chosen.toml").write_text(MLP.read_text().replace('name = "mlp_to_cnn"', 'name = "sweep"'))

    async def scenario(app, pilot):
        await shown(app, pilot, "chosen")
        await pilot.press("ctrl+s")
        app.screen.query_one(Input).value = "copied"
        await pilot.press("enter")
        await wait_for(pilot, (user_dir / "copied.toml").exists, 5, "the saved preset")
        assert tomllib.loads((user_dir / "copied.toml").read_text())["run"]["name"] == "sweep"

    run_app(scenario)


def test_a_saved_copy_keeps_finding_the_files_its_preset_named_relatively(fbt_home):
    """A preset's relative path starts at its own folder: the copy, saved elsewhere, holds it absolute."""
    user_dir = fbt_home / "config" / "presets"
    (user_dir / "exp").mkdir(parents=True)
    (user_dir / "fmnist").mkdir()
    (user_dir / "exp" / "near.toml").write_text(MLP.read_text().replace(
        'name = "fashion_mnist_5k"', 'name = "fashion_mnist"\nroot = "../fmnist"'))

    async def scenario(app, pilot):
        screen = app.screen
        screen.reload_list(select="exp/near")
        await wait_for(pilot, lambda: screen.ref is not None and screen.ref.name == "exp/near", 10, "the preset")
        assert not screen.problems
        await pilot.press("ctrl+s")
        app.screen.query_one(Input).value = "copied"
        await pilot.press("enter")
        saved = user_dir / "copied.toml"
        await wait_for(pilot, saved.exists, 5, "the saved preset")
        assert tomllib.loads(saved.read_text())["data"]["root"] == str(user_dir / "fmnist")
        await wait_for(pilot, lambda: screen.ref is not None and screen.ref.name == "copied", 5, "the copy")
        assert not screen.problems

    run_app(scenario)


def test_what_this_machine_lacks_is_a_warning_not_an_error(fbt_home):
    """As `fbt presets validate`: a missing dataset folder does not make the preset invalid, but
    the app will not start a run the engine would refuse at once."""
    user_preset(fbt_home, "elsewhere", f'name = "fashion_mnist"\nroot = "{fbt_home / "no-such-folder"}"')

    async def scenario(app, pilot):
        screen = await shown(app, pilot, "elsewhere")
        assert screen.problems and not screen.errors
        preview = str(screen.query_one("#preview").render())
        assert "✓ valid" in preview and "missing on this machine" in preview
        # the status on the name's line; the folder under it (a whole path wrapped at 100 columns)
        assert f"user, in {fbt_home / 'config' / 'presets'}\n" in preview and preview.startswith("elsewhere  ✓ valid")
        assert "no-such-folder" in str(screen.query_one("#other-problems").render())
        await pilot.press("enter")
        assert not app.manager.handles and app.current_mode == "presets"
        await pilot.press("ctrl+s")
        app.screen.query_one(Input).value = "elsewhere_copy"
        await pilot.press("enter")
        await wait_for(pilot, (fbt_home / "config" / "presets" / "elsewhere_copy.toml").exists, 5, "the saved copy")

    run_app(scenario)


def test_a_value_seldom_meant_is_a_warning_by_its_field(fbt_home):
    """lr 0 runs (the engine warns as it starts): the form says so by the field, as a warning, not an error."""
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        screen.query_one("#f-optim-lr", Input).value = "0"
        await pilot.pause()
        row = screen.query_one("#f-optim-lr-row")
        assert not row.has_class("-invalid") and not screen.errors
        assert str(row.query_one(".field-error").render()) == (
            "! is 0: no weight will learn (BatchNorm's running statistics still move)")
        preview = str(screen.query_one("#preview").render())
        assert "✓ valid" in preview and "1 warning" in preview
        screen.query_one("#f-optim-lr", Input).value = "0.05"
        await pilot.pause()
        assert not row.query_one(".field-error").display and "warning" not in str(screen.query_one("#preview").render())

    run_app(scenario)


def test_the_parameter_counts_follow_the_method(fbt_home):
    """A past FBT run's counts hold its fusion model: another method's preview must not show them."""
    from test_tui_support import fake_run

    run_id = fake_run(fbt_home, "fbt run")

    def params_line(screen) -> str:
        return next(line for line in str(screen.query_one("#preview").render()).splitlines() if "params" in line)

    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        await wait_for(pilot, lambda: f"as logged by run {run_id}" in params_line(screen), 10, "the past run's counts")
        assert "fusion" in params_line(screen)
        screen.query_one("#f-method-name", Select).value = "kd"
        await pilot.pause()
        await wait_for(pilot, lambda: "estimat" in params_line(screen), 10, "an estimate of kd's own")
        assert "fusion" not in params_line(screen) and run_id not in params_line(screen)

    run_app(scenario)


def test_more_set_cannot_quietly_override_a_field(fbt_home):
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        screen.query_one("#f-train-epochs", Input).value = "3"
        screen.query_one("#f-extra", Input).value = "train.epochs=2"
        await pilot.pause()
        assert "train.epochs: the field “epochs” above sets this key: change it there" in field_error(screen, "extra")
        assert field_error(screen, "train.epochs") == ""
        screen.query_one("#f-extra", Input).value = "train={epochs=2}"  # the same key, as a TOML table
        await pilot.pause()
        assert "train.epochs: the field “epochs” above sets this key" in field_error(screen, "extra")
        await pilot.press("enter")  # refused, nothing launched
        assert not app.manager.handles
        # an item without "=" is the free-form field's own mistake, even where it names a field's key
        screen.query_one("#f-extra", Input).value = "train.epochs"
        await pilot.pause()
        assert "train.epochs: expected key=value" in field_error(screen, "extra")
        assert "sets this key" not in field_error(screen, "extra") and field_error(screen, "train.epochs") == ""
        # a bad value there is its own, not the field's that shows a good one
        screen.query_one("#f-extra", Input).value = "optim.lr=abc"
        await pilot.pause()
        assert 'optim.lr: expected a number, got "abc"' in field_error(screen, "extra")
        assert field_error(screen, "optim.lr") == ""

    run_app(scenario)


def test_a_preset_that_downloads_its_data_says_so_before_it_starts(fbt_home, tmp_path):
    """Valid, and runnable where the internet is: the preview says a run will download first."""
    user_preset(fbt_home, "fetches", f'name = "cifar10"\nroot = "{tmp_path / "cifar"}"\ndownload = true')

    async def scenario(app, pilot):
        screen = await shown(app, pilot, "fetches")
        preview = str(screen.query_one("#preview").render())
        assert "✓ valid" in preview and f"downloaded into {tmp_path / 'cifar'}" in preview
        (tmp_path / "cifar" / "cifar-10-batches-py").mkdir(parents=True)  # the files are there now
        screen.validate_form()
        assert "downloaded into" not in str(screen.query_one("#preview").render())

    run_app(scenario)


def test_fields_the_config_does_not_read_are_dimmed_with_why(fbt_home):
    """A teacher's epochs mean nothing when the teacher is loaded, and a teacher nothing to scratch."""
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)

        def unused(key: str) -> str | None:
            row = screen.query_one(f"#f-{key.replace('.', '-')}-row")
            return str(screen.query_one(f"#f-{key.replace('.', '-')}").tooltip) if row.has_class("-unused") else None

        assert unused("teacher.recipe.epochs") is None and unused("teacher.model") is None  # trained here
        screen.query_one("#f-extra", Input).value = "teacher.kwargs.pretrained=true"
        await pilot.pause()
        assert unused("teacher.recipe.epochs") == "not used: its teacher is loaded, not trained"
        assert unused("teacher.model") is None
        screen.query_one("#f-extra", Input).value = ""
        screen.query_one("#f-method-name", Select).value = "scratch"
        await pilot.pause()
        assert unused("teacher.recipe.epochs") == unused("teacher.model") == "not used: scratch uses no teacher"
        screen.query_one("#f-method-name", Select).value = "fbt"
        await pilot.pause()
        assert unused("teacher.recipe.epochs") is None and unused("teacher.model") is None

    run_app(scenario)


def test_moving_through_the_list_keeps_each_presets_edits(fbt_home):
    """Highlighting a preset loads it: the edits of the one left are kept for when it is back,
    until ctrl+r puts the preset as written back."""
    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        epochs = screen.query_one("#f-train-epochs", Input)
        written = epochs.value
        epochs.value = "9"
        screen.query_one("#f-extra", Input).value = "train.ema=0.99"
        await pilot.pause()
        options = screen.query_one("#preset-list")
        start = options.highlighted
        assert str(options.get_option_at_index(start).prompt).endswith("•[/]")  # edited: marked at once
        options.focus()
        await pilot.press("down")
        await wait_for(pilot, lambda: screen.ref.name != "mlp_to_cnn", 5, "the next preset")
        assert screen.overrides() == []  # the next preset as written
        await pilot.press("up")
        await wait_for(pilot, lambda: screen.ref.name == "mlp_to_cnn", 5, "the edited preset again")
        assert options.highlighted == start
        assert screen.overrides() == ["train.epochs=9", "train.ema=0.99"]
        assert str(options.get_option_at_index(start).prompt).endswith("•[/]")  # the list says it holds edits
        await pilot.press("ctrl+r")
        assert screen.overrides() == [] and epochs.value == written
        assert "•" not in str(options.get_option_at_index(start).prompt)
        await pilot.press("down", "up")
        await wait_for(pilot, lambda: screen.ref.name == "mlp_to_cnn", 5, "the reset preset again")
        assert screen.overrides() == []

    run_app(scenario)


def test_quitting_ends_a_parameter_count_under_way_first(fbt_home):
    """The count's worker thread waits on its child (torch imports for seconds), and the app's
    shutdown waits on its workers: the child is ended as the app exits, not after."""
    seen = []

    async def scenario(app, pilot):
        await wait_for(pilot, lambda: app.helpers, 10, "the parameter count's process")
        seen.extend(app.helpers)
        await pilot.press("q")  # no run active: no question
        assert all(proc.poll() is not None for proc in seen)  # ended by exit, before the shutdown

    run_app(scenario)
    assert seen and all(proc.returncode == -signal.SIGKILL for proc in seen)


@pytest.mark.parametrize("text,items", [
    ("data.root='/my data' train.ema=0.99", ["data.root='/my data'", "train.ema=0.99"]),
    ('optim.betas=[0.9, 0.99]  run.tags=["a b", "c"]', ["optim.betas=[0.9, 0.99]", 'run.tags=["a b", "c"]']),
    ('train={epochs=2, x=[1, 2]} run.name="say \\"hi there\\""',
     ["train={epochs=2, x=[1, 2]}", 'run.name="say \\"hi there\\""']),
    ("", []),
])
def test_more_set_splits_at_spaces_outside_quotes_and_brackets(text, items):
    assert split_items(text) == (items, None)


def test_more_set_takes_a_path_with_spaces_and_says_what_is_unclosed(fbt_home, tmp_path):
    (tmp_path / "my data").mkdir()

    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        extra = screen.query_one("#f-extra", Input)
        extra.value = f"data.root='{tmp_path / 'my data'}' optim.betas=[0.9, 0.99]"
        await pilot.pause()
        assert field_error(screen, "extra") == ""
        assert screen.overrides()[-2:] == [f"data.root='{tmp_path / 'my data'}'", "optim.betas=[0.9, 0.99]"]
        extra.value = "train.ema=0.99 train.ema=0.999"  # runs, with the last; but seldom meant
        await pilot.pause()
        row = screen.query_one("#f-extra-row")
        assert not row.has_class("-invalid") and "train.ema is set more than once here: the last counts" in str(
            row.query_one(".field-error").render())
        extra.value = f"data.root='{tmp_path / 'my data'}' optim.betas=[0.9, 0.99"
        await pilot.pause()
        # the one mistake, said once: the items before it stay whole, the unclosed one is left out
        assert field_error(screen, "extra") == "✗ unclosed [ in optim.betas=[0.9, 0.99: close it"
        await pilot.press("enter")  # refused
        assert not app.manager.handles

    run_app(scenario)


def test_a_preset_saved_over_an_edited_one_shows_as_written(fbt_home):
    """The replaced preset's edits were for what it was: they do not come back over the saved one."""
    user_dir = fbt_home / "config" / "presets"
    user_dir.mkdir(parents=True)
    (user_dir / "mine.toml").write_text(MLP.read_text())

    async def scenario(app, pilot):
        screen = await shown(app, pilot, "mine")
        screen.query_one("#f-train-epochs", Input).value = "9"  # a draft of "mine"
        await pilot.pause()
        screen = await shown(app, pilot, "mlp_to_cnn")
        screen.query_one("#f-optim-lr", Input).value = "0.01"
        await pilot.pause()
        await pilot.press("ctrl+s")
        app.screen.query_one(Input).value = "mine"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the replace question")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.ref is not None and screen.ref.name == "mine", 5, "the saved preset")
        assert tomllib.loads((user_dir / "mine.toml").read_text())["optim"]["lr"] == 0.01
        assert screen.overrides() == []  # as written: lr 0.01, and not the old draft's 9 epochs

    run_app(scenario)


def test_your_presets_go_by_their_name_as_given(fbt_home):
    """A built-in's "_to_" reads as the arrow of its pair; yours need not name theirs
    ("cnn_to_mlp_custom", saved with a ViT student, read "cnn → mlp_custom")."""
    user_preset(fbt_home, "cnn_to_mlp_custom", 'name = "fashion_mnist_5k"')

    async def scenario(app, pilot):
        screen = await loaded(app, pilot)
        options = screen.query_one("#preset-list", OptionList)
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("✎ cnn_to_mlp_custom" in p for p in prompts) and not any("mlp_custom" in p and "→" in p
                                                                          for p in prompts)
        assert "mlp → cnn" in prompts

    run_app(scenario)
