"""History through the keyboard: sort, filter, open, compare, export, tag, note, trash, restore."""

import asyncio
import json
import socket
import subprocess
import sys
import re
import time
import tomllib
from pathlib import Path

from rich.text import Text
from textual import events
from textual.content import Content
from textual.widgets import DataTable, Input, Label, RadioButton

from fbt_engine.store.runs import RunStore
from fbt_tui.format import when
from fbt_tui.screens.compare import CompareScreen
from fbt_tui.screens.dialogs import ConfirmDialog, PromptDialog
from fbt_tui.screens.export import ExportDialog
from fbt_tui.widgets.curves import CurvePlot
from fbt_tui.widgets.run_table import RunTable
from fbt_tui.widgets.run_view import RunView

from conftest import run_fbt
from test_tui_support import fake_run, open_from_history, run_app, wait_for


def table_ids(app) -> list[str]:
    return list(app.screen.query_one("#history-table", RunTable).row_keys)


async def history_loaded(app, pilot, count: int) -> None:
    await wait_for(pilot, lambda: len(table_ids(app)) == count, 20, f"{count} rows in History")


def three_runs(home) -> dict[str, str]:
    t0 = time.time() - 3600
    return {
        "alpha": fake_run(home, "alpha", top1=(50.0, 60.0), started=t0),
        "beta": fake_run(home, "beta", top1=(70.0, 80.0), started=t0 + 60, status="failed"),
        "gamma": fake_run(home, "gamma", top1=(65.0, 70.0), started=t0 + 120, tags=("best",)),
    }


def test_sort_filter_and_open(fbt_home):
    runs = three_runs(fbt_home)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 3)
        assert table_ids(app) == [runs["gamma"], runs["beta"], runs["alpha"]]  # newest first
        for _ in range(6):  # started → id → name → pair → method → status → best top-1
            await pilot.press("s")
        assert app.screen.sort_key == "best"
        assert table_ids(app) == [runs["beta"], runs["gamma"], runs["alpha"]]  # the best first
        await pilot.press("S")
        assert table_ids(app) == [runs["alpha"], runs["gamma"], runs["beta"]]

        await pilot.press("slash")
        await pilot.press(*"tag:best")
        assert table_ids(app) == [runs["gamma"]]
        await pilot.press("escape")
        await pilot.press("slash", *"tags:best")  # a near miss of a field: said, not a silent empty table
        assert table_ids(app) == [] and "tags: is no field, searched as text (status:, tag:, method: are)" in str(
            app.screen.query_one("#history-title").render())
        assert "No run matches “tags:best”: Esc clears the filter." in str(
            app.screen.query_one("#history-detail").render())  # not an empty table alone
        await pilot.press("escape")
        await pilot.press("slash", *"status:done")  # no such status: said, as a field that is none
        assert table_ids(app) == [] and "“done” is no status (running, finished, failed, interrupted, crashed)" in str(
            app.screen.query_one("#history-title").render())
        await pilot.press("escape")
        shown_start = when(app.screen.rows[0].started).split()[-1]  # "13:05", as the started column shows it
        await pilot.press("slash", *shown_start)
        assert len(table_ids(app)) >= 1 and "is no field" not in str(app.screen.query_one("#history-title").render())
        await pilot.press("escape")
        assert len(table_ids(app)) == 3
        await pilot.press("slash")
        await pilot.press(*"status:failed")
        await pilot.press("enter")  # keeps the filter, back to the table
        assert table_ids(app) == [runs["beta"]]
        assert isinstance(app.focused, RunTable)

        await pilot.press("enter")  # open it: the dashboard view, rebuilt from its events file
        await wait_for(pilot, lambda: app.current_mode == "dashboard", 10, "the dashboard")
        view = app.screen.query_one(RunView)
        assert view.handle.run_id == runs["beta"]
        await wait_for(pilot, lambda: view.model.status == "failed", 10, "the events to be read")
        await wait_for(pilot, lambda: app.screen.query_one("#plot-top1", CurvePlot).total == 6, 10, "drawn curves")
        assert "best 80.00% @2" in str(app.screen.query_one("#run-status").render())

    run_app(scenario, start_mode="history")


def type_at_once(app, text: str) -> None:
    """Keys as a terminal hands over typed-ahead text: all queued before the app handles the first."""
    names = {"/": "slash", ":": "colon", "\r": "enter"}
    for ch in text:
        app.post_message(events.Key(names.get(ch, ch), ch))


def keys_at_once(app, *keys: str) -> None:
    """Keys by name ("backspace", "a"), queued as type_at_once queues text."""
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else None))


def test_keys_typed_ahead_after_slash_go_into_the_filter(fbt_home):
    """Those after "/" reach the filter, not the table's bindings (they had opened the export dialog
    on "e" of "method"); a kept filter is replaced, as typing slowly does."""
    runs = three_runs(fbt_home)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 3)
        box = app.screen.query_one("#history-filter", Input)
        for typed, kept, rows in (("/alpha\r", "alpha", [runs["alpha"]]),
                                  ("/status:failed\r", "status:failed", [runs["beta"]])):
            type_at_once(app, typed)
            await pilot.pause(0.5)
            assert app.screen is app.get_screen("history")  # no dialog opened
            assert box.value == kept and table_ids(app) == rows and isinstance(app.focused, RunTable)

    run_app(scenario, start_mode="history")


def test_editing_keys_typed_fast_apply_in_order_in_the_filter_and_the_dialogs(fbt_home):
    """An Input's own keys (backspace, ctrl+a, ctrl+k, enter) ran only once they had bubbled up to
    the app, after the letters typed after them (Textual issue #6605): "cli", three backspaces and
    "alpha" typed fast gave "clia" in the filter, and ctrl+a ctrl+k and a tag left the old text."""
    runs = three_runs(fbt_home)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 3)
        await pilot.press("slash", *"cli")
        box = app.screen.query_one("#history-filter", Input)
        keys_at_once(app, "backspace", "backspace", "backspace", *"alpha", "enter")
        await wait_for(pilot, lambda: table_ids(app) == [runs["alpha"]] and isinstance(app.focused, RunTable), 5,
                       "the filter kept")
        assert box.value == "alpha"
        await pilot.press("t", *"old")
        assert isinstance(app.screen, PromptDialog)
        keys_at_once(app, "ctrl+a", "ctrl+k", *"keep", "enter")
        await wait_for(pilot, lambda: RunStore(fbt_home).read_meta(runs["alpha"])["tags"] == ["keep"], 5, "the tag")

    run_app(scenario, start_mode="history")


def test_keys_typed_ahead_of_a_dialog_go_into_it_in_order(fbt_home):
    """"t" and a tag typed at once: the tag goes into the tag dialog (it was lost, and an "h" in it
    reached the app's bindings), a "/" in it too, and keys typed while the first are still on their
    way come after them."""
    runs = three_runs(fbt_home)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 3)
        type_at_once(app, "ta/")
        for _ in range(8):  # the app part-way through them
            await asyncio.sleep(0)
        type_at_once(app, "high")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptDialog), 5, "the tag dialog")
        await pilot.pause(0.3)
        assert app.screen.query_one(Input).value == "a/high"
        await pilot.press("escape")
        type_at_once(app, "thigh\r")
        await wait_for(pilot, lambda: "high" in RunStore(fbt_home).read_meta(runs["gamma"])["tags"], 5, "the tag")

    run_app(scenario, start_mode="history")


def test_tag_note_trash_and_restore(fbt_home):
    runs = three_runs(fbt_home)
    store = RunStore(fbt_home)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 3)
        assert table_ids(app)[0] == runs["gamma"]
        await pilot.press("t")
        await pilot.press(*"a,b", "enter")  # refused, in place: lists join tags with commas
        dialog = app.screen
        assert isinstance(dialog, PromptDialog) and dialog.query_one(Input).value == "a,b"
        assert "cannot hold a comma" in str(dialog.query_one("#prompt-problem").render())
        await pilot.press("backspace", "backspace", "backspace")
        assert not dialog.query_one("#prompt-problem").display  # said of the answer before the edit
        await pilot.press(*"keep", "enter")
        await wait_for(pilot, lambda: "keep" in store.read_meta(runs["gamma"])["tags"], 10, "the tag")
        await pilot.press("t")
        await pilot.press(*"-never", "enter")  # a tag it lacks: said, not "untagged"
        await wait_for(pilot, lambda: any("has the tag never" in str(n.message) for n in app._notifications),
                       10, "the word")
        await pilot.press("n")
        await pilot.press(*"lr too high", "enter")
        await wait_for(pilot, lambda: store.read_meta(runs["gamma"])["note"] == "lr too high", 10, "the note")
        await wait_for(pilot, lambda: "lr too high" in str(app.screen.query_one("#history-detail").render()), 10,
                       "the note under the table")

        await app.open_run(runs["gamma"])  # a tab open on it, back in History
        await pilot.press("h")
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmDialog) and f"{runs['gamma']}  gamma" in app.screen.question
        await pilot.press("y")
        await wait_for(pilot, lambda: len(table_ids(app)) == 2, 10, "the run to leave the list")
        assert (fbt_home / "trash" / runs["gamma"]).is_dir()
        assert not app.dashboard.has_tab(runs["gamma"]) and runs["gamma"] not in app.manager.handles

        await pilot.press("v")  # the trash view
        assert table_ids(app) == [runs["gamma"]]
        for key in "tn":  # as the CLI, which refuses to change a run in the trash
            await pilot.press(key)
            assert not isinstance(app.screen, PromptDialog)
        assert sum("cannot be tagged" in str(n.message) or "cannot take a note" in str(n.message)
                   for n in app._notifications) == 2
        await pilot.press("r")
        await wait_for(pilot, lambda: (fbt_home / "runs" / runs["gamma"]).is_dir(), 10, "the restore")
        await wait_for(pilot, lambda: table_ids(app) == [], 10, "an empty trash")
        await pilot.press("v")
        await wait_for(pilot, lambda: len(table_ids(app)) == 3, 10, "three runs again")
        assert store.read_meta(runs["gamma"])["tags"] == ["best", "keep"]

    run_app(scenario, start_mode="history")
    store.close()


def test_a_running_run_is_not_offered_to_the_trash(fbt_home):
    """The store refused it after the question, and the app showed an internal error."""
    live = fake_run(fbt_home, "live", status="running")  # this process's pid: alive
    done = fake_run(fbt_home, "done")

    async def scenario(app, pilot):
        await app.switch_mode("history")
        await history_loaded(app, pilot, 2)
        await pilot.press("space", "down", "space", "x")  # both marked
        await wait_for(pilot, lambda: any("still running; stop it first" in str(n.message)
                                          for n in app._notifications), 10, "the refusal")
        assert isinstance(app.screen, ConfirmDialog) and done in app.screen.question and live not in app.screen.question
        await pilot.press("y")
        await wait_for(pilot, lambda: (fbt_home / "trash" / done).is_dir(), 10, "the other run trashed")
        assert (fbt_home / "runs" / live).is_dir()

    run_app(scenario, start_mode="history")


def test_s_sorts_only_by_the_columns_on_screen(fbt_home):
    """At 100 columns the start and the pair are left out: s went through them too, and said
    "sorted by pair" with no pair shown."""
    three_runs(fbt_home)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 3)
        assert app.screen.left_out == {"started", "pair"}
        keys = []
        for _ in range(9):
            await pilot.press("s")
            keys.append(app.screen.sort_key)
        assert keys == ["id", "name", "method", "status", "best", "final", "duration", "tags", "id"]

    run_app(scenario, size=(100, 30), start_mode="history")


def test_the_table_leaves_columns_out_until_it_fits(fbt_home):
    """At 120 columns every column was shown, whatever the runs' names and tags: a long name
    pushed the scores half off the screen ("62." for 62.90) and the rest behind a sideways scroll."""
    long = fake_run(fbt_home, "mlp_to_cnn_kd_baseline_long_name", top1=(50.0, 62.9), tags=("baseline", "long-tag-here"))
    fake_run(fbt_home, "short", top1=(45.0,))

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 2)
        table = app.screen.query_one(RunTable)
        for size, left_out, compact in (((200, 40), set(), False), ((170, 40), {"started"}, False),
                                        ((140, 40), {"started", "pair"}, False),
                                        ((130, 40), {"started", "pair", "duration"}, False),
                                        ((120, 40), {"started", "pair", "duration"}, True),
                                        ((80, 24), {"started", "pair", "duration", "tags"}, True)):
            await pilot.resize_terminal(*size)
            await wait_for(pilot, lambda: app.screen.fitted_to == size[0] - 2, 5, f"the table at {size[0]} columns")
            await pilot.pause(0.1)
            assert (app.screen.left_out, app.screen.compact) == (left_out, compact), size
            assert table.virtual_size.width <= table.scrollable_content_region.width, size
        await pilot.resize_terminal(140, 40)
        await wait_for(pilot, lambda: app.screen.left_out == {"started", "pair"}, 5, "the layout at 140 columns")
        await pilot.press("slash", *"short", "enter")  # the short run alone would fit every column: they stay
        await wait_for(pilot, lambda: len(table_ids(app)) == 1, 5, "the filter")
        assert app.screen.left_out == {"started", "pair"}
        await pilot.press("slash", "escape")
        await pilot.resize_terminal(135, 40)  # the long run's row fits with a cell to spare
        await wait_for(pilot, lambda: app.screen.fitted_to == 133, 5, "the layout at 135 columns")
        assert app.screen.left_out == {"started", "pair"}
        store = RunStore(fbt_home)  # a tag added elsewhere widens a row: the table lays itself out again
        store.update_meta(long, tags=["baseline", "long-tag-here", "and-another"])
        store.refresh_index(long)
        store.close()
        await wait_for(pilot, lambda: any("and-another" in r.tags for r in app.screen.rows), 10, "the new tag")
        await pilot.pause(0.2)
        assert app.screen.left_out == {"started", "pair", "duration"}
        assert table.virtual_size.width <= table.scrollable_content_region.width

    run_app(scenario, size=(200, 40), start_mode="history")


def test_a_narrow_compare_keeps_every_score_in_view(fbt_home):
    """At 100 columns the full ids and the pair pushed the finals, Δs and fusion out of the table:
    each run is named as its tab, its name clipped. The plots' borders cannot hold both names:
    their legends are left out (the table's swatches say which colour is which run) rather than
    name the first run alone."""
    t0 = time.time() - 100
    a = fake_run(fbt_home, "base", top1=(50.0, 60.0), started=t0)
    b = fake_run(fbt_home, "a name far longer than a column should grow", top1=(55.0, 66.5), started=t0 + 10)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 2)
        await pilot.press("down", "space", "up", "space", "c")
        screen = app.screen
        await wait_for(pilot, lambda: screen.data is not None, 20, "the comparison")
        await pilot.pause(0.2)
        summary = screen.query_one("#compare-summary", DataTable)
        assert [str(c.label) for c in summary.columns.values()] == [
            "", "run", "method", "status", "best @ep", "Δ best", "final", "Δ final", "best fusion"]
        assert [str(summary.get_row_at(i)[1]) for i in range(2)] == [f"base {a[-6:]}", f"a name far long… {b[-6:]}"]
        assert summary.virtual_size.width <= summary.region.width  # no sideways scrolling to the scores
        plots = [screen.query_one(f"#compare-{p}", CurvePlot) for p in ("acc", "metric")]
        await wait_for(pilot, lambda: all(p.total for p in plots), 10, "overlaid curves")
        assert [Text.from_markup(str(p.border_title)).plain for p in plots] == [
            "student top-1 % / epoch", "validation loss / epoch"]
        await pilot.resize_terminal(200, 50)  # room for the whole legend, names unclipped
        names = [f"base {a[-6:]}", f"a name far longer than a column should grow {b[-6:]}"]
        await wait_for(pilot, lambda: all(n in str(p.border_title) for p in plots for n in names), 5, "legends")

    run_app(scenario, size=(100, 30), start_mode="history")


def test_compare_lays_losses_out_by_epoch(fbt_home):
    """A run on twice the data has twice the steps an epoch: by step, its epoch 1 lay at the
    other's epoch 2."""
    t0 = time.time() - 100
    fake_run(fbt_home, "small", top1=(50.0, 60.0), started=t0, steps_per_epoch=4)
    fake_run(fbt_home, "large", top1=(55.0, 66.5), started=t0 + 10, steps_per_epoch=8)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 2)
        await pilot.press("space", "space", "c")
        screen = app.screen
        await wait_for(pilot, lambda: screen.data is not None, 20, "the comparison")
        for group, only in (("CE", "val"), ("CE", "ce"), ("loss", None)):
            panel, _ = screen._overlay(group, 200, only, "t")
            assert panel.title == "t / epoch" and [float(c.x[-1]) for c in panel.curves] == [2.0, 2.0], group
        assert [list(c.x) for c in screen._overlay("top1", 200, "student", "t")[0].curves] == [[1.0, 2.0]] * 2

    run_app(scenario, start_mode="history")


def test_compare_says_why_a_baseline_gives_no_deltas(fbt_home):
    """An interrupted run with no evaluation, marked first: every Δ cell was blank, unexplained."""
    t0 = time.time() - 100
    fake_run(fbt_home, "scored", top1=(50.0, 60.0), started=t0)
    fake_run(fbt_home, "stopped early", top1=(), status="interrupted", started=t0 + 10)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 2)
        await pilot.press("space", "space", "c")  # the newest first: the baseline
        screen = app.screen
        await wait_for(pilot, lambda: screen.data is not None, 20, "the comparison")
        assert "the baseline for Δ, has no top-1 score: no Δ" in str(screen.query_one("#compare-title").render())

    run_app(scenario, start_mode="history")


def test_compare_lays_its_summary_out_by_what_fits(fbt_home):
    """Three runs at 120 columns had the whole summary, its last column cut ("Δ fin", "+14.0")."""
    t0 = time.time() - 100
    for i, name in enumerate(("scratch_ref", "kd_baseline_run", "fbt_long_name_here")):
        fake_run(fbt_home, name, top1=(50.0, 60.0 + i), started=t0 + i)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 3)
        await pilot.press("space", "space", "space", "c")
        screen = app.screen
        await wait_for(pilot, lambda: screen.data is not None, 20, "the comparison")
        summary = screen.query_one("#compare-summary", DataTable)
        for width, compact in ((120, True), (220, False)):
            await pilot.resize_terminal(width, 40)
            await wait_for(pilot, lambda: screen.compact == compact, 5, f"the layout at {width} columns")
            await pilot.pause(0.2)
            assert summary.virtual_size.width <= summary.scrollable_content_region.width, width
            assert ("id" in [str(c.label) for c in summary.columns.values()]) != compact

    run_app(scenario, size=(120, 40), start_mode="history")


def test_compare_shows_only_the_config_keys_that_differ(fbt_home):
    t0 = time.time() - 100
    a = fake_run(fbt_home, "base", top1=(50.0, 60.0), started=t0)
    b = fake_run(fbt_home, "higher-lr", top1=(55.0, 66.5), started=t0 + 10, **{"optim.lr": 0.1})

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 2)
        await pilot.press("c")  # nothing marked yet: a hint, no screen
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("down", "space", "up", "space", "c")  # the older run first: the baseline
        assert isinstance(app.screen, CompareScreen)
        screen = app.screen
        await wait_for(pilot, lambda: screen.data is not None, 20, "the comparison")
        diff = screen.query_one("#compare-diff", DataTable)
        keys = [str(diff.get_row_at(i)[0]) for i in range(diff.row_count)]
        assert keys == ["optim.lr", "run.name"]
        summary = screen.query_one("#compare-summary", DataTable)
        assert str(summary.get_row_at(1)[7]) == "+6.50"  # Δ best against the first marked run
        await wait_for(pilot, lambda: screen.query_one("#compare-acc", CurvePlot).total == 4, 10, "overlaid curves")
        names = [f"base {a[-6:]}", f"higher-lr {b[-6:]}"]  # as the dashboard's tabs name runs
        assert [str(c.label) for c in diff.columns.values()][1:] == names
        assert all(name in str(screen.query_one("#compare-acc", CurvePlot).border_title) for name in names)
        other = screen.query_one("#compare-metric", CurvePlot)
        shown = []
        for _ in range(4):  # m: the validation loss, the student's CE, train loss, and round again
            shown.append((str(other.border_title).split("/")[0].replace("[b]", "").strip(), other.total))
            await pilot.press("m")
        # 8 logged steps and 2 epochs a run, 2 runs
        assert shown == [("validation loss", 4), ("student CE × ce_weight", 16),
                         ("train loss (each method's own sum)", 16), ("validation loss", 4)]
        await pilot.press("a")
        assert diff.row_count > 50  # every key of the config
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)
        assert list(app.screen.marked) == [a, b]

    run_app(scenario, start_mode="history")


def test_marked_runs_that_the_filter_hides_are_left_out_of_the_actions(fbt_home):
    runs = three_runs(fbt_home)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 3)
        await pilot.press("space", "space")  # gamma and beta, newest first
        await pilot.press("slash", *"status:failed", "enter")
        assert table_ids(app) == [runs["beta"]]
        assert "2 marked, 1 hidden by the filter and left out" in str(app.screen.query_one("#history-title").render())
        assert app.screen.selected_ids() == [runs["beta"]]
        await pilot.press("x")  # the trash dialog names only what the filter shows
        assert isinstance(app.screen, ConfirmDialog)
        question = app.screen.question
        assert runs["beta"] in question and runs["gamma"] not in question
        await pilot.press("escape")
        await pilot.press("c")  # one marked run in view: nothing to compare
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("slash", "escape")  # the filter cleared: both marked runs count again
        assert app.screen.selected_ids() == [runs["gamma"], runs["beta"]]
        await pilot.press("escape")  # no filter left: the marks go (one space a run, before)
        assert not app.screen.marked and "marked" not in str(app.screen.query_one("#history-title").render())

    run_app(scenario, start_mode="history")


def test_compare_counts_the_parameters_only_one_method_has(fbt_home):
    t0 = time.time() - 100
    fake_run(fbt_home, "fbt", started=t0)
    fake_run(fbt_home, "kd", started=t0 + 10,
             method={"name": "kd", "ce_weight": 1.0, "temperature": 4.0, "kd_weight": 1.0})

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 2)
        await pilot.press("space", "down", "space", "c")
        screen = app.screen
        await wait_for(pilot, lambda: isinstance(screen, CompareScreen) and screen.data is not None, 20,
                       "the comparison")
        diff = screen.query_one("#compare-diff", DataTable)
        assert [str(diff.get_row_at(i)[0]) for i in range(diff.row_count)] == ["method.name", "run.name"]
        own = len(screen.data.diff) - 2
        assert own > 10 and f"and {own} parameters that only some of these methods have" in str(
            screen.query_one("#compare-diff-title", Label).render())
        await pilot.press("a")
        assert "method.temperature" in {str(diff.get_row_at(i)[0]) for i in range(diff.row_count)}

    run_app(scenario, start_mode="history")


def test_export_matches_the_cli(fbt_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the dialog's default paths point: never the repository
    run_id = fake_run(fbt_home, "exported", top1=(50.0, 60.0))
    out_csv, out_md, out_student = tmp_path / "m [/] x.csv", tmp_path / "m.md", tmp_path / "student.safetensors"
    out_best = tmp_path / "best.safetensors"
    out_csv.parent.mkdir()  # "m [" ("[/]" holds a slash): the dialog makes no folders
    offered = []  # the file names the dialog offers, format by format

    async def export(app, pilot, fmt: str, path) -> None:
        await pilot.press("e")
        dialog = app.screen
        assert isinstance(dialog, ExportDialog)
        for button in dialog.query(RadioButton):  # as ↓ walks (and picks) the formats; tab to the path
            if button.name == fmt:
                break
            await pilot.press("down")
        await pilot.press("tab")
        box = dialog.query_one("#export-path", Input)
        assert app.focused is box
        offered.append(Path(box.value).name)
        box.value = str(path)
        await pilot.press("enter")

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 1)
        await export(app, pilot, "csv", out_csv)
        await wait_for(pilot, out_csv.exists, 10, "the CSV")
        note = await wait_for(pilot, lambda: next((n for n in app._notifications if n.title == "Exported"), None),
                              5, "the notification")
        # as its toast will show it (headless, none is drawn): read as markup, "[/]" broke the app
        assert str(out_csv) in (Content.from_markup(note.message).plain if note.markup else note.message)
        await export(app, pilot, "md", out_md)
        await wait_for(pilot, out_md.exists, 10, "the Markdown")
        await export(app, pilot, "student", out_student)
        await wait_for(pilot, out_student.with_suffix(".toml").exists, 10, "the student's sidecar")
        await export(app, pilot, "student_best", out_best)
        await wait_for(pilot, out_best.with_suffix(".toml").exists, 10, "the best student's sidecar")

    run_app(scenario, start_mode="history")
    for fmt, path in (("csv", out_csv), ("md", out_md)):
        cli = run_fbt("export", run_id, "--format", fmt)
        assert cli.returncode == 0, cli.stderr
        assert path.read_text() == cli.stdout
    assert out_student.read_bytes() == (fbt_home / "runs" / run_id / "student.safetensors").read_bytes()
    assert out_best.read_bytes() == (fbt_home / "runs" / run_id / "student_best.safetensors").read_bytes()
    assert offered[:2] == [f"{run_id}.csv", f"{run_id}.md"]
    assert offered[2:] == ["exported.safetensors", "exported_best.safetensors"]  # the run's name; not one file for both
    source = tomllib.loads(out_best.with_suffix(".toml").read_text())["source"]
    assert (source["weights"], source["epoch"]) == ("best", 2)
    assert tomllib.loads(out_student.with_suffix(".toml").read_text())["source"]["weights"] == "final"


def test_a_run_the_app_did_not_start_is_followed_in_history(fbt_home, monkeypatch):
    """A headless `fbt run` in another terminal, started while History is open: its row appears
    and moves with its epochs, as the app's own runs' do."""
    import fbt_tui.screens.history as history_screen
    from fbt_engine.store.events import EventWriter

    monkeypatch.setattr(history_screen, "REFRESH_S", 0.2)
    fake_run(fbt_home, "older", top1=(30.0,), started=time.time() - 600)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 1)
        run_id = fake_run(fbt_home, "headless", top1=(10.0,), status="running")  # this process: alive
        await history_loaded(app, pilot, 2)
        table = app.screen.query_one("#history-table", RunTable)
        assert not app.manager.active() and "10.00 @1" in table.render_line(1).text
        writer = EventWriter(fbt_home / "runs" / run_id / "events.jsonl")
        writer.write("epoch", phase="distillation", epoch=2, step=8, val_loss=1.0, student={"top1": 70.0, "top5": 99.0})
        writer.close()
        store = RunStore(fbt_home)
        store.refresh_index(run_id)  # as the engine does at an epoch end
        store.close()
        await wait_for(pilot, lambda: "70.00 @2" in table.render_line(1).text, 5, "the row to follow the run")
        # killed outright: it writes nothing more, and History still finds it crashed
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        store = RunStore(fbt_home)
        store.update_meta(run_id, pid=dead.pid, pid_start=None)
        store.close()
        await wait_for(pilot, lambda: "crashed" in table.render_line(1).text, 5, "the crash to show")

    run_app(scenario, start_mode="history")


def test_export_by_keyboard_alone(fbt_home, tmp_path, monkeypatch):
    """↓ picks the format, tab reaches the path, enter exports: the dialog opens on the formats."""
    monkeypatch.chdir(tmp_path)
    fake_run(fbt_home, "keys", top1=(50.0, 60.0))
    fake_run(fbt_home, "other", top1=(40.0,))

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 2)
        await pilot.press("down", "e")
        await pilot.press(*["down"] * 5, "tab")  # CSV → … → student weights, best epoch; then the path
        assert isinstance(app.focused, Input) and app.focused.value == str(tmp_path / "keys_best.safetensors")
        await pilot.press("backspace", *"x")  # edits the path's end: a key does not replace it whole
        assert app.focused.value == str(tmp_path / "keys_best.safetensorx")
        await pilot.press("backspace", "s")
        await pilot.press("enter")
        await wait_for(pilot, (tmp_path / "keys_best.toml").exists, 10, "the best weights' sidecar")
        await pilot.press("space", "up", "space", "e")  # two runs: the weights are one run's
        labels = [str(b.label) for b in app.screen.query(RadioButton) if b.disabled]
        assert len(labels) == 2 and all("one run at a time" in label for label in labels)

    run_app(scenario, start_mode="history")


def test_the_detail_line_names_a_fusion_model_only_where_the_method_has_one(fbt_home):
    fake_run(fbt_home, "distilled", top1=(50.0, 60.0))
    fake_run(fbt_home, "kd", top1=(40.0, 45.0), fusion=False, started=time.time() + 60,
             **{"method.name": "kd", "data.subset": 1000})

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 2)
        detail = app.screen.query_one("#history-detail")
        assert "teacher 70.00" in str(detail.render()) and "fusion" not in str(detail.render())  # kd, newest
        assert "fashion_mnist_5k (subset 1,000)" in str(detail.render())
        await pilot.press("down")
        assert "teacher 70.00 · best fusion 55.00" in str(detail.render())
        assert "fashion_mnist_5k ·" in str(detail.render())  # the whole dataset

    run_app(scenario, start_mode="history")


def test_u_on_a_finished_runs_tab_says_how_to_train_it_further(fbt_home):
    run_id = fake_run(fbt_home, "done", top1=(50.0, 60.0))

    async def scenario(app, pilot):
        view = await open_from_history(app, pilot)
        await wait_for(pilot, lambda: view.model.status == "finished", 10, "the run's events")
        assert not app.dashboard.check_action("resume", ())  # no u in the key bar
        await pilot.press("u")
        config = fbt_home / "runs" / run_id / "config.toml"
        assert any(f"fbt run {config} --set train.epochs=N" in str(n.message) for n in app._notifications)

    run_app(scenario, start_mode="history")


def test_an_empty_history_says_how_runs_get_there(fbt_home):
    async def scenario(app, pilot):
        detail = app.screen.query_one("#history-detail")
        await wait_for(pilot, lambda: "No runs yet" in str(detail.render()), 10, "the hint")
        assert "fbt run presets/mlp_to_cnn.toml" in str(detail.render())
        for key, verb in (("e", "export"), ("t", "tag"), ("x", "trash")):
            await pilot.press(key)
            assert any(f"No run to {verb}: there are no runs yet" in n.message for n in app._notifications)

    run_app(scenario, start_mode="history")


def test_crashed_runs_are_marked_on_start_up(fbt_home):
    run_id = fake_run(fbt_home, "ghost", top1=(10.0,), status="running")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = RunStore(fbt_home)
    store.update_meta(run_id, status="running", pid=dead.pid, pid_start=None, host=socket.gethostname())
    store.refresh_index(run_id)

    async def scenario(app, pilot):
        await wait_for(pilot, lambda: store.read_meta(run_id)["status"] == "crashed", 10, "crash detection")
        await pilot.press("h")
        await history_loaded(app, pilot, 1)
        table = app.screen.query_one("#history-table", RunTable)
        assert "crashed" in table.render_line(1).text  # the first row, under the header
        assert any("crashed" in n.message for n in app._notifications)

    run_app(scenario)
    store.close()
    assert json.loads((fbt_home / "runs" / run_id / "meta.json").read_text())["status"] == "crashed"


def test_a_one_epoch_run_gets_a_readable_epoch_axis(fbt_home):
    """One epoch is one x value: autoscaling would give an axis of width zero (ticks 0.9999990 …)."""
    run = fake_run(fbt_home, "short", top1=(55.0,))

    async def scenario(app, pilot):
        assert (await open_from_history(app, pilot)).handle.run_id == run
        plot = app.screen.query_one("#plot-top1", CurvePlot)
        await wait_for(pilot, lambda: plot.total == 3, 10, "drawn curves")
        assert (plot._x_min, plot._x_max) == (0.0, 2.0)

    run_app(scenario, start_mode="history")


def test_names_with_brackets_are_shown_as_typed_everywhere(fbt_home):
    """Run names and config values are text: Textual would read "[x]" as a style and fail on "[/]"."""
    t0 = time.time() - 100
    odd = fake_run(fbt_home, "lr [/] sweep [x]", top1=(50.0, 60.0), started=t0)
    fake_run(fbt_home, "plain", top1=(55.0, 66.5), started=t0 + 10)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 2)
        await pilot.press("slash", *"[/]")  # the filter is named in the title line
        assert table_ids(app) == [odd] and "filter “[/]”" in str(app.screen.query_one("#history-title").render())
        await pilot.press("escape")
        await pilot.press("down", "space", "up", "space", "c")
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        await wait_for(pilot, lambda: screen.data is not None, 20, "the comparison")
        summary = screen.query_one("#compare-summary", DataTable)
        assert str(summary.get_row_at(0)[2]) == "lr [/] sweep [x]"
        diff = screen.query_one("#compare-diff", DataTable)
        assert "lr [/] sweep [x]" in [str(diff.get_row_at(i)[1]) for i in range(diff.row_count)]
        assert str(list(diff.columns.values())[1].label) == f"lr [/] sweep [x] {odd[-6:]}"
        await wait_for(pilot, lambda: f"lr [/] sweep [x] {odd[-6:]}" in Content.from_markup(
            str(screen.query_one("#compare-acc", CurvePlot).border_title)).plain, 10, "the legend")
        await pilot.press("escape")
        await pilot.press("down", "enter")  # open it: its tab is titled by its name
        await wait_for(pilot, lambda: app.current_mode == "dashboard", 10, "the dashboard")
        await pilot.pause(0.3)
        titles = [str(t.label) for t in app.screen.query("Tab")]
        assert any(f"lr [/] sweep [x] {odd[-6:]}" in t for t in titles), titles

    run_app(scenario, start_mode="history")


def test_a_cursor_on_the_newest_run_follows_a_newer_one(fbt_home):
    """On the first row it was on "the latest run"; anywhere else it keeps its own run."""
    runs = three_runs(fbt_home)

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 3)
        table = app.screen.query_one(RunTable)
        assert table.cursor_key == runs["gamma"]
        delta = fake_run(fbt_home, "delta", top1=(10.0,))
        app.screen.reload()
        await history_loaded(app, pilot, 4)
        assert table_ids(app)[0] == delta and table.cursor_key == delta
        await pilot.press("down")
        assert table.cursor_key == runs["gamma"]
        epsilon = fake_run(fbt_home, "epsilon", top1=(10.0,))
        app.screen.reload()
        await history_loaded(app, pilot, 5)
        assert table_ids(app)[0] == epsilon and table.cursor_key == runs["gamma"]

    run_app(scenario, start_mode="history")


def test_the_detail_line_keeps_a_start_time_whole(fbt_home):
    fake_run(fbt_home, "short", top1=(50.0,))  # at 151-160 columns its line wrapped after "started"

    async def scenario(app, pilot):
        await history_loaded(app, pilot, 1)
        detail = app.screen.query_one("#history-detail")
        for width in range(100, 200, 4):
            await pilot.resize_terminal(width, 40)
            await pilot.pause()
            text = "\n".join(strip.text.rstrip() for strip in detail.render_lines(detail.region.reset_offset))
            assert re.search(r"started \d{4}-\d\d-\d\d \d\d:\d\d", text), (width, text)

    run_app(scenario, start_mode="history")
