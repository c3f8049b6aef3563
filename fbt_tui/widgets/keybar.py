"""The screen's keys on one line, clickable. Textual's Footer rebuilds a widget per key on every
screen switch (~70 ms here); this is one Static whose text changes when the bindings do."""

from __future__ import annotations

from textual.widgets import Static

from fbt_tui.format import literal


class KeyBar(Static):
    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._show)
        self._show()

    def _show(self, _=None) -> None:
        parts, seen = [], set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            # the header lists and switches the modes; here they pushed the screen's keys off 160 columns
            if not binding.show or not binding.description or binding.description in seen \
                    or binding.action.startswith("mode("):
                continue
            seen.add(binding.description)
            label = f"[b]{literal(self.app.get_key_display(binding))}[/] {literal(binding.description)}"
            parts.append(f"[@click=app.simulate_key({key!r})]{label}[/]" if active.enabled else f"[dim]{label}[/]")
        parts.append("[@click=app.command_palette][b]^p[/] palette[/]")
        self.update("  ".join(parts))
