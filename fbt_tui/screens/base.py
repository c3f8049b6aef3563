"""What every mode screen shares: header and footer, and worker errors shown as a modal."""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker, WorkerState


class FbtScreen(Screen):
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.app.show_worker_error(event.worker)
