"""Every screen renders at 80×24 and at 200×60 (tracebacks would fail the run), and what matters
on each is on screen, not clipped away."""

import time

import pytest
from rich.table import Table
from textual.widgets import Static

from fbt_tui.screens.compare import CompareScreen
from fbt_tui.screens.dialogs import ErrorDialog
from fbt_tui.screens.export import ExportDialog
from fbt_tui.screens.help import HelpScreen
from fbt_tui.screens.model_picker import ModelPicker
from fbt_tui.widgets.curves import CurvePlot
from fbt_tui.widgets.run_table import RunTable
from fbt_tui.widgets.run_view import AlignmentTable, RunView

from test_tui_support import fake_run, open_from_history, run_app, wait_for


def visible(widget) -> bool:
    return widget.region.width > 0 and widget.region.height > 0


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])
def test_every_screen_renders(fbt_home, size):
    t0 = time.time() - 100
    first = fake_run(fbt_home, "first", top1=(50.0, 60.0, 65.0), started=t0)
    fake_run(fbt_home, "second, with a name far longer than a column should ever grow", top1=(55.0, 62.0, 61.0),
             started=t0 + 10, **{"optim.lr": 0.1})
    small = size == (80, 24)

    async def scenario(app, pilot):
        screen = app.screen
        await wait_for(pilot, lambda: screen.ref is not None, 10, "the presets")
        assert visible(screen.query_one("#preview")) and visible(screen.query_one("#preset-list"))
        heading = screen.query_one("#preset-main .section-title")
        assert str(heading.render_line(0).text).rstrip().endswith("…" if small else "enter launches)")
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ModelPicker)
        await pilot.press(*"resnet cifar")
        assert app.screen.query_one("OptionList").option_count >= 2
        await pilot.press("escape")

        await pilot.press("d")
        assert visible(app.screen.query_one("#dash-empty"))
        await pilot.press("h")
        await wait_for(pilot, lambda: app.screen.query_one(RunTable).row_count == 2, 10, "History")
        table = app.screen.query_one(RunTable)
        assert visible(table)
        assert table.virtual_size.width <= table.region.width  # the columns fit: no sideways scrolling
        await pilot.press("e")
        assert isinstance(app.screen, ExportDialog) and visible(app.screen.query_one("#export-path"))
        await pilot.press("escape")
        await pilot.press("space", "space", "c")
        assert isinstance(app.screen, CompareScreen)
        await wait_for(pilot, lambda: app.screen.data is not None, 10, "the comparison")
        await pilot.pause(0.3)
        assert visible(app.screen.query_one("#compare-diff")) and visible(app.screen.query_one("#compare-acc"))
        summary = app.screen.query_one("#compare-summary")
        assert summary.virtual_size.width <= summary.region.width  # every column whole ("best fusion" read "b")
        assert "best @ep" in [str(c.label) for c in summary.columns.values()]
        await pilot.press("escape")

        await pilot.press("enter")  # the cursor stayed on the older run: open it in the dashboard
        await wait_for(pilot, lambda: app.screen.query(RunView), 10, "the run's tab")
        view = app.screen.query_one(RunView)
        assert view.handle.run_id == first
        await wait_for(pilot, lambda: view.model.status == "finished", 10, "its events")
        await pilot.pause(0.5)
        plots = [p for p in view.query(CurvePlot) if visible(p)]
        assert len(plots) == (1 if small else 6)
        assert all(p.region.height >= (8 if small else 12) for p in plots)
        assert visible(view.query_one("#run-status"))
        footer = str(app.screen.query_one("#keys").render())
        assert ("Next plot" in footer) == small  # the keys are offered where plots take turns, only
        assert footer.endswith("? Keys  q Quit  ^p palette")  # the app's keys stay, however narrow
        assert "s" not in app.screen.active_bindings and "Stop run" not in footer  # the run is over: no Stop
        first_line = str(view.query_one("#run-status").render()).splitlines()[0]
        assert first_line.index("best") < size[0] - 4  # the best accuracy is seen, however narrow
        if small:  # one panel at a time: cycle to the alignment table and the log
            for _ in range(6):
                await pilot.press("right_square_bracket")
            assert visible(view.query_one("#alignment")) and not any(visible(p) for p in view.query(CurvePlot))
            await pilot.press("right_square_bracket")
            assert visible(view.query_one("#run-log"))
        else:
            assert visible(view.query_one("#alignment")) and visible(view.query_one("#run-log"))

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        tables = [w.content for w in app.screen.query(Static) if isinstance(w.content, Table)]
        keys = "\n".join(str(cell) for table in tables for column in table.columns for cell in column.cells)
        assert "ctrl+=" in keys and "equals_sign" not in keys  # keys as typed, not as Textual names them
        assert "Back to the preset list" in keys
        await pilot.press("escape")
        app.show_error("something failed", "a long message " * 40)
        await pilot.pause()
        assert isinstance(app.screen, ErrorDialog) and visible(app.screen.query_one("#ok"))
        await pilot.press("enter")
        await pilot.press("p")
        assert app.current_mode == "presets"

    run_app(scenario, size=size)


def test_historys_keys_fit_a_160_column_line(fbt_home):
    """History has the most keys; the modes' keys are the header's, so the screen's own all fit."""
    from fbt_tui.widgets.keybar import KeyBar

    async def scenario(app, pilot):
        await wait_for(pilot, lambda: app.screen.query("#history-table"), 10, "History")
        await pilot.pause(0.2)
        keys = app.screen.query_one(KeyBar).render().plain
        assert "Trash view" in keys and keys.endswith("^p palette") and len(keys) <= 160, keys
        assert "Presets" not in keys and "Presets" in str(app.screen.query_one("#modes").render())

    run_app(scenario, start_mode="history", size=(160, 48))


@pytest.mark.parametrize("width", [80, 100, 160])
def test_a_paper_pair_in_the_preset_list_wraps_at_its_arrow(fbt_home, width):
    """Not mid-name ("cifar100_convnext_" / "t → deit_t", at 100 columns)."""
    async def scenario(app, pilot):
        screen = app.screen
        await wait_for(pilot, lambda: screen.ref is not None, 10, "the presets")
        options = screen.query_one("#preset-list")
        lines = [strip.text.strip(" ▊▎") for strip in options.render_lines(options.region.reset_offset)]
        teachers = {ref.name.rpartition("/")[2].partition("_to_")[0] for ref in screen.refs if "/" in ref.name}
        shown = [t for t in teachers if any(line.startswith(t) for line in lines)]
        assert shown, lines  # the list's screenful holds paper pairs
        assert not [line for line in lines if line.endswith("_")], lines  # no name parted at an underscore

    run_app(scenario, size=(width, 30))


def test_help_lists_each_key_once():
    """[ and ] were listed as "Prev/Next plot" and again as "[ ]" with when they apply; "/" as
    "Filter" and again as "/ then text"."""
    from fbt_tui.screens.help import sections

    for title, rows in sections():
        keys = [word for key, _ in rows for word in key.split() if len(word) == 1 and not word.isalnum()]
        assert len(keys) == len(set(keys)), (title, rows)
    dashboard = dict(sections())["Dashboard"]
    assert "[ ]" in [key for key, _ in dashboard] and "w" in [key for key, _ in dashboard]


def test_four_plots_are_two_by_two(fbt_home):
    """kd's four plots (loss, top-1, T–S, CE) were three in a row and one alone beside two thirds
    of a row left empty."""
    fake_run(fbt_home, "kd", fusion=False, terms=("ce", "ts/logit"), **{"method.name": "kd"})

    async def scenario(app, pilot):
        await pilot.press("h")
        await wait_for(pilot, lambda: app.screen.query_one(RunTable).row_count == 1, 10, "History")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query(RunView), 10, "the run's tab")
        view = app.screen.query_one(RunView)
        await wait_for(pilot, lambda: view.model.status == "finished", 10, "its events")
        await pilot.pause(0.3)
        plots = [p for p in view.query(CurvePlot) if visible(p)]
        assert len(plots) == 4
        assert len({p.region.x for p in plots}) == 2 and len({p.region.y for p in plots}) == 2

    run_app(scenario)


def test_the_alignment_tables_history_takes_the_room_the_other_columns_leave(fbt_home):
    """At 120 columns a twelve-epoch history pushed the norm column out of the half-width table."""
    fake_run(fbt_home, "long", top1=tuple(40.0 + epoch for epoch in range(14)))

    async def scenario(app, pilot):
        view = await open_from_history(app, pilot)
        table = view.query_one(AlignmentTable)
        for width, spark in ((120, None), (200, 12), (120, None)):  # and back: a column kept its widest width
            await pilot.resize_terminal(width, 40)
            await wait_for(pilot, lambda: view.model.status == "finished" and table.row_count == 7, 10, "the table")
            await pilot.pause(0.3)
            assert table.virtual_size.width <= table.scrollable_content_region.width, width
            history = {len(str(table.get_row_at(i)[2])) for i in range(table.row_count)}
            assert history == {spark} if spark else max(history) < 12, (width, history)

    run_app(scenario, size=(120, 40), start_mode="history")
