"""Where and how to export: metrics as CSV/JSON/JSONL/Markdown, or the student's weights."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from fbt_engine.store.export import BEST_STEM, STUDENT_FILES, student_paths
from fbt_engine.store.runs import RunNotFound, RunStore

from fbt_tui.widgets.typed import TypedInput

FILES_NOTE = " (.safetensors + sidecar .toml)"  # left out of an entry that says why it is off: one line holds that
FORMATS = (("csv", "CSV: every logged step, each epoch's validation", ".csv"),
           ("json", "JSON: summary, config, steps, epochs, stages", ".json"),
           ("jsonl", "JSONL: the events", ".jsonl"), ("md", "Markdown: summary and epochs", ".md"),
           ("student", "student weights, last epoch" + FILES_NOTE, ".safetensors"),
           ("student_best", "student weights, best epoch" + FILES_NOTE, ".safetensors"))
SUFFIX = {key: suffix for key, _, suffix in FORMATS}
STUDENT_WEIGHTS = {"student": "final", "student_best": "best"}  # the formats that export the student's weights


@dataclass(frozen=True)
class ExportRequest:
    run_ids: list[str]
    format: str
    path: str


def weights_missing(store: RunStore, run_id: str) -> tuple[str, dict[str, str]]:
    """The run's name, and why it cannot give each weights format it lacks (the file is written
    when the run finishes; an older fbt kept no best ones), to say so before it is picked."""
    try:
        folder, meta = store.run_dir(run_id), store.read_meta(run_id)
    except (RunNotFound, OSError, ValueError):  # gone or unreadable since History listed it
        return "", {key: "the run's folder is gone" for key in STUDENT_WEIGHTS}
    status = str(meta.get("status", "running"))
    why = ("written when the run finishes" if status == "running" else "this run kept none" if status == "finished"
           else "none: the run " + {"interrupted": "was interrupted", "failed": "failed", "crashed": "crashed"}.get(
               status, "did not finish"))
    return str(meta.get("name") or ""), {key: why for key, which in STUDENT_WEIGHTS.items()
                                          if not (folder / STUDENT_FILES[which]).is_file()}


class FormatSet(RadioSet):
    """The formats: ↑↓ pick one (as a radio group does: tab then edits the path of the format
    shown, not of one merely highlighted), enter exports (the button says "Export (enter)"; an
    enter that only picked looked like nothing happened)."""

    BINDINGS = [Binding("enter", "export", "Export", show=False)]  # space stays RadioSet's toggle

    class Picked(Message):
        """Enter on a format, the one already on included (RadioSet posts no Changed then). It
        carries the format because Changed for a newly pressed button arrives after it."""

        def __init__(self, format: str):
            super().__init__()
            self.format = format

    def action_next_button(self) -> None:
        super().action_next_button()
        self._press_highlighted()

    def action_previous_button(self) -> None:
        super().action_previous_button()
        self._press_highlighted()

    def _press_highlighted(self) -> RadioButton | None:
        # the highlighted button, found as RadioSet's own toggle finds it (pressed_button lags: Changed is async)
        button = self.children[self._selected] if self._selected is not None else None
        if not isinstance(button, RadioButton) or button.disabled:
            return None
        button.value = True
        return button

    def action_export(self) -> None:
        if (button := self._press_highlighted()) is not None:
            self.post_message(self.Picked(button.name or "csv"))


class ExportDialog(ModalScreen[ExportRequest | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, run_ids: list[str], folder: Path | None = None):
        super().__init__(classes="dialog")
        self.run_ids = run_ids
        self.folder = folder or Path.cwd()  # the last export's, in this app
        self.format = "csv"
        self.replace: tuple[str, str] | None = None  # the format and path whose files a next enter replaces
        self.said_of = ""  # the path the message under it is about
        self.name_stem = ""
        self.missing: dict[str, str] = {}  # weights format → why this run cannot give it
        if len(run_ids) == 1:
            store = RunStore()
            try:
                name, self.missing = weights_missing(store, run_ids[0])
            finally:
                store.close()
            # the weights are taken away: their file goes by the run's name (tui1.safetensors), where it has one
            safe = re.sub(r"[^\w.\-]+", "_", name).strip("._")
            self.name_stem = safe if safe != run_ids[0] else ""

    def compose(self) -> ComposeResult:
        what = self.run_ids[0] if len(self.run_ids) == 1 else f"{len(self.run_ids)} runs"
        with Vertical(classes="dialog-box"):
            yield Label(f"Export {what}", classes="dialog-title")
            with FormatSet(id="export-format"):
                for key, text, _ in FORMATS:
                    why = ("one run at a time" if key in STUDENT_WEIGHTS and len(self.run_ids) > 1 else
                           self.missing.get(key, ""))
                    label = f"{text.replace(FILES_NOTE, '')} — {why}" if why else text
                    yield RadioButton(label, value=key == self.format, name=key, disabled=bool(why))
            yield Label("to file", classes="dialog-help")
            # reached with tab from the formats: the cursor at the end, so that a key edits the path
            yield TypedInput(str(self.folder / f"{self._stem(self.format)}{SUFFIX[self.format]}"), id="export-path",
                             select_on_focus=False)
            yield Static("", id="export-error", markup=False)  # paths as typed
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def _stem(self, fmt: str) -> str:
        """The file name a format gets by default, without its suffix."""
        if len(self.run_ids) > 1:
            return f"fbt-{len(self.run_ids)}-runs"
        which = STUDENT_WEIGHTS.get(fmt)
        return ((self.name_stem if which else "") or self.run_ids[0]) + (BEST_STEM if which == "best" else "")

    def on_mount(self) -> None:
        self.query_one("#export-error").display = False
        self.query_one("#export-format", FormatSet).focus()  # ↑↓ then enter: exports to the file shown

    @on(RadioSet.Changed)
    def _changed(self, event: RadioSet.Changed) -> None:
        self._use_format(event.pressed.name or "csv")

    def _use_format(self, fmt: str) -> None:
        """The path follows the format: its suffix, `_best` for the best weights, and a default
        name becomes the new format's default; a name the user typed stays."""
        if fmt == self.format:  # also Changed arriving after enter already took it (and maybe closed the dialog)
            return
        box = self.query_one("#export-path", Input)
        path = Path(box.value)
        if path.name:
            stem = path.stem
            if stem in {self._stem(key) for key in SUFFIX}:
                stem = self._stem(fmt)
            else:
                stem = stem.removesuffix(BEST_STEM) + (BEST_STEM if STUDENT_WEIGHTS.get(fmt) == "best" else "")
            box.value = str(path.with_name(stem + SUFFIX[fmt]))
            box.cursor_position = len(box.value)
        self.format = fmt

    @on(FormatSet.Picked)
    def _picked(self, event: FormatSet.Picked) -> None:
        self._use_format(event.format)
        self._done()

    @on(Input.Changed)
    def _edited(self, event: Input.Changed) -> None:
        if event.value.strip() != self.said_of:  # the message was said of the path before this edit
            self.query_one("#export-error").display = False
            self.replace = None

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

    def _files(self, target: Path) -> list[Path]:
        """What the export writes: the weights (always .safetensors) and their sidecar, or one file."""
        return list(student_paths(target)) if self.format in STUDENT_WEIGHTS else [target]

    def _say(self, path: str, text: str, warning: bool = False) -> None:
        self.said_of = path
        shown = self.query_one("#export-error", Static)
        shown.update(text)
        shown.set_class(warning, "-warning")
        shown.display = True

    def _done(self) -> None:
        path = self.query_one("#export-path", Input).value.strip()
        target = Path(path).expanduser() if path else None
        problem = ("give a file name" if target is None else
                   "that is a folder; give a file name" if target.is_dir() else
                   # no folders are made: a mistyped one would appear wherever the typo pointed (/ included)
                   f"there is no folder {target.parent}: give a path in one that exists"
                   if not target.parent.is_dir() else "")
        if problem or target is None:
            self._say(path, f"✗ {problem}")
            self.query_one("#export-path", Input).focus()
            return
        existing = [f.name for f in self._files(target) if f.exists()]
        if existing and self.replace != (self.format, path):  # default names repeat (fbt-2-runs.csv)
            self.replace = (self.format, path)
            verb = "exists" if len(existing) == 1 else "exist"
            self._say(path, f"! {' and '.join(existing)} {verb}: enter again to replace "
                      f"{'it' if len(existing) == 1 else 'them'}", warning=True)
            return
        self.dismiss(ExportRequest(self.run_ids, self.format, path))
