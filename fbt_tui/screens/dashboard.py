"""Dashboard mode: one tab per active or opened run; only the visible one is drawn."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.widgets import Static, TabbedContent, TabPane

from fbt_engine import paths
from fbt_engine.store.runs import RESUMABLE, more_epochs_hint

from fbt_tui.format import STATUS_MARKS, literal
from fbt_tui.runs import RunHandle
from fbt_tui.screens.base import FbtScreen
from fbt_tui.widgets.header import FbtHeader
from fbt_tui.widgets.run_view import RunView
from fbt_tui.widgets.keybar import KeyBar

EMPTY = ("No run open.\n\nPress [b]p[/] to launch a preset, or [b]h[/] to open a past run from History "
         "([b]enter[/]).\nRuns keep going while you look elsewhere, and after you quit if you choose so.")


UNSEEN_ENDED_TABS = 6  # kept at most: a sweep run from a shell would otherwise open a tab per run


def pane_id(run_id: str) -> str:
    return f"run-{run_id}"


class DashboardScreen(FbtScreen):
    BINDINGS = [
        Binding("s", "stop", "Stop run"),
        Binding("u", "resume", "Resume run"),
        Binding("w", "close_tab", "Close tab"),
        Binding("left_square_bracket", "cycle(-1)", "Prev plot"),
        Binding("right_square_bracket", "cycle(1)", "Next plot"),
        Binding("less_than_sign", "switch_tab(-1)", "Prev run"),
        Binding("greater_than_sign", "switch_tab(1)", "Next run"),
    ]

    def compose(self) -> ComposeResult:
        yield FbtHeader("dashboard")
        yield Static(EMPTY, id="dash-empty")
        yield TabbedContent(id="run-tabs")
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.unseen: list[str] = []  # runs whose tabs opened beside the one in view, not shown since; oldest first
        self._show_empty()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """[ and ] only where the plots take turns (a narrow or short terminal); elsewhere every
        plot is on screen and the keys would do nothing. No tab: no key that acts on one."""
        if action == "close_tab":
            return self.current_view() is not None
        if action == "cycle":
            return (self.has_class("-narrow") or self.has_class("-short")) and self.current_view() is not None
        if action == "switch_tab":  # with two tabs or more; hidden, not dimmed, as the key bar is narrow
            return self.query_one(TabbedContent).tab_count > 1
        if action == "resume":  # only where the tab's run stopped short of its end: the key bar is narrow
            view = self.current_view()
            return view is not None and self.resumable(view.handle)
        if action == "stop":  # hidden where the tab's run is over, as u is while it runs: the bar is narrow
            view = self.current_view()
            return view is not None and view.handle.active
        return True

    def on_resize(self) -> None:
        self.refresh_bindings()  # the breakpoint classes may have changed: check_action's answer too

    def on_screen_resume(self) -> None:
        view = self.current_view()
        if view is not None:
            self.call_after_refresh(view.redraw)

    def _show_empty(self) -> None:
        has_tabs = self.query_one(TabbedContent).tab_count > 0
        self.query_one("#dash-empty").display = not has_tabs
        self.query_one(TabbedContent).display = has_tabs
        self.refresh_bindings()  # < and > work with two tabs or more

    def views(self) -> list[RunView]:
        return list(self.query(RunView))

    def current_view(self) -> RunView | None:
        pane = self.query_one(TabbedContent).active_pane
        return pane.query_one(RunView) if pane is not None else None

    async def open_run(self, handle: RunHandle, activate: bool = True) -> None:
        tabs = self.query_one(TabbedContent)
        pid = pane_id(handle.run_id)
        if not self.has_tab(handle.run_id):
            await tabs.add_pane(TabPane(self._title(handle), RunView(handle), id=pid))
            self._show_empty()
            if not activate and tabs.active != pid:  # (the first tab is active as it opens)
                self.unseen.append(handle.run_id)
        if activate:
            tabs.active = pid

    def has_tab(self, run_id: str) -> bool:
        return bool(self.query(f"#{pane_id(run_id)}"))

    async def reopen_run(self, handle: RunHandle, activate: bool = True) -> None:
        """A new view of a run in the tab that showed another handle of it (a resume's): the tab
        keeps its place, and no other run shows while the view is replaced."""
        pid = pane_id(handle.run_id)
        if not self.has_tab(handle.run_id):
            await self.open_run(handle, activate)
            return
        pane = self.query_one(TabbedContent).get_pane(pid)
        await pane.query_one(RunView).remove()
        self.app.thaw()  # as a closed tab's widgets
        view = RunView(handle)
        await pane.mount(view)
        self.relabel(handle)
        if activate:
            self.query_one(TabbedContent).active = pid  # (already active: no TabActivated draws it)
        if self.query_one(TabbedContent).active == pid:
            self.call_after_refresh(view.redraw)

    def _title(self, handle: RunHandle) -> str:
        m = handle.model
        return f"{STATUS_MARKS.get(m.status, '?')} {literal(m.name or handle.run_id)} {handle.run_id[-6:]}"

    def relabel(self, handle: RunHandle) -> None:
        """Only when the title changed: a new label lays the whole screen out again."""
        try:
            tab = self.query_one(TabbedContent).get_tab(pane_id(handle.run_id))
        except (NoMatches, ValueError):
            return  # its tab was closed
        title = self._title(handle)
        if tab.label.plain != title:
            tab.label = title
            self.refresh_bindings()  # its status changed: whether s can stop it

    def run_updated(self, handle: RunHandle) -> None:
        """Only the visible run is drawn (see RunView.on_screen); the others catch up when shown."""
        view = self.current_view()
        if view is not None and view.handle is handle:
            view.model_changed()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        view = self.current_view()
        if view is not None:
            self.unseen = [rid for rid in self.unseen if rid != view.handle.run_id]
            self.call_after_refresh(view.redraw)

    async def retire_unseen(self) -> list[str]:
        """Close the oldest tabs that opened by themselves for runs now ended and were never shown,
        beyond UNSEEN_ENDED_TABS; History still has their runs. Returns their names."""
        in_view = self.current_view()  # switched to, its TabActivated maybe still on its way
        ended = sorted((view.handle for view in self.views() if view is not in_view and
                        view.handle.run_id in self.unseen and not view.handle.active),
                       key=lambda h: self.unseen.index(h.run_id))
        retired = ended[:max(0, len(ended) - UNSEEN_ENDED_TABS)]
        await self.close_ended([h.run_id for h in retired])
        return [h.model.name or h.run_id for h in retired]

    async def close_ended(self, run_ids: list[str]) -> None:
        """The tabs of runs that have ended (trashed, say), their handles no longer tailed; an
        active run's tab stays."""
        for rid in run_ids:
            handle = self.app.manager.handles.get(rid)
            if handle is None or not handle.active:
                self.app.manager.forget(rid)
                await self.close_run(rid)

    def action_cycle(self, step: int) -> None:
        view = self.current_view()
        if view is not None:
            view.cycle(step)

    def action_switch_tab(self, step: int) -> None:
        """The run tabs in turn, wherever the focus is (the tab bar's own ←/→ need it focused)."""
        tabs = self.query_one(TabbedContent)
        panes = [pane.id for pane in tabs.query(TabPane)]
        if len(panes) > 1 and tabs.active in panes:
            tabs.active = panes[(panes.index(tabs.active) + step) % len(panes)]

    def on_key(self, event: events.Key) -> None:
        """u on a finished run's tab: its binding is hidden there, and the key said nothing."""
        view = self.current_view()
        if event.key == "u" and view is not None and not view.handle.live and view.model.status == "finished":
            run_dir = paths.runs_dir(self.app.manager.home) / view.handle.run_id  # no store: it opens the index
            self.notify(f"a finished run does not resume; {more_epochs_hint(run_dir)}", markup=False, timeout=10)

    @staticmethod
    def resumable(handle: RunHandle) -> bool:
        # not live: its process has exited (an interrupted run's event comes before the exit)
        return not handle.live and handle.model.status in RESUMABLE

    async def action_resume(self) -> None:
        view = self.current_view()
        if view is not None:  # check_action let it through: its run stopped short
            await self.app.resume(view.handle.run_id)

    def action_stop(self) -> None:
        view = self.current_view()
        if view is not None:  # check_action let it through: the tab's run is active
            self.app.confirm_stop(view.handle)

    async def close_run(self, run_id: str) -> None:
        self.unseen = [rid for rid in self.unseen if rid != run_id]
        if self.has_tab(run_id):
            await self.query_one(TabbedContent).remove_pane(pane_id(run_id))
            self.app.thaw()
        self._show_empty()

    async def action_close_tab(self) -> None:
        view = self.current_view()
        if view is None:
            return
        rid = view.handle.run_id
        if view.handle.active:
            self.notify("The run keeps going; reopen it from History.", title="Tab closed")
        else:
            self.app.manager.forget(rid)
        await self.close_run(rid)
