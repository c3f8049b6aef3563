"""Small modal dialogs: error, confirm, quit, one-line prompt. Each dismisses with its answer."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from fbt_tui.widgets.typed import TypedInput


class ErrorDialog(ModalScreen[None]):
    """Where every error the user should see ends up, instead of a traceback."""

    BINDINGS = [Binding("escape,enter", "dismiss", "Close")]

    def __init__(self, title: str, message: str):
        super().__init__(classes="dialog error")
        self.title_text, self.message = title, message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(self.title_text, markup=False, classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(self.message, markup=False, id="error-message")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", variant="primary", id="ok")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "answer(False)", "No"), Binding("y", "answer(True)", "Yes")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "Cancel"):
        super().__init__(classes="dialog")
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static(self.question, classes="dialog-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button(f"{self.no} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")


class QuitDialog(ModalScreen[str | None]):
    """Quitting with runs active: leave them running (they keep their own session) or stop them."""

    BINDINGS = [Binding("l", "answer('leave')", "Leave running"), Binding("s", "answer('stop')", "Stop runs"),
                Binding("escape", "answer(None)", "Cancel")]

    def __init__(self, active: int):
        super().__init__(classes="dialog")
        self.active = active

    def compose(self) -> ComposeResult:
        runs = "1 run is" if self.active == 1 else f"{self.active} runs are"
        with Vertical(classes="dialog-box"):
            yield Label("Quit fbt", classes="dialog-title")
            them, each = ("it", "it saves") if self.active == 1 else ("them", "each saves")
            yield Static(f"{runs} still going. Leave {them} running (fbt re-attaches next time), "
                         f"or stop {them} ({each} its last checkpoint)?", classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Leave running (l)", variant="primary", id="leave")
                yield Button("Stop and quit (s)", variant="error", id="stop")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "cancel" else event.button.id)


class PromptDialog(ModalScreen[str | None]):
    """One line of text. `check` says what is wrong with an answer (None when nothing is): the
    dialog then stays, with the answer as typed and the reason under it, to be mended in place."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "", help: str = "",
                 check: Callable[[str], str | None] | None = None):
        super().__init__(classes="dialog")
        self.title_text, self.value, self.placeholder, self.help = title, value, placeholder, help
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(self.title_text, markup=False, classes="dialog-title")
            if self.help:
                yield Static(self.help, classes="dialog-help", markup=False)
            yield TypedInput(self.value, placeholder=self.placeholder, id="prompt")
            yield Static("", markup=False, id="prompt-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#prompt-problem").display = False

    def answer(self, value: str) -> None:
        problem = self.check(value) if self.check is not None else None
        shown = self.query_one("#prompt-problem", Static)
        shown.update(f"✗ {problem}" if problem else "")
        shown.display = bool(problem)
        if problem is None:
            self.dismiss(value)
        else:
            self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#prompt-problem").display = False  # said of the answer before this edit

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.answer(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.answer(self.query_one(Input).value)
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
