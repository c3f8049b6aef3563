"""Pick a model by name from everything timm (and fbt) can build, filtered as you type."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from fbt_engine.models.names import known_model_names, own_model_names

from fbt_tui.widgets.typed import TypedInput

MAX_SHOWN = 300


def matching(query: str) -> list[str]:
    """fbt's own small models first, then timm's; every word of the query must appear."""
    words = query.lower().split()
    own = sorted(own_model_names())
    rest = sorted(known_model_names() - set(own))
    return [n for n in own + rest if all(w in n.lower() for w in words)]


class ModelPicker(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"),
                Binding("down", "move(1)", show=False), Binding("up", "move(-1)", show=False)]

    def __init__(self, side: str, current: str = ""):
        super().__init__(classes="dialog")
        self.side, self.current = side, current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box picker"):
            yield Label(f"Pick the {self.side} model", classes="dialog-title")
            yield TypedInput(placeholder="filter: e.g. resnet cifar", id="picker-filter")
            yield OptionList(id="picker-list")
            yield Label("", id="picker-count", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._fill("")

    @on(Input.Changed, "#picker-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def _fill(self, query: str) -> None:
        names = matching(query)
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(n, id=n) for n in names[:MAX_SHOWN]])
        if names:
            options.highlighted = names.index(self.current) if self.current in names[:MAX_SHOWN] else 0
        more = f" (first {MAX_SHOWN} shown)" if len(names) > MAX_SHOWN else ""
        self.query_one("#picker-count", Label).update(f"{len(names)} models{more} · enter picks · esc cancels")

    def action_move(self, step: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            options.highlighted = ((options.highlighted or 0) + step) % options.option_count

    @on(Input.Submitted, "#picker-filter")
    def _submit(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None:
            self.dismiss(options.get_option_at_index(options.highlighted).id)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
