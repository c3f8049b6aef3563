"""The screen's keys on one line, clickable. Textual's Footer rebuilds a widget per key on every
screen switch (~70 ms here); this is one Static whose text changes when the bindings do."""

from __future__ import annotations

from rich.cells import cell_len
from textual.widgets import Static

from fbt_tui.format import literal


class KeyBar(Static):
    """The screen's keys, then the app's (?, q, the palette). Where they do not fit, the screen's
    last keys give way, never the app's: "?" lists them all."""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._show)
        self._show()

    def on_resize(self) -> None:
        self._show()

    def _show(self, _=None) -> None:
        own: list[tuple[str, str]] = []  # (markup, plain text) of each key
        app_keys: list[tuple[str, str]] = []
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            # the header lists and switches the modes; here they pushed the screen's keys off 160 columns
            if not binding.show or not binding.description or binding.description in seen \
                    or binding.action.startswith("mode("):
                continue
            seen.add(binding.description)
            shown = self.app.get_key_display(binding)
            label = f"[b]{literal(shown)}[/] {literal(binding.description)}"
            markup = f"[@click=app.simulate_key({key!r})]{label}[/]" if active.enabled else f"[dim]{label}[/]"
            (app_keys if active.node is self.app else own).append((markup, f"{shown} {binding.description}"))
        app_keys.append(("[@click=app.command_palette][b]^p[/] palette[/]", "^p palette"))
        width = self.size.width or 10_000  # before the first layout: everything

        def length(keys: list[tuple[str, str]]) -> int:
            return cell_len("  ".join(text for _, text in keys))

        cut = length([*own, *app_keys]) > width
        while cut and own and length([*own, ("…", "…"), *app_keys]) > width:
            own.pop()
        parts = [markup for markup, _ in own] + (["…"] if cut else []) + [markup for markup, _ in app_keys]
        self.update("  ".join(parts))
