"""The TUI with the real engine as a subprocess: launch, live curves, errors, crashes, re-attach,
stop, quit. Every run is tiny (conftest's TINY) and starts from the cached tiny teacher."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from textual.widgets import Input, Log, TabbedContent, TabPane

from fbt_engine.store.runs import RunStore
from fbt_tui.screens.dashboard import pane_id
from fbt_tui.screens.dialogs import ConfirmDialog, QuitDialog
from fbt_tui.widgets.curves import CurvePlot
from fbt_tui.widgets.keybar import KeyBar
from fbt_tui.widgets.run_view import AlignmentTable, RunView

from conftest import REPO, tiny_sets
from test_tui_support import MLP_TO_CNN, fake_run, run_app, shown_error, tiny_form_values, wait_for

LONG = tiny_sets("train.epochs=50")[1::2]  # the TINY overrides, with epochs enough to last until stopped


def test_launch_from_presets_and_watch_the_curves_update(with_cached_teacher):
    async def scenario(app, pilot):
        screen = app.screen
        await wait_for(pilot, lambda: screen.ref is not None and screen.ref.name == "mlp_to_cnn", 10, "the preset")
        epochs = screen.query_one("#f-train-epochs", Input)
        epochs.value = "-1"
        await pilot.pause()
        await pilot.press("enter")  # refused: a toast says so
        assert any("to fix first" in str(n.message) for n in app._notifications)
        for key, value in {**tiny_form_values(), "train.epochs": "3"}.items():  # a few seconds to watch
            screen.query_one(f"#f-{key.replace('.', '-')}", Input).value = value
        await pilot.pause()
        assert not screen.problems
        await pilot.press("enter")  # on the preset list: launch
        await wait_for(pilot, lambda: app.current_mode == "dashboard", 10, "the dashboard")
        assert not any("to fix first" in str(n.message) for n in app._notifications)  # over the new run's log
        view = app.screen.query_one(RunView)
        assert app.active_runs == 1
        loss = app.screen.query_one("#plot-loss", CurvePlot)
        seen, deadline = set(), time.monotonic() + 150
        while view.model.is_active:
            seen.add(loss.total)
            await pilot.pause(0.1)
            assert time.monotonic() < deadline, "the run did not finish"
        await wait_for(pilot, lambda: view.up_to_date, 5, "the last redraw")
        assert view.model.status == "finished"
        await wait_for(pilot, lambda: not view.handle.thread.is_alive(), 30, "the engine to exit")
        assert len({n for n in seen if n}) >= 2, f"the curves never grew while running: {seen}"
        status = str(app.screen.query_one("#run-status").render())
        assert f"curves: {view.model.point_count()} points" in status  # none decimated: no "of"
        assert app.screen.query_one("#plot-top1", CurvePlot).total == 9  # student, teacher, fusion × 3 epochs
        table = app.screen.query_one(AlignmentTable)
        assert table.row_count == 7
        pooled = table.get_row_at(6)  # pooled F–S: each column's decimals in every row; retrieval in %
        assert all(re.fullmatch(r"-?\d+\.\d\d", str(pooled[i])) for i in (1, 4, 6)), pooled
        assert re.fullmatch(r"\d+\.\d", str(pooled[5])) and 0 <= float(str(pooled[5])) <= 100, pooled
        assert any("finished" in line for line in app.screen.query_one(Log).lines)
        assert app.active_runs == 0
        await pilot.press("h")
        await wait_for(pilot, lambda: app.screen.query_one("#history-table").row_count == 1, 10, "the history row")
        await pilot.press("p")  # the preview's parameter counts, estimated in a subprocess meanwhile
        preview = app.screen.query_one("#preview")
        await wait_for(pilot, lambda: "student 309k" in str(preview.render()), 90, "the parameter counts")

    run_app(scenario)
    assert not any((with_cached_teacher / "tui").iterdir())  # launch logs are gone once the run ended


def test_a_preset_the_engine_rejects_shows_its_error_in_a_modal(fbt_home):
    user_presets = fbt_home / "config" / "presets"
    user_presets.mkdir(parents=True)
    (user_presets / "broken.toml").write_bytes(MLP_TO_CNN.read_bytes().replace(b"epochs = 4", b"epochs = 0"))

    async def scenario(app, pilot):
        await pilot.press("ctrl+p")
        await pilot.press(*"Launch preset broken")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the launch question")
        assert "1 problem: train.epochs" in str(app.screen.query_one(".dialog-body").render())
        await pilot.press("y")  # launched anyway: the engine's own error, in full
        await wait_for(pilot, lambda: shown_error(app), 60, "the error modal")
        message = str(app.screen.query_one("#error-message").render())
        assert "train.epochs" in message and "≥ 1" in message
        await pilot.press("enter")
        assert app.current_mode == "dashboard" and not app.screen.query(RunView) and not app.manager.handles
        await pilot.press("h")  # still usable
        assert app.current_mode == "history"
        assert not (fbt_home / "runs").exists() or not any((fbt_home / "runs").iterdir())

    run_app(scenario)


def start_engine(home) -> subprocess.Popen:
    """A run started outside the app, as `fbt run` in another terminal would."""
    return subprocess.Popen([sys.executable, "-m", "fbt_engine", "run", str(MLP_TO_CNN), "--quiet", *tiny_sets(
        "train.epochs=50")], cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, "FBT_HOME": str(home)})


def test_reattach_leave_running_then_stop(with_cached_teacher):
    proc = start_engine(with_cached_teacher)
    try:
        deadline = time.monotonic() + 120
        while not list((with_cached_teacher / "runs").glob("*/events.jsonl")):
            assert time.monotonic() < deadline and proc.poll() is None, "the engine did not start"
            time.sleep(0.2)

        async def leave(app, pilot):
            await wait_for(pilot, lambda: app.screen.query(RunView), 20, "the re-attached run's tab")
            view = app.screen.query_one(RunView)
            assert view.handle.pid == proc.pid and app.active_runs == 1
            before = view.model.point_count()
            await wait_for(pilot, lambda: view.model.point_count() > before, 120, "live steps")
            await pilot.press("q")
            assert isinstance(app.screen, QuitDialog)
            await pilot.press("l")

        run_app(leave)
        time.sleep(1)
        assert proc.poll() is None, "leaving the app stopped the run"

        async def stop(app, pilot):
            await wait_for(pilot, lambda: app.screen.query(RunView), 20, "the re-attached run's tab")
            view = app.screen.query_one(RunView)
            await pilot.press("s")
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("y")
            await wait_for(pilot, lambda: view.model.status == "interrupted", 60, "the stop")
            await pilot.press("q")  # nothing active: no question asked

        run_app(stop)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def wait_until_stopped(proc: subprocess.Popen) -> None:
    """Ctrl-C in the headless run's terminal: it saves its step and exits 130 (waited for off the
    app's loop, which goes on drawing meanwhile)."""
    os.killpg(proc.pid, signal.SIGINT)
    assert await asyncio.to_thread(proc.wait, 120) == 130


def test_runs_started_and_resumed_elsewhere_get_a_tab_while_the_app_is_open(with_cached_teacher):
    procs: list[subprocess.Popen] = []

    def notes(app, words: str) -> list[str]:
        return [str(n.message) for n in app._notifications if words in str(n.message)]

    async def scenario(app, pilot):
        await wait_for(pilot, lambda: app.started, 20, "the start-up")
        procs.append(start_engine(with_cached_teacher))
        await wait_for(pilot, lambda: app.dashboard.query(RunView), 120, "a tab for the headless run")
        assert app.current_mode == "presets"  # a tab opened beside, the user's screen kept
        view = app.dashboard.query_one(RunView)
        assert view.handle.pid == procs[0].pid and view.handle.live
        await wait_for(pilot, lambda: notes(app, "was started by another process"), 5, "the note")
        await wait_for(pilot, lambda: view.model.point_count() > 0, 120, "its live steps")
        await wait_until_stopped(procs[0])
        await wait_for(pilot, lambda: view.model.status == "interrupted", 30, "the stop on screen")

        procs.append(subprocess.Popen(  # `fbt run --resume` in the other terminal
            [sys.executable, "-m", "fbt_engine", "run", "--resume", view.handle.run_id, "--quiet"], cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "FBT_HOME": str(with_cached_teacher)}))
        await wait_for(pilot, lambda: app.dashboard.query_one(RunView).handle.pid == procs[1].pid, 120,
                       "the tab to follow the resume")
        assert len(app.dashboard.query(RunView)) == 1  # the same tab, no second one
        resumed = app.dashboard.query_one(RunView)
        await wait_for(pilot, lambda: notes(app, "was resumed by another process"), 5, "the note")
        await wait_for(pilot, lambda: resumed.model.status == "running", 60, "the resumed segment")
        await wait_until_stopped(procs[1])
        await wait_for(pilot, lambda: resumed.model.status == "interrupted", 30, "the second stop on screen")

    try:
        run_app(scenario)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_two_runs_one_crashes_quit_stops_the_other(with_cached_teacher):
    """Two runs at once, one tab each: a crash mid-run keeps its curves and is marked crashed; quitting
    with the other still active can stop it (it saves and exits 130)."""

    async def scenario(app, pilot):
        doomed = await app.launch(MLP_TO_CNN, [*LONG, 'run.name="doomed"'])
        survivor = await app.launch(MLP_TO_CNN, LONG)
        assert len(app.screen.query(RunView)) == 2 and app.active_runs == 2
        # no GPU here: the second run shares the CPU with the first, each slower, which is said
        await wait_for(pilot, lambda: any(n.title == "Shared CPU" and "2 runs now share this CPU (" in n.message
                                          for n in app._notifications), 5, "the shared CPU note")
        app.say_shared_cpu(survivor)  # said again, as a third run would have it: the newer toast replaces it
        await pilot.pause(0.2)
        assert sum(n.title == "Shared CPU" for n in app._notifications) == 1
        tabs = app.screen.query_one("TabbedContent")
        # named from the first frame as the engine names them (not after the preset until the first event)
        assert "doomed" in tabs.get_tab(f"run-{doomed.run_id}").label.plain
        assert "mlp_to_cnn" in tabs.get_tab(f"run-{survivor.run_id}").label.plain  # the preset's [run] name
        await wait_for(pilot, lambda: doomed.model.point_count() > 0 and survivor.model.point_count() > 0, 180,
                       "steps from both runs")
        os.killpg(doomed.pid, signal.SIGKILL)
        await wait_for(pilot, lambda: doomed.model.status == "crashed", 20, "the crash to be noticed")
        assert RunStore(with_cached_teacher).read_meta(doomed.run_id)["status"] == "crashed"
        assert doomed.model.point_count() > 0  # every curve it had
        assert any("the engine's process is gone: crashed; u resumes" in line for line in doomed.model.log)
        app.screen.query_one("TabbedContent").active = f"run-{doomed.run_id}"
        await pilot.pause(0.5)
        view = app.screen.query_one(f"#run-{doomed.run_id} RunView", RunView)
        await wait_for(pilot, lambda: view.up_to_date, 5, "the redraw")
        assert view.query_one("#plot-loss", CurvePlot).total > 0
        assert "crashed" in str(view.query_one("#run-status").render())
        assert app.active_runs == 1

        await pilot.press("q")
        assert isinstance(app.screen, QuitDialog)
        assert "1 run is still going. Leave it running" in str(app.screen.query_one(".dialog-body").render())
        await pilot.press("s")
        await wait_for(pilot, lambda: survivor.proc.poll() is not None, 60, "the engine to stop")
        assert survivor.proc.returncode == 130
        assert RunStore(with_cached_teacher).read_meta(survivor.run_id)["status"] == "interrupted"

    run_app(scenario)


def test_run_tabs_take_turns_with_angle_brackets(fbt_home):
    """The tab bar's own ←/→ need it focused (shift+tab); < and > switch runs from anywhere."""
    from textual.widgets import TabbedContent

    a, b, c = (fake_run(fbt_home, name) for name in ("a", "b", "c"))

    async def scenario(app, pilot):
        tabs = app.dashboard.query_one(TabbedContent)
        await app.open_run(a)
        await pilot.pause()
        assert app.dashboard.check_action("switch_tab", (1,)) is False  # one tab: no key shown
        await app.open_run(b)
        await app.open_run(c)
        await pilot.pause()
        assert tabs.active.endswith(c)
        seen = []
        for key in (">", ">", "<", "<"):
            await pilot.press(key)
            seen.append(tabs.active.removeprefix("run-"))
        assert seen == [a, b, a, c]

    run_app(scenario, start_mode="dashboard")


def test_tabs_that_opened_by_themselves_for_ended_runs_give_way_beyond_a_few(fbt_home):
    """A sweep run from a shell opens a tab a run beside the one in view: past UNSEEN_ENDED_TABS of
    them, the oldest that ended unseen close, and their handles stop tailing. A tab the user
    looked at, the one in view, and one whose run is active stay."""
    from fbt_tui.screens.dashboard import UNSEEN_ENDED_TABS

    viewed = fake_run(fbt_home, "viewed", started=time.time() - 100)
    sweep = [fake_run(fbt_home, f"sweep{i}", started=time.time() - 90 + i) for i in range(UNSEEN_ENDED_TABS + 4)]

    async def scenario(app, pilot):
        tabs = app.dashboard.query_one(TabbedContent)
        await app.open_run(viewed)
        for rid in sweep:
            await app.dashboard.open_run(app.manager.open(rid), activate=False)
        await pilot.pause()
        tabs.active = pane_id(sweep[1])  # looked at, then back
        await pilot.pause()
        tabs.active = pane_id(viewed)
        await pilot.pause()
        app.manager.handles[sweep[2]].live = True  # still running
        app.manager.handles[sweep[2]].model.status = "running"
        tabs.active = pane_id(sweep[0])  # switched to as runs arrive: its TabActivated not yet handled
        assert await app.dashboard.retire_unseen() == ["sweep3"]
        await pilot.pause()
        tabs.active = pane_id(viewed)
        await pilot.pause()
        assert await app.dashboard.retire_unseen() == []  # sweep0 was shown since
        assert [p.id.removeprefix("run-") for p in tabs.query(TabPane)] == [viewed, *sweep[:3], *sweep[4:]]
        assert sweep[3] not in app.manager.handles and sweep[4] in app.manager.handles

    run_app(scenario, start_mode="dashboard")


def test_a_stopped_run_resumes_from_its_tab(with_cached_teacher):
    """s stops a run; u in its tab resumes it (`fbt run --resume` underneath), and the tab shows its
    whole history going on. A resume the engine refuses says why and keeps the tab."""

    async def scenario(app, pilot):
        handle = await app.launch(MLP_TO_CNN, LONG)
        await wait_for(pilot, lambda: handle.model.point_count() > 0, 180, "steps")
        assert app.dashboard.check_action("resume", ()) is False  # running: nothing to resume, no key shown
        await pilot.press("s", "y")
        await wait_for(pilot, lambda: handle.model.status == "interrupted", 60, "the stop")
        other = fake_run(with_cached_teacher, "other")  # a tab after the run's, which its resume keeps there
        await app.open_run(other)
        tabs = app.dashboard.query_one(TabbedContent)
        tabs.active = pane_id(handle.run_id)
        # offered once its process has exited: its last event comes a moment before
        await wait_for(pilot, lambda: app.dashboard.check_action("resume", ()), 30, "u to be offered")
        # and said in the key bar, without a move to another tab and back (it waited for one)
        await wait_for(pilot, lambda: "u Resume" in app.screen.query_one(KeyBar).render().plain, 10, "u in the key bar")
        assert "Stop run" not in app.screen.query_one(KeyBar).render().plain  # a key that would do nothing
        await pilot.press("u")
        view = await wait_for(pilot, lambda: next((v for v in app.screen.query(RunView) if v.handle is not handle
                                                   and v.model.status == "running"), None), 120, "the resumed run")
        assert view.handle.run_id == handle.run_id and len(app.screen.query(RunView)) == 2
        order = [pane_id(handle.run_id), pane_id(other)]
        assert [pane.id for pane in tabs.query(TabPane)] == order  # what < and > follow
        # and what the tab bar shows (its titles end with the run id's end)
        assert [tab.label.plain.split()[-1] for tab in tabs.query("ContentTab")] == [handle.run_id[-6:], other[-6:]]
        assert tabs.active == pane_id(handle.run_id)
        store = RunStore(with_cached_teacher)
        await wait_for(pilot, lambda: any(e["type"] == "resume" for e in store.events(handle.run_id)), 60,
                       "the resume event")
        await pilot.press("s", "y")
        await wait_for(pilot, lambda: view.model.status == "interrupted", 60, "the second stop")
        assert view.handle.proc.wait(timeout=30) == 130

        config = store.run_dir(handle.run_id) / "config.toml"  # now a resume the engine refuses
        config.write_text(config.read_text().replace("[train]", "[train]\nbogus = 1"))
        await wait_for(pilot, lambda: app.dashboard.check_action("resume", ()), 30, "u to be offered again")
        await pilot.press("u")
        dialog = await wait_for(pilot, lambda: shown_error(app), 60, "the refusal")
        assert f"run {handle.run_id} did not resume (exit 2)" in str(dialog.query_one(".dialog-title").render())
        assert "train.bogus: unknown key" in str(dialog.query_one("#error-message").render())
        await pilot.press("enter")
        view = app.dashboard.current_view()  # the tab stays, its run as it was
        assert view.handle.run_id == handle.run_id
        assert view.model.status == "interrupted" and store.read_meta(handle.run_id)["status"] == "interrupted"
        assert not list(app.manager.launch_dir.glob(f"{handle.run_id}.*"))  # its launch files are gone
        with pytest.raises(ValueError, match="nothing to resume"):  # a finished run: said before any process
            app.manager.resume(fake_run(with_cached_teacher, "done"))
        distributed = fake_run(with_cached_teacher, "ddp", status="interrupted")
        events = store.run_dir(distributed) / "events.jsonl"
        events.write_text(events.read_text().replace('"type":"run_started",', '"type":"run_started","processes":2,', 1))
        with pytest.raises(ValueError, match="--nproc-per-node 2"):  # not as one process with the whole batch
            app.manager.resume(distributed)
        with events.open("a") as fh:  # resumed by an older fbt, whose resume event says no processes
            fh.write(json.dumps({"type": "resume", "time": 1.0, "segment": 2, "phase": "distillation",
                                 "from_step": 0}) + "\n")
        with pytest.raises(ValueError, match="--nproc-per-node 2"):
            app.manager.resume(distributed)
        resumed_wider = fake_run(with_cached_teacher, "wider", status="interrupted")  # as its last segment ran
        with (store.run_dir(resumed_wider) / "events.jsonl").open("a") as fh:
            fh.write(json.dumps({"type": "resume", "time": 1.0, "segment": 2, "phase": "distillation",
                                 "from_step": 0, "processes": 4}) + "\n")
        with pytest.raises(ValueError, match="--nproc-per-node 4"):
            app.manager.resume(resumed_wider)
        store.close()

    run_app(scenario)


def test_an_empty_dashboard_offers_no_key_that_acts_on_a_tab(fbt_home):
    """After w closed the last tab, the key bar still offered w, [ and ] (narrow: the plots' turns)."""
    async def scenario(app, pilot):
        await pilot.pause()
        footer = str(app.screen.query_one("#keys").render())
        assert "Close tab" not in footer and "Prev plot" not in footer and "Next plot" not in footer
        assert not app.screen.check_action("close_tab", ()) and not app.screen.check_action("cycle", (1,))

    run_app(scenario, size=(100, 30), start_mode="dashboard")


def test_the_palettes_stop_asks_as_the_tabs_s_does(fbt_home):
    """The palette asked only "Stop run …?" and said nothing after; s in the run's tab says what a
    stop keeps and how to resume. Both answer n here: y would signal this test's own process."""
    live = fake_run(fbt_home, "live", status="running")  # this process's pid: alive

    async def scenario(app, pilot):
        await app.open_run(live)
        await pilot.pause()
        assert app.dashboard.current_view().handle.active
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmDialog) and "It saves its last checkpoint" in app.screen.question
        assert app.screen.question.startswith(f"Stop run live ({live})?")  # by its name, as its tab
        asked = app.screen.question
        await pilot.press("n")
        (stop,) = [c for c in app.get_system_commands(app.screen) if c.title.startswith("Stop run")]
        stop.callback()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog) and app.screen.question == asked
        await pilot.press("n")

    run_app(scenario, start_mode="dashboard")


def test_the_palette_waits_for_a_dialog_and_its_keys_command_is_the_apps(fbt_home):
    """A palette opened over a launch's question launched a second one, and the first stayed on
    screen after the answer; its "Keys" opened Textual's panel (none of fbt's keys, deaf to esc)."""
    from textual.command import CommandPalette

    from fbt_tui.screens.help import HelpScreen

    async def scenario(app, pilot):
        app.confirm_launch(MLP_TO_CNN, "mlp_to_cnn")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the launch question")
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ConfirmDialog) and not CommandPalette.is_open(app)
        await pilot.press("n")
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: CommandPalette.is_open(app), 5, "the palette")
        await pilot.press(*"Keys")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the app's keys")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen), 5, "the keys closed")

    run_app(scenario)
