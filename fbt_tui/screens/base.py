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
        # a key passes its screen before the app's bindings act on it, also on one that opens a
        # dialog: the app sees where each came from (FbtApp.on_key)
        event.via_screen = self
