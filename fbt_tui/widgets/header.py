"""The one-line header every mode shows: the modes (clickable), the device, the active runs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

MODES = (("presets", "p", "Presets"), ("dashboard", "d", "Dashboard"), ("history", "h", "History"))


class FbtHeader(Horizontal):
    def __init__(self, mode: str):
        super().__init__(id="header")
        self.mode = mode

    def compose(self) -> ComposeResult:
        yield Static("fbt", id="brand")
        tabs = []
        for mode, key, label in MODES:
            style = "reverse bold" if mode == self.mode else "dim"
            tabs.append(f"[@click=app.mode('{mode}')][{style}] {key} {label} [/][/]")
        yield Static(" ".join(tabs), id="modes")
        yield Static(id="machine")

    def on_mount(self) -> None:
        self.watch(self.app, "device_label", self._update)
        self.watch(self.app, "active_runs", self._update)

    def _update(self, _=None) -> None:
        active = self.app.active_runs
        runs = "[b $success]● 1 run active[/]" if active == 1 else (
            f"[b $success]● {active} runs active[/]" if active else "[dim]no run active[/]")
        self.query_one("#machine", Static).update(f"{self.app.device_label}  {runs}")
