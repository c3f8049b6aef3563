"""fbt's terminal app: Presets, Dashboard and History modes around one run manager.

The App owns the run manager, so runs and their tail threads outlive any screen; modes are
suspended, never unmounted, when the user switches between them.
"""

from __future__ import annotations

import gc
import shutil
import subprocess
from collections.abc import Callable, Iterable
from functools import partial, wraps
from pathlib import Path
from typing import Any

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from fbt_engine.config.presets import collect, spoiled, trains_teacher
from fbt_engine.data.catalog import download_target
from fbt_engine.formats import counted, cpu_name
from fbt_engine.store.runs import RunNotFound

from fbt_tui.format import WIDE, literal
from fbt_tui.runs import Attachable, LaunchFailed, RunEnded, RunHandle, RunManager, RunUpdated, TailFailed
from fbt_tui.screens.dashboard import DashboardScreen
from fbt_tui.screens.dialogs import ConfirmDialog, ErrorDialog, QuitDialog
from fbt_tui.screens.help import HelpScreen
from fbt_tui.screens.history import HistoryScreen
from fbt_tui.screens.presets import PresetsScreen

WATCH_S = 2.0  # how soon a run started by another process has its tab


def gpu_names() -> list[str]:
    """The GPUs' names from the driver (no torch here); none where there is no nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=3, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":", 1)[1].split("(UUID")[0].strip() for line in out.splitlines() if ":" in line]


def machine_device(names: list[str]) -> str:
    """The GPU's name when there is one, else the CPU."""
    if names:
        return names[0] if len(names) == 1 else f"{len(names)}× {names[0]}"
    return cpu_name()


def while_running(handler: Callable[[FbtApp, Message], Any]) -> Callable[[FbtApp, Message], Any]:
    """A run's message can arrive while the app closes, after its screens are gone: it is dropped then."""
    @wraps(handler)
    def handle(app: FbtApp, message: Message) -> Any:
        return handler(app, message) if app.is_running else None
    return handle


class FbtApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "fbt"
    SCREENS = {"presets": PresetsScreen, "dashboard": DashboardScreen, "history": HistoryScreen}
    MODES = {"presets": "presets", "dashboard": "dashboard", "history": "history"}
    BINDINGS = [
        Binding("p", "mode('presets')", "Presets"),
        Binding("d", "mode('dashboard')", "Dashboard"),
        Binding("h", "mode('history')", "History"),
        Binding("question_mark", "help", "Keys"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]

    device_label: reactive[str] = reactive("")
    active_runs: reactive[int] = reactive(0)

    def __init__(self, home: Path | None = None, start_mode: str = "presets"):
        super().__init__()
        self.manager = RunManager(self.post_message, home)
        self.start_mode = start_mode
        self.machine = cpu_name()
        self.gpus: list[str] | None = None  # until detect_device has asked the driver
        self.helpers: set[subprocess.Popen] = set()  # short-lived subprocesses to end on exit
        self.started = False  # History waits for start-up, so crashes are reported by whoever finds them

    def on_key(self, event: events.Key) -> None:
        """Keys typed right behind one that opened a dialog (or History's filter) were queued for
        the widget that had the focus then; they reach the app's bindings after the dialog is up,
        and belong to it ("t" then "best" had lost "best"; "/" then "method" opened the export
        dialog on "e"). They go to the focused widget now, in the order typed: enter too, which
        would have submitted the dialog before the keys it follows reached its text box."""
        via = getattr(event, "via_screen", None)
        if via is None or not self.screen_stack:  # no screen: the app is closing
            return
        if via is not self.screen or event.via_focus is not self.focused:
            event.stop()
            event.prevent_default()
            (self.focused or self.screen)._forward_event(events.Key(event.key, event.character))

    async def on_mount(self) -> None:
        self.device_label = self.machine
        # Every mode is mounted up front: runs can open dashboard tabs any time, and the CSS of
        # every widget is parsed once here instead of stalling the first visit to a mode.
        for mode in ("history", "dashboard", self.start_mode):
            await self.switch_mode(mode)
        # A full collection walks every object the app holds (130k+ once a dashboard is drawn,
        # mostly Textual's cached strips) and stalls the UI for 100 ms or more. Whatever survives
        # one is alive, so it is frozen: the next full collection walks only what came since.
        gc.freeze()
        gc.callbacks.append(self._freeze_survivors)
        self.detect_device()
        self.index_stamp = self.manager.index_stamp()
        self.reattach(startup=True)

    @staticmethod
    def _freeze_survivors(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()

    @staticmethod
    def thaw() -> None:
        """Widgets just removed (a closed tab) may be cycles among frozen objects: let the next
        full collection see everything once."""
        gc.unfreeze()

    # -- workers ---------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="device", exit_on_error=False)
    def detect_device(self) -> None:
        self.gpus = gpu_names()
        self.machine = machine_device(self.gpus)
        self.call_from_thread(self.refresh_header)

    @work(thread=True, group="reattach", exit_on_error=False)
    def reattach(self, startup: bool = False) -> None:
        try:
            found, crashed = self.manager.running_elsewhere()
        except (OSError, ValueError) as exc:  # the index locked too long, a folder unreadable: the next look may do
            found, crashed = [], []
            if startup:
                self.call_from_thread(self.show_error, "could not look for running runs", str(exc))
        self.call_from_thread(self._reattached, found, crashed, startup)

    def watch_runs(self) -> None:
        """A run that another process starts or resumes on this host gets a tab too: each writes
        the index as it begins, so a changed index (two stats) is what sends a look."""
        stamp = self.manager.index_stamp()
        if stamp != self.index_stamp and all(w.is_finished for w in self.workers if w.group == "reattach"):
            self.index_stamp = stamp
            self.reattach()

    async def _reattached(self, found: list[Attachable], crashed: list[str], startup: bool) -> None:
        attached = [(handle, item.resumed) for item in found if (handle := self.manager.attach(item)) is not None]
        if startup and attached:
            await self.switch_mode("dashboard")
            for i, (handle, _) in enumerate(attached):
                await self.dashboard.open_run(handle, activate=i == 0)
            self.notify(f"Re-attached to {counted(len(attached), 'running run')}.")
        elsewhere = [] if startup else attached
        for handle, _ in elsewhere:  # beside the tab in view, which stays
            await self.dashboard.reopen_run(handle, activate=False)
        if elsewhere:  # one toast for the runs a sweep started at once, not one each
            self.notify("\n".join(f"{literal(handle.model.name)} ({handle.run_id}) was "
                                  f"{'resumed' if resumed else 'started'} by another process: "
                                  f"{'its tab follows it' if resumed else 'it has a tab'} in the Dashboard."
                                  for handle, resumed in elsewhere),
                        title="Run on this machine" if len(elsewhere) == 1 else "Runs on this machine")
            self.say_shared_cpu(elsewhere[-1][0])
        if retired := await self.dashboard.retire_unseen():
            self.notify(f"Closed the tabs of {counted(len(retired), 'ended run')} you had not looked at "
                        f"({literal(', '.join(retired))}): History has them.", title="Runs on this machine")
        if crashed:
            self.notify("Marked crashed (process gone): " + ", ".join(crashed), severity="warning", timeout=8)
        if startup:
            self.started = True
            self.get_screen("history").reload()
            self.set_interval(WATCH_S, self.watch_runs)
        self.refresh_header()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.show_worker_error(event.worker)

    def show_worker_error(self, worker: Worker) -> None:
        error = worker.error
        self.show_error(f"{worker.name or 'background task'} failed", f"{type(error).__name__}: {error}")

    def dismiss_notifications(self, title: str) -> None:
        """Take down the toasts titled `title` before their time. Textual has no public call for
        one toast (a click on it makes this private one); the launch tests would catch a change."""
        for notification in [n for n in self._notifications if n.title == title]:
            self._unnotify(notification)

    def show_error(self, title: str, message: str) -> None:
        self.push_screen(ErrorDialog(title, message))

    # -- runs ------------------------------------------------------------------------------------

    @property
    def dashboard(self) -> DashboardScreen:
        return self.get_screen("dashboard")  # type: ignore[return-value]

    async def launch(self, preset: Path, sets: list[str]) -> RunHandle | None:
        try:
            handle = self.manager.launch(preset, sets)
        except OSError as exc:  # no fork, no disk: say so, keep the app
            self.show_error(f"could not start {preset.stem}", str(exc))
            return None
        await self.switch_mode("dashboard")
        await self.dashboard.open_run(handle)
        self.refresh_header()
        self.say_shared_cpu(handle)
        return handle

    def say_shared_cpu(self, started: RunHandle) -> None:
        """Runs on one CPU split its cores between them, each slower than alone: said once a second
        one starts (on a machine with a GPU, a run goes there; its CPU is the data's)."""
        others = [h for h in self.manager.active() if h is not started]
        if others and self.gpus == []:
            self.dismiss_notifications("Shared CPU")  # the newest count says it: toasts piled up over the screen
            self.notify(f"{counted(len(others) + 1, 'run')} now share this {cpu_name()}: each goes slower than it "
                        "would alone", title="Shared CPU", severity="warning", timeout=8)

    async def resume(self, run_id: str) -> None:
        """`fbt run --resume` in a subprocess, in a fresh tab that tails the run from its start."""
        try:
            handle = self.manager.resume(run_id)
        except (RunNotFound, OSError, ValueError) as exc:  # gone, or no fork
            self.show_error(f"cannot resume run {run_id}", str(exc))
            return
        await self.switch_mode("dashboard")
        await self.dashboard.reopen_run(handle)  # its view tailed the stopped segment's handle
        self.refresh_header()
        self.say_shared_cpu(handle)

    async def open_run(self, run_id: str) -> None:
        try:
            handle = self.manager.open(run_id)
        except (RunNotFound, OSError, ValueError) as exc:  # gone or unreadable since it was listed
            self.show_error(f"cannot open run {run_id}", str(exc))
            return
        await self.switch_mode("dashboard")
        await self.dashboard.open_run(handle)
        self.refresh_header()

    def refresh_header(self) -> None:
        active = self.manager.active()
        self.active_runs = len(active)
        named = [name for h in active if (name := h.model.device_name())]
        self.device_label = named[0] if named else self.machine

    @while_running
    def on_run_updated(self, message: RunUpdated) -> None:
        self.manager.acknowledge(message.run_id)
        handle = self.manager.handles.get(message.run_id)
        if handle is not None:
            self.dashboard.relabel(handle)
            self.dashboard.run_updated(handle)
        self.refresh_header()

    @while_running
    async def on_run_ended(self, message: RunEnded) -> None:
        if message.status == "cancelled":  # stopped before its run folder existed: nothing to show
            await self.dashboard.close_run(message.run_id)
            self.manager.forget(message.run_id)
        handle = self.manager.handles.get(message.run_id)
        if handle is not None:
            self.dashboard.relabel(handle)
            # its status was shown before its process exited, and only an exited run offers u (resume)
            self.dashboard.refresh_bindings()
            severity = "information" if message.status in ("finished", "interrupted", "cancelled") else "error"
            self.notify(f"{literal(handle.model.name or message.run_id)}: {message.status}", severity=severity)
        self.refresh_header()
        self.get_screen("history").reload()

    @while_running
    async def on_launch_failed(self, message: LaunchFailed) -> None:
        if not message.kept:  # a launch that made no run: nothing for its tab to show
            await self.dashboard.close_run(message.run_id)
            self.manager.forget(message.run_id)
        self.refresh_header()
        what = (f"run {message.run_id} did not resume" if message.kept
                else f"{message.preset or 'the run'} did not start")
        self.show_error(f"{what} (exit {message.code})", message.errors)

    @while_running
    def on_tail_failed(self, message: TailFailed) -> None:
        self.show_error(f"lost track of run {message.run_id}", message.error)

    # -- modes, help, quit -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("mode", "help", "command_palette") and isinstance(self.screen, ModalScreen):
            return False  # a dialog is answered first (a launch from a palette over it piled a second on it)
        return True

    async def action_mode(self, mode: str) -> None:
        await self.switch_mode(mode)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        active = self.manager.active()
        if not active:
            self.exit(0)
            return
        self.push_screen(QuitDialog(len(active)), self._quit_answer)

    def _quit_answer(self, answer: str | None) -> None:
        if answer == "leave":
            self.exit(0)
        elif answer == "stop":
            self.notify("Stopping runs: each finishes its step and saves…", timeout=30)
            self.stop_runs_and_exit()

    @work(thread=True, exclusive=True, group="quit", exit_on_error=False)
    def stop_runs_and_exit(self) -> None:
        self.manager.stop_all()
        self.call_from_thread(self.exit, 0)

    def cleanup(self) -> None:
        """Tail threads and helper processes end with the app; runs do not."""
        if self._freeze_survivors in gc.callbacks:
            gc.callbacks.remove(self._freeze_survivors)
        gc.unfreeze()
        self.manager.shutdown()
        self.end_helpers()

    def end_helpers(self) -> None:
        for proc in list(self.helpers):
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:  # stuck in the kernel: it goes when it can
                    pass
        self.helpers.clear()

    def exit(self, *args: Any, **kwargs: Any) -> None:
        """A helper's worker thread waits on its process, and the app's shutdown on its workers:
        the process ends first (a parameter count importing torch held a quit for ~3 s)."""
        self.end_helpers()
        super().exit(*args, **kwargs)

    # -- command palette -------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            # Textual's own keys panel lists none of fbt's screens' keys, and esc does not close it
            yield SystemCommand("Keys", "every key of every screen (?)", self.action_help) \
                if command.title == "Keys" else command
        for mode, text in (("presets", "pick, edit and launch presets"), ("dashboard", "live runs"),
                           ("history", "every run: compare, export, tag, trash")):
            yield SystemCommand(f"Go to {mode}", text, partial(self.action_mode, mode))
        for handle in self.manager.active():
            name = f"{handle.model.name} ({handle.run_id})"
            yield SystemCommand(f"Stop run {name}", "finish the step, save, exit", partial(self.confirm_stop, handle))
        for handle in self.manager.handles.values():
            name = f"{handle.model.name} ({handle.run_id})"
            yield SystemCommand(f"Show run {name}", "its dashboard tab", partial(self.open_run, handle.run_id))
            if DashboardScreen.resumable(handle):
                yield SystemCommand(f"Resume run {name}", f"it stopped ({handle.model.status}): go on from its "
                                    "checkpoint", partial(self.resume, handle.run_id))
        yield from self.get_screen("presets").commands()
        if isinstance(screen, HistoryScreen):
            yield from screen.commands()

    def confirm_launch(self, preset: Path, name: str) -> None:
        """A palette launch asks first: a typed word can fuzzy-match any preset (a paper one: hours,
        a download), and a command's enter would otherwise start it unseen."""
        async def answer(yes: bool | None) -> None:
            if yes:
                await self.launch(preset, [])

        self.push_screen(ConfirmDialog(launch_question(preset, name), yes="Launch"), answer)

    def confirm_stop(self, handle: RunHandle) -> None:
        """Stop a run, asked first (its tab's s and the palette alike)."""
        rid = handle.run_id

        def answer(yes: bool | None) -> None:
            if yes and self.manager.stop(rid):
                self.notify(f"Stopping {rid}: it finishes its step, saves and exits.")
                self.dashboard.run_updated(handle)  # its status line says so at once

        named = f"{handle.model.name} ({rid})" if handle.model.name else rid  # its name, as its tab shows it
        self.push_screen(ConfirmDialog(f"Stop run {named}?\nIt saves its last checkpoint; u in its tab resumes "
                                       f"it (headless: fbt run --resume {rid})", yes="Stop"), answer)


def launch_question(preset: Path, name: str) -> str:
    """What launching a preset as written would do, read as Presets' preview reads it (no torch)."""
    resolved = collect(preset)
    cfg, wrong = resolved.config, spoiled(resolved.problems)

    def shown(key: str, value: object) -> str:
        return "?" if wrong(key) else str(value)  # not the schema's default its config holds there

    teacher = shown("teacher.model", cfg.teacher.model) if cfg.method.needs_teacher else "(none)"
    epochs = f"{shown('train.epochs', cfg.train.epochs)} epochs"
    if trains_teacher(cfg):
        epochs += f" (+ {shown('teacher.recipe.epochs', cfg.teacher.recipe.epochs)} teacher epochs, unless cached)"
    lines = [f"Launch preset {name} as written?",
             f"teacher {teacher} → student {shown('student.model', cfg.student.model or '?')}",
             f"method {shown('method.name', cfg.method.name)} · {epochs}", f"data {shown('data.name', cfg.data.name)}"]
    if (target := download_target(cfg.data.name, cfg.data.root, cfg.data.download)) is not None:
        lines[-1] += f": downloaded into {target} as it starts (needs the internet)"
    if resolved.problems:  # launched anyway on yes: the engine's own error then says it in full
        lines.append(f"{counted(len(resolved.problems), 'problem')}: "
                     + "; ".join(f"{p.key}: {p.message}" for p in resolved.problems[:3]))
    return "\n".join(lines)


def run_app() -> int:
    app = FbtApp()
    try:
        result = app.run()
    finally:
        app.cleanup()
    return int(result or 0)
