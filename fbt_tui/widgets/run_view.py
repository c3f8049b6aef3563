"""Everything the dashboard shows for one run, drawn from its `RunModel`."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Log, Static

from fbt_tui.format import clock, count, literal, number, pct, status_markup
from fbt_tui.model import DISTILL, TEACHER, AlignmentRow, RunModel, sparkline, trend
from fbt_tui.runs import RunHandle
from fbt_tui.widgets.curves import CurvePlot

PLOTS = (("T–S", "ts"), ("T–F", "tf"), ("F–S", "fs"), ("CE", "ce"), ("loss", "loss"), ("top1", "top1"))
PHASE_LABEL = {TEACHER: "teacher training", DISTILL: "distillation"}
TEXT_INTERVAL_S = 0.25
PLOT_INTERVAL_S = 0.5


class AlignmentTable(DataTable):
    """METHOD.md §5: CKA per stage and the pooled pair stats, latest value, sparkline, trend."""

    shown: list[AlignmentRow] = []

    def on_mount(self) -> None:
        self.cursor_type = "none"
        self.add_columns("where", "CKA", "history", "trend", "cos", "retr.", "norm")

    def show(self, model: RunModel) -> None:
        rows = model.alignment()
        if rows == self.shown:
            return  # stages come once an epoch: most redraws have nothing new for this table
        self.shown = rows
        self.clear()
        for row in rows:
            last = next((v for v in reversed(row.cka) if v is not None), None)
            self.add_row(row.label, number(last), Text(sparkline(row.cka), style="#7ee787"), trend(row.cka),
                         number(row.cos), number(row.retrieval), number(row.norm_ratio))


class RunView(Vertical):
    """Status line, curves, alignment table and log of one run. In a small terminal only the
    current plot is shown (cycle with [ and ]); the model is never touched outside its lock.

    Repainting one plot costs Textual 10–40 ms, so a tick redraws either the text (status,
    table, log) or one plot, each plot at most every PLOT_INTERVAL_S: the UI never stalls for
    a whole dashboard at once, however fast the events come."""

    def __init__(self, handle: RunHandle, id: str | None = None):
        super().__init__(id=id, classes="run-view")
        self.handle = handle
        self.log_shown = 0
        self.current = 0
        self.text_version = -1
        self.text_at = 0.0
        self.plot_drawn: dict[str, tuple[int, float]] = {}  # plot id: (model version, when)
        self.plot_data: dict[str, tuple] = {}  # plot id: what its last drawing showed
        self.turn = 0
        self.curves: list[CurvePlot] = []  # composed once: the ticks never query the DOM

    @property
    def model(self) -> RunModel:
        return self.handle.model

    def compose(self) -> ComposeResult:
        yield Static(id="run-status", classes="run-status")
        with Grid(id="curves"):
            for group, key in PLOTS:
                yield CurvePlot(group, markers=key == "top1", id=f"plot-{key}")
        with Horizontal(id="run-bottom"):
            yield AlignmentTable(id="alignment")
            yield Log(max_lines=2000, id="run-log", auto_scroll=True)

    def on_resize(self) -> None:
        self.redraw()

    def on_mount(self) -> None:
        self.curves = list(self.query(CurvePlot))
        self.status_line = self.query_one("#run-status", Static)
        self.table = self.query_one(AlignmentTable)
        self.log_view = self.query_one("#run-log", Log)
        self.table.border_title = "alignment (probe batch, per epoch)"
        self.log_view.border_title = "engine log"
        self._mark_current()

    def plots(self) -> list[CurvePlot]:
        groups = set(self.model.groups()) | {"loss", "top1"}
        return [p for p in self.curves if p.group in groups]

    def panels(self) -> list[Widget]:
        """What [ and ] cycle through: the run's plots, and in a short terminal the table and log."""
        items: list[Widget] = list(self.plots())
        if self.screen.has_class("-short"):
            items += [self.table, self.log_view]
        return items

    def cycle(self, step: int) -> None:
        self.current = (self.current + step) % len(self.panels())
        self._mark_current()
        self.call_after_refresh(self.redraw)

    def _mark_current(self) -> None:
        plots, panels = self.plots(), self.panels()
        self.current = min(self.current, len(panels) - 1)
        for plot in self.curves:
            plot.set_class(plot not in plots, "-absent")
        for widget in [*self.curves, self.table, self.log_view]:
            widget.set_class(widget is panels[self.current], "-current")
        self.set_class(not isinstance(panels[self.current], CurvePlot), "-show-bottom")

    def visible_plots(self) -> list[CurvePlot]:
        return [p for p in self.plots() if p.region.width]

    @property
    def up_to_date(self) -> bool:
        version = self.model.version
        return self.text_version == version and all(
            self.plot_drawn.get(p.id, (-1, 0.0))[0] == version for p in self.visible_plots())

    def tick(self, now: float) -> None:
        """The text when the model changed (at most every TEXT_INTERVAL_S), or else one stale
        plot: never both in one frame."""
        if not self.region.width:
            return  # in a hidden tab: it catches up when shown
        version = self.model.version
        if version != self.text_version and now - self.text_at >= TEXT_INTERVAL_S:
            self._draw_text(version, now)
            return
        plots = self.visible_plots()
        for i in range(len(plots)):
            plot = plots[(self.turn + i) % len(plots)]
            drawn_version, drawn_at = self.plot_drawn.get(plot.id, (-1, 0.0))
            if drawn_version != version and now - drawn_at >= PLOT_INTERVAL_S:
                self.turn = (self.turn + i + 1) % len(plots)
                if self._draw_plot(plot, version, now):
                    return  # one repaint a frame; a plot whose data did not change cost nothing

    def redraw(self) -> None:
        """Everything, now: a tab was shown, the terminal resized, another plot cycled in."""
        if not self.region.width:
            return
        now, version = time.monotonic(), self.model.version
        self._mark_current()
        for plot in self.visible_plots():
            self._draw_plot(plot, version, now, force=True)
        self._draw_text(version, now)

    def _draw_plot(self, plot: CurvePlot, version: int, now: float, force: bool = False) -> bool:
        """Repaint `plot` if its curves changed (or `force`: its size may have); whether it did."""
        panel = self.model.panel(plot.group, plot.buckets)
        # Series only grow, so a curve's label and point count say whether it changed.
        data = (panel.title, plot.buckets, tuple((c.label, c.total) for c in panel.curves))
        if not force and self.plot_data.get(plot.id) == data:
            # up to date at this version; the rate limit still counts from its last real repaint
            self.plot_drawn[plot.id] = (version, self.plot_drawn.get(plot.id, (-1, 0.0))[1])
            return False
        self.plot_drawn[plot.id] = (version, now)
        self.plot_data[plot.id] = data
        before = plot.shown, plot.total
        plot.show(panel)
        if (plot.shown, plot.total) != before:
            self.text_version = -1  # the status line's "showing N of M points" sums the plots
        return True

    def _draw_text(self, version: int, now: float) -> None:
        self.text_version, self.text_at = version, now
        self._mark_current()
        losses = [p for p in self.visible_plots() if p.group != "top1"]
        shown, total = sum(p.shown for p in losses), sum(p.total for p in losses)
        # two lines, always: no layout pass for a new status
        self.status_line.update(self._status(shown, total), layout=False)
        self.table.show(self.model)
        self._append_log()

    def _append_log(self) -> None:
        with self.model.lock:
            new = self.model.log_serial - self.log_shown
            lines = list(self.model.log)[-new:] if new > 0 else []
            self.log_shown = self.model.log_serial
        if lines:
            self.log_view.write_lines(lines)

    def _status(self, shown: int, total: int) -> str:
        """Two lines: progress first (what a glance needs), then what is running where."""
        m = self.model
        with m.lock:
            phase = PHASE_LABEL.get(m.phase, m.phase or "waiting for the engine")
            progress = [status_markup(m.status), f"[b]{phase}[/]"]
            if m.epochs_total:
                progress.append(f"epoch {m.epoch}/{m.epochs_total}")
            if m.steps_total:
                progress.append(f"step {m.step}/{m.steps_total}")
            if m.loss is not None:
                progress.append(f"loss {number(m.loss)}")
            if m.lr is not None:
                progress.append(f"lr {m.lr:.3g}")
            if m.img_s:
                progress.append(f"{m.img_s:,.0f} img/s")
            if m.is_active:
                progress.append(f"ETA {clock(m.eta_seconds(time.time()))}")
            progress.append(f"best {pct(m.best[0])}% @{m.best[1]}" if m.best else "best –")
            if m.outcome.get("type") == "run_failed":
                progress.append(f"[b $error]{literal(str(m.outcome.get('error')))}: "
                                f"{literal(str(m.outcome.get('message')))}[/]")
            params = m.params
            sizes = [f"{who} {count(params[who])}" for who in ("teacher", "student", "fusion") if who in params]
            context = [literal(m.pair_label()), literal((m.config.get("method") or {}).get("name", "")),
                       literal(m.data.get("name", "")), ", ".join(sizes)]
            device = literal(m.device.get("name", ""))
            if m.device.get("type") == "cuda":
                used = f"{m.gpu_mem_gb:.1f}" if m.gpu_mem_gb is not None else "–"
                total_gb = m.device.get("memory_gb")
                device += f" · GPU mem {used}/{total_gb} GB" if total_gb else f" · GPU mem {used} GB"
            context += [device, f"showing {shown:,} of {total:,} points"]
        return " · ".join(progress) + "\n[dim]" + " · ".join(c for c in context if c) + "[/]"
