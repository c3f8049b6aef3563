"""`?`: every key, read from the bindings themselves so the list can never go stale."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.keys import format_key
from textual.screen import ModalScreen
from textual.widgets import Label, Static
from textual_plot import PlotWidget


EXTRA = {
    "Everywhere": [("ctrl+p", "command palette: run actions, launch a preset, go to a mode"),
                   ("tab / shift+tab", "move between widgets")],
    "Presets": [("↑ ↓", "choose a preset"), ("tab", "into the form; edits validate as you type")],
    "Dashboard": [("[ ]", "where the terminal is too small for every panel: one at a time, the plots, then the "
                          "alignment table, then the engine log")],
    "History": [("click a header", "sort by that column (again: reverse)"),
                ("/ then text", "words match anywhere; status:crashed, tag:best, method:fbt narrow down")],
}
# the bound keys that an EXTRA row describes better, as _key_label writes them: listed once
SAID_IN_EXTRA = {"Dashboard": {"[", "]"}, "History": {"/"}}


def _key_label(keys: str) -> str:
    """"ctrl+equals_sign,escape" as a person types it: "ctrl+= / esc"."""
    def one(key: str) -> str:
        *modifiers, name = key.strip().split("+")
        return "+".join([*modifiers, format_key(name)])
    return " / ".join(one(k) for k in keys.split(","))


def _rows(bindings: list[BindingType]) -> list[tuple[str, str]]:
    rows = []
    for b in bindings:
        if isinstance(b, Binding) and b.description:
            rows.append((_key_label(b.key), b.description))
        elif isinstance(b, tuple) and len(b) >= 3:
            rows.append((_key_label(b[0]), b[2]))
    return rows


def _key_table(rows: list[tuple[str, str]]) -> Table:
    """Keys right-aligned in a column of their own: a long description wraps within its column."""
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", min_width=18, style="bold", no_wrap=True)
    table.add_column(ratio=1)
    for key, text in rows:
        table.add_row(Text(key), Text(text))
    return table


def sections() -> list[tuple[str, list[tuple[str, str]]]]:
    from fbt_tui.app import FbtApp
    from fbt_tui.screens.compare import CompareScreen
    from fbt_tui.screens.dashboard import DashboardScreen
    from fbt_tui.screens.history import HistoryScreen
    from fbt_tui.screens.presets import PresetsScreen

    return [
        ("Everywhere", _with_extra(FbtApp.BINDINGS, "Everywhere")),
        ("Presets", _with_extra(PresetsScreen.BINDINGS, "Presets")),
        ("Dashboard", _with_extra(DashboardScreen.BINDINGS, "Dashboard")),
        ("Plots (when focused)", _rows(PlotWidget.BINDINGS)),
        ("History", _with_extra(HistoryScreen.BINDINGS, "History")),
        ("Compare", _rows(CompareScreen.BINDINGS)),
    ]


def _with_extra(bindings: list[BindingType], section: str) -> list[tuple[str, str]]:
    """A screen's keys, less those an EXTRA row of it says more of (SAID_IN_EXTRA)."""
    said = SAID_IN_EXTRA.get(section, set())
    return [row for row in _rows(bindings) if row[0] not in said] + EXTRA[section]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box help"):
            yield Label("Keys  [dim](esc closes)[/]", classes="dialog-title")
            with VerticalScroll():
                for title, rows in sections():
                    yield Label(title, classes="section-title")
                    yield Static(_key_table(rows))
