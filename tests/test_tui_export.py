"""The export dialog (History → e) and the palette's preset launch: what one key does, and what
the dialog says before it writes (a file to replace, a folder that is not there, weights a run
does not have)."""

from pathlib import Path

from textual.widgets import Input, RadioButton

from fbt_tui.screens.dialogs import ConfirmDialog
from fbt_tui.screens.export import ExportDialog

from test_tui_support import MLP_TO_CNN, fake_run, run_app, shown_error, wait_for


async def open_export(app, pilot, rows: int = 1) -> ExportDialog:
    await wait_for(pilot, lambda: app.screen.query("#history-table")
                   and app.screen.query_one("#history-table").row_count == rows, 20, "History's rows")
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog), 5, "the export dialog")
    return app.screen


def said(dialog: ExportDialog) -> str:
    shown = dialog.query_one("#export-error")
    return str(shown.render()) if shown.display else ""


def buttons(dialog: ExportDialog) -> dict[str, RadioButton]:
    return {button.name: button for button in dialog.query(RadioButton)}


def test_one_enter_on_a_format_exports_to_the_path_shown(fbt_home, tmp_path, monkeypatch):
    """The button says "Export (enter)": enter on a format exports; tab reaches the path first."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    run_id = fake_run(fbt_home, "tui1", top1=(50.0, 60.0))

    async def scenario(app, pilot):
        await open_export(app, pilot)
        await pilot.press("enter")  # CSV, highlighted as the dialog opens
        await wait_for(pilot, (out / f"{run_id}.csv").exists, 5, "the CSV after one enter")
        assert not isinstance(app.screen, ExportDialog)

        await pilot.press("e")
        await pilot.press(*["down"] * 4, "enter")  # → student weights, last epoch: named after the run
        await wait_for(pilot, (out / "tui1.toml").exists, 5, "the weights' sidecar after one enter")
        assert (out / "tui1.safetensors").is_file()

        dialog = await open_export(app, pilot)
        await pilot.press("down")  # ↓ picks a format: the path follows it, nothing is written yet
        box = dialog.query_one("#export-path", Input)
        await pilot.pause(0.2)
        assert app.screen is dialog and box.value == str(out / f"{run_id}.json")
        await pilot.press("tab")  # the path, to edit first: the cursor at its end, its text kept
        assert app.focused is box and box.cursor_position == len(box.value)
        await pilot.press(*"x", "enter")
        await wait_for(pilot, (out / f"{run_id}.jsonx").exists, 5, "the edited path's export")

        dialog = await open_export(app, pilot)
        await pilot.press(*["down"] * 5)  # student weights, best epoch: the name gets _best
        await pilot.press("enter")
        await wait_for(pilot, (out / "tui1_best.toml").exists, 5, "the best weights' sidecar")

        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        dialog = await open_export(app, pilot)
        dialog.query_one("#export-path", Input).value = str(elsewhere / "mine.csv")
        await pilot.press("tab", "enter")
        await wait_for(pilot, (elsewhere / "mine.csv").exists, 5, "the export to another folder")
        dialog = await open_export(app, pilot)  # the next one starts where the last one went
        assert dialog.query_one("#export-path", Input).value == str(elsewhere / f"{run_id}.csv")

    run_app(scenario, start_mode="history")


def test_an_existing_file_is_replaced_only_on_a_second_enter(fbt_home, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    run_id = fake_run(fbt_home, "again", top1=(50.0,))
    (out / f"{run_id}.csv").write_text("mine\n")
    (out / "again.toml").write_text("mine\n")  # only the weights' sidecar is there: that is said too

    async def scenario(app, pilot):
        dialog = await open_export(app, pilot)
        box = dialog.query_one("#export-path", Input)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.screen is dialog and (out / f"{run_id}.csv").read_text() == "mine\n"
        assert f"{run_id}.csv exists: enter again to replace it" in said(dialog)
        assert box.value == str(out / f"{run_id}.csv")
        await pilot.press("enter")
        await wait_for(pilot, lambda: (out / f"{run_id}.csv").read_text() != "mine\n", 5, "the CSV replaced")

        dialog = await open_export(app, pilot)
        await pilot.press(*["down"] * 4, "enter")
        await pilot.pause(0.3)
        assert app.screen is dialog and "again.toml exists: enter again" in said(dialog)
        assert not (out / "again.safetensors").exists()
        await pilot.press("tab", "backspace", "backspace", "x")  # another path: asked again about it
        assert said(dialog) == ""
        await pilot.press("backspace", *"rs", "enter")
        await pilot.pause(0.3)
        assert app.screen is dialog and "again.toml exists" in said(dialog)
        await pilot.press("enter")
        await wait_for(pilot, (out / "again.safetensors").exists, 5, "the weights")
        assert (out / "again.toml").read_text() != "mine\n"

    run_app(scenario, start_mode="history")


def test_a_path_in_a_missing_folder_is_refused_and_none_is_made(fbt_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where an export would land were the dialog to take an enter too early
    fake_run(fbt_home, "nowhere", top1=(50.0,))
    missing = tmp_path / "no" / "such"

    async def scenario(app, pilot):
        for downs in (0, 4):  # metrics, then weights (whose export made folders on its own)
            dialog = await open_export(app, pilot)
            await pilot.press(*["down"] * downs, "tab")
            box = dialog.query_one("#export-path", Input)
            box.value = str(missing / "x.safetensors")
            await pilot.press("enter")
            await pilot.pause(0.3)
            assert app.screen is dialog and f"there is no folder {missing}" in said(dialog)
            assert box.value == str(missing / "x.safetensors") and app.focused is box
            await pilot.press("escape")
        assert not (tmp_path / "no").exists()

    run_app(scenario, start_mode="history")


def test_weights_a_run_lacks_are_not_offered(fbt_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_run(fbt_home, "stopped", top1=(50.0,), status="interrupted", started=1.7e9)
    old = fake_run(fbt_home, "old", top1=(50.0,), started=1.7e9 + 60)
    (fbt_home / "runs" / old / "student_best.safetensors").unlink()  # as an earlier fbt left it
    broken = fake_run(fbt_home, "broken", top1=(50.0,), started=1.7e9 + 120)
    (fbt_home / "runs" / broken / "student.safetensors").write_bytes(b"not weights")

    async def scenario(app, pilot):
        dialog = await open_export(app, pilot, rows=3)  # the newest first: broken
        await pilot.press("escape")
        await pilot.press("down", "down", "e")  # stopped
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        offered = buttons(dialog)
        for key in ("student", "student_best"):
            assert offered[key].disabled and "none: the run was interrupted" in str(offered[key].label)
        await pilot.press(*["down"] * 5)  # ↓ skips what is disabled: the cursor wraps to CSV
        assert not any(button.disabled for button in dialog.query(RadioButton) if button.has_class("-selected"))
        await pilot.press("escape", "up", "e")  # old: its final weights, not its best
        offered = buttons(app.screen)
        assert not offered["student"].disabled
        assert offered["student_best"].disabled and "this run kept none" in str(offered["student_best"].label)
        await pilot.press("escape", "up", "e")  # broken: what still fails says so in words
        await pilot.press(*["down"] * 4, "enter")
        error = await wait_for(pilot, lambda: shown_error(app), 10, "the error dialog")
        assert error.title_text == "Export failed" and "ExportError" not in error.message
        assert "cannot be read as safetensors weights" in error.message

    run_app(scenario, start_mode="history")


def test_a_palette_launch_asks_first(fbt_home, monkeypatch, tmp_path):
    from fbt_tui.app import FbtApp

    monkeypatch.setenv("HOME", str(tmp_path))  # the preset's ~/data/cifar100: not there, so downloaded
    launched: list[Path] = []

    async def launch(self, preset: Path, sets: list[str]):
        launched.append(preset)

    monkeypatch.setattr(FbtApp, "launch", launch)

    async def scenario(app, pilot):
        for answer in ("enter", "y"):  # enter: the focused Cancel; y launches
            await pilot.press("ctrl+p")
            await pilot.press(*"Launch preset paper/cifar100_vit_s_to_resnet18")
            await pilot.pause(0.5)
            await pilot.press("enter")
            dialog = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, ConfirmDialog) else None,
                                    5, "the question")
            assert not launched
            question = str(dialog.query_one(".dialog-body").render())
            for part in ("paper/cifar100_vit_s_to_resnet18", "teacher vit_small_patch16_224 → student resnet18",
                         "method fbt", "300 epochs", "downloaded into", "needs the internet"):
                assert part in question, part
            await pilot.press(answer)
            await pilot.pause(0.2)
        assert [p.name for p in launched] == ["cifar100_vit_s_to_resnet18.toml"]

    run_app(scenario)


def test_the_launch_question_does_not_show_defaults_for_wrong_values(tmp_path):
    """A wrong value's config holds the schema's default (fbt, 5 epochs): the question says "?"."""
    from fbt_tui.app import launch_question

    preset = tmp_path / "wrong.toml"
    text = MLP_TO_CNN.read_text().replace('name = "fbt"', 'name = "fbtt"').replace("epochs = 4", "epochs = 0")
    preset.write_text(text)
    question = launch_question(preset, "wrong")
    assert "method ? · ? epochs" in question and "method.name" in question
