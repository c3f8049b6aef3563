"""Where and how to export: metrics as CSV/JSON/JSONL/Markdown, or the student's weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from fbt_engine.store.export import BEST_STEM

FORMATS = (("csv", "CSV: every logged step, each epoch's validation", ".csv"),
           ("json", "JSON: summary, config, steps, epochs, stages", ".json"),
           ("jsonl", "JSONL: the events", ".jsonl"), ("md", "Markdown: summary and epochs", ".md"),
           ("student", "student weights, last epoch (.safetensors + sidecar .toml)", ".safetensors"),
           ("student_best", "student weights, best epoch (.safetensors + sidecar .toml)", ".safetensors"))
SUFFIX = {key: suffix for key, _, suffix in FORMATS}
STUDENT_WEIGHTS = {"student": "final", "student_best": "best"}  # the formats that export the student's weights


@dataclass(frozen=True)
class ExportRequest:
    run_ids: list[str]
    format: str
    path: str


class FormatSet(RadioSet):
    """A RadioSet that says when enter or space picks a button, the one already on included (no
    Changed then): the dialog moves on to the file name."""

    class Picked(Message):
        pass

    def action_toggle_button(self) -> None:
        super().action_toggle_button()
        self.post_message(self.Picked())


class ExportDialog(ModalScreen[ExportRequest | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, run_ids: list[str]):
        super().__init__(classes="dialog")
        self.run_ids = run_ids
        self.format = "csv"

    def compose(self) -> ComposeResult:
        what = self.run_ids[0] if len(self.run_ids) == 1 else f"{len(self.run_ids)} runs"
        with Vertical(classes="dialog-box"):
            yield Label(f"Export {what}", classes="dialog-title")
            with FormatSet(id="export-format"):
                for key, text, _ in FORMATS:
                    one_run_only = key in STUDENT_WEIGHTS and len(self.run_ids) > 1
                    yield RadioButton(text + (" — one run at a time" if one_run_only else ""), value=key == self.format,
                                      name=key, disabled=one_run_only)
            yield Label("to file", classes="dialog-help")
            # reached with enter from the formats: the cursor at the end, so that a key edits the path
            yield Input(str(Path.cwd() / f"{self._stem()}.csv"), id="export-path", select_on_focus=False)
            yield Static("", id="export-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def _stem(self) -> str:
        return self.run_ids[0] if len(self.run_ids) == 1 else f"fbt-{len(self.run_ids)}-runs"

    def on_mount(self) -> None:
        self.query_one("#export-error").display = False
        self.query_one("#export-format", FormatSet).focus()  # ↑↓ and enter pick a format, then the file

    @on(RadioSet.Changed)
    def _format(self, event: RadioSet.Changed) -> None:
        self.format = event.pressed.name or "csv"
        box = self.query_one("#export-path", Input)
        path = Path(box.value)
        stem = path.stem.removesuffix(BEST_STEM) + (BEST_STEM if STUDENT_WEIGHTS.get(self.format) == "best" else "")
        box.value = str(path.with_name(stem + SUFFIX[self.format])) if path.name else box.value
        box.cursor_position = len(box.value)

    @on(FormatSet.Picked)
    def _picked(self) -> None:
        self.query_one("#export-path", Input).focus()  # the next enter exports

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._done()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._done()
        else:
            self.dismiss(None)

    def _done(self) -> None:
        path = self.query_one("#export-path", Input).value.strip()
        error = self.query_one("#export-error", Static)
        target = Path(path).expanduser() if path else None
        problem = ("give a file name" if target is None else
                   "that is a folder; give a file name" if target.is_dir() else "")
        if problem:
            error.update(f"✗ {problem}")
            error.display = True
            return
        self.dismiss(ExportRequest(self.run_ids, self.format, path))
