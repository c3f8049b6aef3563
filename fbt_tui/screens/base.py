"""What every mode screen shares: header and footer, worker errors shown as a modal, and the mark
of keys typed ahead of a dialog."""

from __future__ import annotations

from textual import events
from textual.screen import Screen
from textual.worker import Worker, WorkerState


class FbtScreen(Screen):
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.app.show_worker_error(event.worker)

    def on_key(self, event: events.Key) -> None:
        # a key passes its screen before the app's bindings act on it, also on the key before it
        # when that one opened a dialog or the filter: the app sees where each was typed (FbtApp.on_key)
        event.via_screen, event.via_focus = self, self.focused
