"""Presets mode: built-in and user presets, a preview, pickers and a form for the main settings.

The form validates through the engine's own `collect()` with the edited fields as `--set`
overrides, exactly what `fbt presets validate` and the launched run will see. Only fields that
differ from the preset become overrides.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import tomli_w
from textual import events, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from fbt_engine import paths
from fbt_engine.config.fields import Problem
from fbt_engine.config.presets import (PresetRef, anchored_merge, collect, every_setting, is_error, list_presets,
                                       parse_overrides, spoiled, trains_teacher)
from fbt_engine.config.schema import Config
from fbt_engine.data.catalog import download_target
from fbt_engine.methods.params import METHOD_PARAMS
from fbt_engine.models.names import known_model_names, own_model_names
from fbt_engine.store.export import flatten
from fbt_engine.store.runs import RunStore

from fbt_tui.estimate import ModelSpec, count_in_subprocess, from_past_runs
from fbt_tui.format import count, counted, literal
from fbt_tui.screens.base import FbtScreen
from fbt_tui.screens.dialogs import ConfirmDialog, PromptDialog
from fbt_tui.screens.model_picker import ModelPicker
from fbt_tui.widgets.header import FbtHeader
from fbt_tui.widgets.keybar import KeyBar
from fbt_tui.widgets.typed import BindingsAsTyped, TypedInput

PRESET_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*$")


@dataclass(frozen=True)
class FieldSpec:
    key: str  # dotted preset key
    label: str
    kind: str = "number"  # number | text | model | choice
    choices: tuple[str, ...] = ()


FIELDS = (
    FieldSpec("run.name", "run name", "text"),
    FieldSpec("teacher.model", "teacher", "model"),
    FieldSpec("student.model", "student", "model"),
    FieldSpec("method.name", "method", "choice", tuple(METHOD_PARAMS.names())),
    FieldSpec("train.epochs", "epochs"),
    FieldSpec("teacher.recipe.epochs", "teacher epochs"),
    FieldSpec("data.batch_size", "batch size"),
    FieldSpec("data.subset", "subset (0: all)"),  # under the labels' 16 cells, which hold no gap
    FieldSpec("optim.name", "optimizer", "choice", ("sgd", "adamw")),
    FieldSpec("optim.lr", "learning rate"),
    FieldSpec("optim.weight_decay", "weight decay"),
    FieldSpec("run.seed", "seed"),
    FieldSpec("run.device", "device", "choice", ("auto", "cpu", "cuda")),
)
HELP = {key: meaning for key, _, _, meaning in every_setting()}  # a field label's tooltip: `fbt presets keys`' words
EXTRA = "extra"  # free-form `key=value …` for every other setting
CLOSING = {"[": "]", "{": "}"}


def split_items(text: str) -> tuple[list[str], str | None]:
    """The free-form field's `key=value` items, split at spaces outside quotes and brackets, where
    TOML values hold them (data.root='/my data', optim.betas=[0.9, 0.99]); and what is left
    unclosed, if anything (the item it opens in is left out: split, it would be errors of its own)."""
    items, current, quote, opened = [], "", "", []
    chars = iter(text)
    for ch in chars:
        if quote:
            if ch == "\\" and quote == '"':  # an escape in a TOML basic string: its next char is kept
                ch += next(chars, "")
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in CLOSING:
            opened.append(ch)
        elif opened and ch == CLOSING[opened[-1]]:
            opened.pop()
        elif ch.isspace() and not opened:
            if current:
                items.append(current)
            current = ""
            continue
        current += ch
    if quote or opened:
        return items, f"unclosed {quote or opened[-1]} in {current}: close it"
    return items + ([current] if current else []), None


def dotted(cfg: Config, key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def field_id(key: str) -> str:
    return "f-" + key.replace(".", "-")


class FormSelect(Select[str]):
    """A dropdown of the form that takes the letters typed at it, as a native one does: a letter
    chooses the next option that starts with it. A letter it let pass reached the app's one-key
    bindings: "h" of text meant for another field switched to History, a space marked a run there."""

    def __init__(self, choices: Iterable[str], **kwargs: Any):
        self.choices = list(choices)
        super().__init__([(c, c) for c in self.choices], allow_blank=False, **kwargs)

    def on_key(self, event: events.Key) -> None:
        if self.expanded or not event.is_printable or event.key == "space":  # the open list searches; space opens it
            return
        event.stop()
        here = self.choices.index(self.value) + 1 if self.value in self.choices else 0
        after = self.choices[here:] + self.choices[:here]
        typed = (event.character or "").lower()
        self.value = next((c for c in after if c.lower().startswith(typed)), self.value)


NOT_LAUNCHED = "Not launched"  # the title of a refused launch's toast, taken down by the next launch


class PresetList(BindingsAsTyped, OptionList):
    """The presets, whose cursor keys take effect before a tab typed after them moves on."""


class PresetsScreen(FbtScreen):
    BINDINGS = [
        Binding("enter", "launch", "Launch", show=True),
        Binding("ctrl+s", "save", "Save as user preset"),
        Binding("ctrl+r", "reset", "Reset form"),
        Binding("ctrl+o", "pick_model", "Pick model"),
        # in a field the mode keys (p, d, h, q) are letters; esc gives them back
        Binding("escape", "leave_form", "Back to the preset list", show=False),
        # As priority bindings, tab and shift+tab move the focus when the app reads the key, so
        # that the keys typed after them go to the next field: otherwise the focus moves only once
        # the key has bubbled back up from the field, and keys typed fast go to the field left.
        Binding("tab", "app.focus_next", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", show=False, priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[PresetRef] = []
        self.ref: PresetRef | None = None
        self.base: Config | None = None  # the preset as written, to tell edits from its own values
        # each preset's edits for this session, by its path: moving through the list keeps them
        self.drafts: dict[Path, dict[str, str]] = {}
        self.problems: list[Problem] = []  # errors and this machine's needs, as collect() found them
        self.doubts: list[Problem] = []  # valid values seldom meant (DOUBTS): warned of, never blocking
        self.left_mode = False  # suspended by another mode rather than by a dialog over this screen
        # by models and method: a past run's counts hold its method's own modules (FBT's fusion model)
        self.params_cache: dict[tuple[ModelSpec, str], tuple[dict[str, int], str] | str] = {}

    def compose(self) -> ComposeResult:
        yield FbtHeader("presets")
        with Horizontal(id="presets-body"):
            with Vertical(id="preset-side"):
                yield Label("Presets  [dim]✎=yours •=edited[/]", classes="section-title")
                yield PresetList(id="preset-list")
            with VerticalScroll(id="preset-main", can_focus=False):  # tab goes straight to the fields
                yield Static(id="preview")
                yield Label("Settings  [dim](edits become --set overrides; enter launches)[/]",
                            classes="section-title")
                names = sorted(own_model_names()) + sorted(known_model_names() - set(own_model_names()))
                for spec in FIELDS:
                    with Vertical(classes="form-row", id=field_id(spec.key) + "-row"):
                        with Horizontal(classes="form-line"):
                            label = Label(spec.label, classes="field-label")
                            label.tooltip = f"{spec.key}: {HELP[spec.key]}"
                            yield label
                            if spec.kind == "choice":
                                yield FormSelect(spec.choices, compact=True, id=field_id(spec.key))
                            else:
                                suggester = SuggestFromList(names) if spec.kind == "model" else None
                                yield TypedInput(compact=True, id=field_id(spec.key), suggester=suggester)
                            if spec.kind == "model":
                                pick = Button("pick", compact=True, classes="pick", name=spec.key)
                                pick.can_focus = False  # ctrl+o picks from the keyboard; tab skips it
                                yield pick
                        yield Static(classes="field-error")
                with Vertical(classes="form-row", id="f-extra-row"):
                    with Horizontal(classes="form-line"):
                        extra = Label("more --set", classes="field-label")
                        extra.tooltip = ("any other setting, as key=value items apart by spaces (TOML values); "
                                         "`fbt presets keys` lists every key, its default and meaning")
                        yield extra
                        yield TypedInput(compact=True, id="f-extra",
                                         placeholder="key=value … e.g. train.ema=0.999 data.mixup=0.2")
                    yield Static(classes="field-error")
                yield Static(id="other-problems")
                with Horizontal(id="preset-buttons"):
                    yield Button("Launch (enter)", variant="success", id="launch")
                    yield Button("Save as user preset (ctrl+s)", id="save")
                    yield Button("Reset (ctrl+r)", id="reset")
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.reload_list()

    def on_screen_suspend(self) -> None:
        # a dialog over the form returns to the field it was opened from; another mode does not
        self.left_mode = not isinstance(self.app.screen, ModalScreen)

    def on_screen_resume(self) -> None:
        """Back from another mode, the list has the focus: a field would take p, d and h, which
        brought the user here, as letters of its value (a run name "tui1" became "tui1h")."""
        if self.focused is None or (self.left_mode and isinstance(self.focused, Input)):
            self.query_one("#preset-list", OptionList).focus()

    def reload_list(self, select: str | None = None) -> None:
        """Presets by folder: a folder's name is a heading once, its presets go by their own name,
        a built-in one's "_to_" shown as an arrow so a long pair wraps between teacher and student
        (the preview above the form shows the exact name). Yours go by their name as given: it
        need not name their pair ("cnn_to_mlp_custom" read "cnn → mlp_custom" with a ViT student)."""
        # yours first, then the built-in top level, then each folder under its heading
        self.refs = sorted(list_presets(), key=lambda r: (r.builtin, "/" in r.name, r.name))
        options = self.query_one("#preset-list", OptionList)
        options.clear_options()
        folder = ""
        for i, ref in enumerate(self.refs):
            parent = ref.name.rpartition("/")[0]
            if parent != folder:
                folder = parent
                options.add_option(Option(f"[dim]{literal(parent)}/[/]", disabled=True))
            options.add_option(Option(self._label(ref), id=str(i)))
        names = [r.name for r in self.refs]
        default = select if select in names else "mlp_to_cnn" if "mlp_to_cnn" in names else None
        if default is not None:
            options.highlighted = options.get_option_index(str(names.index(default)))
        options.focus()

    def _label(self, ref: PresetRef) -> str:
        """Its name, "✎" where it is yours, and "•" where the form holds edits of it."""
        name = ref.name.rpartition("/")[2]
        label = literal(name.replace("_to_", " → ")) if ref.builtin else f"[b $accent]✎ {literal(name)}[/]"
        return f"{label} [$warning]•[/]" if ref.path in self.drafts else label

    def _relabel(self, ref: PresetRef) -> None:
        if ref in self.refs:
            self.query_one("#preset-list", OptionList).replace_option_prompt(str(self.refs.index(ref)),
                                                                             self._label(ref))

    # -- loading a preset into the form ----------------------------------------------------------

    @on(OptionList.OptionHighlighted, "#preset-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._keep_draft()
        self.load(self.refs[int(event.option.id)])

    @on(OptionList.OptionSelected, "#preset-list")
    async def _selected(self, event: OptionList.OptionSelected) -> None:
        await self.action_launch()

    def load(self, ref: PresetRef) -> None:
        """The preset into the form, with the edits it had when the list last moved off it."""
        self.ref = ref
        resolved = collect(ref.path)
        self.base = resolved.config
        draft = self.drafts.get(ref.path, {})
        with self.prevent(Input.Changed, Select.Changed):
            for spec in FIELDS:
                value = draft.get(spec.key, as_text(dotted(self.base, spec.key)))
                widget = self.query_one(f"#{field_id(spec.key)}")
                if isinstance(widget, Select):
                    widget.value = value if value in spec.choices else spec.choices[0]
                else:
                    widget.value = value
            self.query_one("#f-extra", Input).value = draft.get(EXTRA, "")
        self.validate_form()

    def _keep_draft(self) -> None:
        """The form's edits of the preset it shows (none: its draft is dropped)."""
        if self.ref is None or self.base is None:
            return
        values = {spec.key: str(self.query_one(f"#{field_id(spec.key)}").value) for spec in FIELDS}
        values[EXTRA] = self.query_one("#f-extra", Input).value
        draft = {key: text for key, text in values.items()
                 if text.strip() != (as_text(dotted(self.base, key)) if key != EXTRA else "")}
        had = self.ref.path in self.drafts
        if draft:
            self.drafts[self.ref.path] = draft
        else:
            self.drafts.pop(self.ref.path, None)
        if had != bool(draft):  # the list's mark changes only then
            self._relabel(self.ref)

    def action_leave_form(self) -> None:
        self.query_one("#preset-list", OptionList).focus()

    def action_reset(self) -> None:
        if self.ref is not None:
            self.drafts.pop(self.ref.path, None)
            self._relabel(self.ref)
            self.load(self.ref)

    # -- validation ------------------------------------------------------------------------------

    def overrides(self) -> list[str]:
        """`--set` items for the fields that differ from the preset, then the free-form ones."""
        if self.base is None:
            return []
        items = []
        for spec in FIELDS:
            widget = self.query_one(f"#{field_id(spec.key)}")
            text = str(widget.value).strip()
            if text == as_text(dotted(self.base, spec.key)) or (spec.kind == "number" and not text):
                continue  # an emptied number is validate_form's to report: the engine would call it bad TOML
            if spec.kind == "number":
                items.append(f"{spec.key}={text}")  # as typed: the engine says what is wrong with it
            else:
                items.append(f"{spec.key}={json.dumps(text)}")
        return items + split_items(self.query_one("#f-extra", Input).value)[0]

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        self._keep_draft()  # the list marks the preset as edited from its first edit, not once left
        self.validate_form()

    def validate_form(self) -> None:
        if self.ref is None:
            return
        resolved = collect(self.ref.path, self.overrides())
        emptied = [spec.key for spec in FIELDS
                   if spec.kind == "number" and not str(self.query_one(f"#{field_id(spec.key)}").value).strip()]
        empty = "empty: type a number (ctrl+r puts the whole preset back as written)"
        keys = {spec.key for spec in FIELDS}
        extra, unclosed = split_items(self.query_one("#f-extra", Input).value)
        nested, own = parse_overrides(extra)  # own: its items that are no key=value or bad TOML
        given = [item.partition("=")[0].strip() for item in extra if "=" in item]
        extra_keys = set(given) | set(flatten(nested))  # train={epochs=3} sets train.epochs too
        labels = {spec.key: spec.label for spec in FIELDS}
        twice = [Problem("--set", key, f"the field “{labels[key]}” above sets this key: change it there")
                 for key in sorted(extra_keys & keys)]
        self.problems = [*resolved.problems, *(Problem("form", key, empty) for key in emptied), *twice,
                         *([Problem("form", EXTRA, unclosed)] if unclosed else [])]
        repeated = sorted({key for key in given if given.count(key) > 1})
        self.doubts = [*resolved.doubts, *(Problem("form", EXTRA, f"{key} is set more than once here: the last counts")
                                          for key in repeated)]
        by_field: dict[str, list[tuple[Problem, str]]] = {}
        others = []
        for p in [*self.problems, *self.doubts]:
            if p.key == EXTRA:
                by_field.setdefault(EXTRA, []).append((p, p.message))
            elif p.key in keys and p.key not in extra_keys and p not in own:
                by_field.setdefault(p.key, []).append((p, p.message))  # (set here too, the value is the last item's)
            elif p.key in extra_keys or p.source == "--set":
                by_field.setdefault(EXTRA, []).append((p, f"{p.key}: {p.message}"))
            else:
                others.append(p)
        for spec in FIELDS:
            self._field_error(f"#{field_id(spec.key)}-row", by_field.get(spec.key, []))
        self._field_error("#f-extra-row", by_field.get(EXTRA, []))
        box = self.query_one("#other-problems", Static)
        box.update("\n".join(self._problem_line(p, str(p)) for p in others))
        box.display = bool(others)
        self.show_preview(resolved.config)

    @property
    def errors(self) -> list[Problem]:
        """What makes the preset invalid. The rest (`environment`) is what this machine lacks to
        run it (a dataset folder, a checkpoint): `fbt presets validate` warns about those."""
        return [p for p in self.problems if is_error(p)]

    def _field_error(self, row: str, problems: list[tuple[Problem, str]]) -> None:
        row_widget = self.query_one(row)
        row_widget.set_class(any(p in self.errors for p, _ in problems), "-invalid")
        error = row_widget.query_one(".field-error", Static)
        error.update("\n".join(self._problem_line(p, text) for p, text in problems))
        error.display = bool(problems)

    def _unused(self, key: str, why: str | None) -> None:
        """A field this config does not read, dimmed, with why on hover (it still takes edits)."""
        self.query_one(f"#{field_id(key)}-row").set_class(why is not None, "-unused")
        self.query_one(f"#{field_id(key)}").tooltip = f"not used: {why}" if why else None

    def _problem_line(self, p: Problem, text: str) -> str:
        if p in self.doubts:
            return f"[$warning]! {literal(text)}[/]"
        if not is_error(p):
            return f"[$warning]! {literal(text)} (needed to run it on this machine)[/]"
        return f"[$error]✗ {literal(text)}[/]"

    # -- preview ---------------------------------------------------------------------------------

    def show_preview(self, cfg: Config) -> None:
        assert self.ref is not None
        wrong = spoiled(self.errors)

        def shown(key: str, value: object) -> str:
            """A value as the run would take it; "?" where the field is wrong (its config holds the
            schema's default there, which neither the preset nor the form said)."""
            return "[b $error]?[/]" if wrong(key) else literal(str(value))

        teacher = cfg.teacher.model if cfg.method.needs_teacher else "(none)"
        source = "built-in" if self.ref.builtin else "user"
        data = shown("data.name", cfg.data.name) + (
            f", subset {shown('data.subset', cfg.data.subset)} (validation: a fifth as many)"
            if cfg.data.subset or wrong("data.subset") else "")
        download = ""
        if (target := download_target(cfg.data.name, cfg.data.root, cfg.data.download)) is not None:
            download = f" [b $warning](downloaded into {literal(str(target))} as it starts: needs the internet)[/]"
        epochs = f"{shown('train.epochs', cfg.train.epochs)} {'distillation' if cfg.method.needs_teacher else 'training'}"
        self._unused("teacher.model", None if cfg.method.needs_teacher else f"{cfg.method.name} uses no teacher")
        self._unused("teacher.recipe.epochs", None if trains_teacher(cfg) else
                     "its teacher is loaded, not trained" if cfg.method.needs_teacher else
                     f"{cfg.method.name} uses no teacher")
        if trains_teacher(cfg):
            epochs += f" (+ {shown('teacher.recipe.epochs', cfg.teacher.recipe.epochs)} teacher, unless cached)"
        spec = ModelSpec.of(cfg)
        key = spec, cfg.method.name
        params = self.params_cache.get(key)
        if any(p.key in ("teacher.model", "student.model", "method.name") for p in self.errors):
            params_text = "[dim]– (fix the models first)[/]"
        elif params is None:
            self.params_cache[key] = "estimating…"
            self.estimate(cfg, key)
            params_text = "[dim]estimating…[/]"
        elif isinstance(params, str):
            params_text = f"[dim]{literal(params)}[/]"
        else:
            counts, origin = params
            params_text = " · ".join(f"{who} {count(counts[who])}" for who in ("teacher", "student", "fusion")
                                     if who in counts) + f"  [dim]({literal(origin)})[/]"
        needs = len(self.problems) - len(self.errors)
        status = f"[b $error]✗ {counted(len(self.errors), 'problem')}[/]" if self.errors else "[b $success]✓ valid[/]"
        if needs and not self.errors:
            status += f" [b $warning]! {counted(needs, 'thing')} missing on this machine[/]"
        if self.doubts and not self.errors:
            status += f" [b $warning]! {counted(len(self.doubts), 'warning')}[/]"
        # short lines, each a whole: beside the list, at 100 columns, the preview has some 66
        lines = [
            f"[b]{literal(self.ref.name)}[/]  {status}",
            # the folder alone: the name above is the rest of the path (a whole path wrapped at 100 columns)
            f"[dim]{source}, in {literal(str(self.ref.path.parents[self.ref.name.count('/')]))}[/]",
            f"teacher  [b]{literal(teacher)}[/]   →   student  [b]{literal(cfg.student.model or '?')}[/]",
            f"method   {shown('method.name', cfg.method.name)}    data  {data}{download}",
            f"epochs   {epochs}",
            f"optim    {shown('optim.name', cfg.optim.name)}    lr  {shown('optim.lr', f'{cfg.optim.lr:g}')}    "
            f"batch  {shown('data.batch_size', cfg.data.batch_size)}",
            f"params   {params_text}",
        ]
        self.query_one("#preview", Static).update("\n".join(lines))

    @work(thread=True, group="params", exit_on_error=False)
    def estimate(self, cfg: Config, key: tuple[ModelSpec, str]) -> None:
        """Past runs first (exact, with the fusion model), else build the models in a subprocess."""
        store = RunStore()
        try:
            past = from_past_runs(store, cfg)
        finally:
            store.close()
        if past is not None:
            result: tuple[dict[str, int], str] | str = (past[0], f"as logged by run {past[1]}")
        else:
            try:
                result = (count_in_subprocess(key[0], self.app.helpers), "estimated")
            except RuntimeError as exc:
                result = f"unknown: {exc}"
        self.params_cache[key] = result
        self.app.call_from_thread(self._estimated)

    def _estimated(self) -> None:
        if self.ref is not None:
            self.validate_form()

    # -- actions ---------------------------------------------------------------------------------

    @on(Input.Submitted)
    async def _submitted(self) -> None:
        await self.action_launch()

    @on(Button.Pressed)
    async def _button(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.has_class("pick"):
            self.pick_model(event.button.name or "student.model")
        elif event.button.id == "launch":
            await self.action_launch()
        elif event.button.id == "save":
            self.action_save()
        elif event.button.id == "reset":
            self.action_reset()

    async def action_launch(self) -> None:
        if self.ref is None:
            return
        self.validate_form()
        if self.errors:
            self.notify(f"{counted(len(self.errors), 'problem')} to fix first; they are shown next to their fields.",
                        title=NOT_LAUNCHED, severity="error")
            return
        if self.problems:  # the engine would stop at once (exit 3): say why without starting it
            self.notify("This machine lacks what the preset needs: "
                        + "; ".join(f"{p.key}: {p.message}" for p in self.problems),
                        title=NOT_LAUNCHED, severity="error", markup=False)  # the messages quote values as typed
            return
        self.app.dismiss_notifications(NOT_LAUNCHED)  # fixed since: it must not cover the new run's log
        await self.app.launch(self.ref.path, self.overrides())

    def action_pick_model(self) -> None:
        focused = self.focused
        key = "teacher.model" if focused is not None and focused.id == field_id("teacher.model") else "student.model"
        self.pick_model(key)

    def pick_model(self, key: str) -> None:
        target = self.query_one(f"#{field_id(key)}", Input)

        def picked(name: str | None) -> None:
            if name:
                target.value = name

        self.app.push_screen(ModelPicker(key.split(".")[0], target.value), picked)

    def action_save(self) -> None:
        if self.ref is None:
            return
        self.validate_form()
        if self.errors:  # what this machine lacks is no reason not to save: presets travel
            self.notify("Fix the problems before saving.", severity="error")
            return
        default = self.ref.name if not self.ref.builtin else f"{self.ref.name}_custom"
        self.app.push_screen(PromptDialog("Save as user preset", default, "name",
                                          f"It goes to {paths.user_presets_dir()}; built-in presets are never "
                                          "overwritten. Its runs are named after it.",
                                          check=self._preset_name_problem), self._save_named)

    def _preset_name_problem(self, answer: str) -> str | None:
        name = answer.strip().removesuffix(".toml")
        if not name:
            return "a preset needs a name"
        if not PRESET_NAME.match(name):
            return f"{name!r} is not a preset name: use letters, digits, _ . -"
        if any(r.builtin and r.name == name for r in self.refs):
            return f"a built-in preset is called {name!r}; built-ins are never overwritten or shadowed"
        return None

    def _save_named(self, name: str | None) -> None:
        if name is None:  # cancelled
            return
        name = name.strip().removesuffix(".toml")
        target = paths.user_presets_dir() / f"{name}.toml"
        if target.exists():
            self.app.push_screen(ConfirmDialog(f"Replace your preset {name!r}?", yes="Replace"),
                                 partial(self._write_preset, target))
        else:
            self._write_preset(target, True)

    def _write_preset(self, target: Path, confirmed: bool | None) -> None:
        if not confirmed or self.ref is None:
            return
        typed_name = str(self.query_one(f"#{field_id('run.name')}", Input).value).strip()
        over, _ = parse_overrides(self.overrides())
        if over.get("run", {}).get("name") == typed_name:  # the form's run name names one launch
            del over["run"]["name"]
        header = f"# saved by fbt from {self.ref.path}\n"
        try:
            table = tomllib.loads(self.ref.path.read_text(encoding="utf-8"))
            # relative paths would start at the new preset's folder: written absolute, as the run sees them
            table = anchored_merge(table, self.ref.path.parent, over)
            run = table.setdefault("run", {})
            if run.get("name", self.ref.path.stem) == self.ref.path.stem:  # named after its preset, as built-ins are
                run["name"] = target.stem
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(header + tomli_w.dumps(table), encoding="utf-8")
        except (OSError, tomllib.TOMLDecodeError) as exc:
            self.app.show_error(f"could not save {target.name}", str(exc))
            return
        self.notify(f"Saved {target}")
        self.drafts.pop(self.ref.path, None)  # its edits live on in the saved preset,
        self.drafts.pop(target, None)  # which shows as written, not with the edits of a preset it replaced
        self.load(self.ref)
        self.reload_list(select=target.stem)

    def commands(self) -> Iterable[SystemCommand]:
        for ref in list_presets():
            yield SystemCommand(f"Launch preset {ref.name}", "as written, no overrides (asks first)",
                                partial(self.app.confirm_launch, ref.path, ref.name))


