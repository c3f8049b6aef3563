"""Widgets whose own keys take effect in the order they were typed (Textual issue #6605)."""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class BindingsAsTyped:
    """A widget whose own bindings run as each key reaches it, in the order the keys were typed.

    Textual runs a widget's binding only once its key has bubbled up to the app through each
    container's message queue (Textual issue #6605). By then a printable key typed later has been
    typed into an Input, and a priority binding typed later (the Presets screen's tab) has run: typed
    fast, `ctrl+a ctrl+k 42` put "42" in first and then erased it, and `down down tab` left the
    preset list before it moved. What runs here is what the app would run, since the focused
    widget's bindings come first there."""

    async def _on_key(self, event: events.Key) -> None:
        if event.is_printable:
            return  # an Input's own handler types it; nothing else here binds one
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()  # the app does not run it again (an Input's own handler only restarts its blink)
                return


class TypedInput(BindingsAsTyped, Input):
    """An Input whose editing keys take effect in the order they were typed: every text box of the
    app (the preset form, the History filter, the dialogs' fields, the model picker's filter)."""
