"""Everything the dashboard shows for one run, drawn from its `RunModel`."""

from __future__ import annotations

import time

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Log, Static

from fbt_tui.format import clock, count, counted, fixed, literal, number, pct, status_markup, wrap_log
from fbt_tui.model import DISTILL, TEACHER, AlignmentRow, RunModel, sparkline, trend
from fbt_tui.runs import RunHandle
from fbt_tui.widgets.curves import CurvePlot

PLOTS = (("T–S", "ts"), ("T–F", "tf"), ("F–S", "fs"), ("CE", "ce"), ("loss", "loss"), ("top1", "top1"))
PHASE_LABEL = {TEACHER: "teacher training", DISTILL: "distillation"}
DRAW_INTERVAL_S = 0.25  # SPEC §7: curves redrawn at most ~4×/s
WARNING_CHARS = 80  # of the last warning on the status line; the log and the toast hold it whole
SPARK_CELLS = 12  # the alignment history's epochs, at most
FRAME_BUDGET_S = 0.010  # the UI thread's CPU one frame spends drawing plots; Textual then renders them
NEXT_FRAME_S = 1 / 60  # Textual renders at most 60 frames a second


class AlignmentTable(DataTable):
    """METHOD.md §5: CKA per stage and the pooled pair stats, latest value, sparkline, trend. The
    sparkline takes the room the other columns leave (up to SPARK_CELLS epochs, down to its
    header's width): at its full length it pushed the last column out of a half-width table."""

    HEADERS = ("where", "CKA", "history", "trend", "cos", "retr. %", "norm")
    shown: tuple[list[AlignmentRow], int] = ([], 0)
    model: RunModel | None = None

    def on_mount(self) -> None:
        self.cursor_type = "none"
        self.add_columns(*self.HEADERS)
        self.tooltip = ("CKA: linear CKA of the two models' features on the probe batch (1: the same up to a "
                        "rotation and scale)\ncos: mean cosine of a pair's features in its InfoNCE space\n"
                        "retr. %: how often the learner's feature finds its own image's source feature among "
                        "the probe batch's (chance: one in the batch)\nnorm: the learner's feature norm over "
                        "the source's")

    def show(self, model: RunModel) -> None:
        self.model = model
        rows = model.alignment()
        cells = [(row.label, fixed(next((v for v in reversed(row.cka) if v is not None), None)), trend(row.cka),
                  fixed(row.cos), fixed(None if row.retrieval is None else 100 * row.retrieval, 1),
                  fixed(row.norm_ratio)) for row in rows]
        others = [h for h in self.HEADERS if h != "history"]
        taken = sum(max([cell_len(h), *(cell_len(str(c[i])) for c in cells)]) for i, h in enumerate(others))
        room = self.scrollable_content_region.width - taken - 2 * self.cell_padding * len(self.HEADERS)
        spark = min(SPARK_CELLS, max(cell_len("history"), room))
        if (rows, spark) == self.shown:
            return  # stages come once an epoch: most redraws have nothing new for this table
        self.shown = rows, spark
        self.clear(columns=True)  # a column keeps its widest width until it is made anew
        self.add_columns(*self.HEADERS)
        for row, (label, cka, arrow, cos, retrieval, norm) in zip(rows, cells):
            self.add_row(label, cka, Text(sparkline(row.cka, spark), style="#7ee787"), arrow, cos, retrieval, norm)

    def on_resize(self) -> None:
        if self.model is not None:
            self.show(self.model)


class RunView(Vertical):
    """Status line, curves, alignment table and log of one run. In a small terminal only the
    current plot is shown (cycle with [ and ]); the model is never touched outside its lock.

    Drawing is driven by the run's updates, not by a clock: an update schedules one drawing of
    everything that changed, at most every DRAW_INTERVAL_S. Every frame costs Textual's
    compositor a pass over the area that changed, so the changed plots go into as few frames as
    FRAME_BUDGET_S allows (one, unless the curves hold hundreds of thousands of points): the
    app's CPU is what a run on a small machine loses, and no frame stalls the UI for long."""

    def __init__(self, handle: RunHandle, id: str | None = None):
        super().__init__(id=id, classes="run-view")
        self.handle = handle
        self.log_shown = 0
        self.warnings_told: int | None = None  # warnings already toasted; None: none looked at yet
        self.log_width = -1  # the width the log's lines were wrapped to
        self.current = 0
        self.drawn_version = -1
        self.drawn_at = -DRAW_INTERVAL_S
        self.due: Timer | None = None  # the scheduled drawing, if any
        self.pending: list[tuple[CurvePlot, bool]] = []  # (plot, force): the rest of a drawing under way
        self.plot_data: dict[str, tuple] = {}  # plot id: what its last drawing showed
        self.curves: list[CurvePlot] = []  # composed once: drawing never queries the DOM

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
        self.set_interval(1.0, self._tick)

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
        if self.panels()[self.current] is self.log_view:  # hidden, it could not follow its last line
            self.call_after_refresh(self.log_view.scroll_end, animate=False)

    def _mark_current(self) -> bool:
        """Show the run's plots and the current panel; whether that changed what is shown (the
        widgets that came get their size at the next refresh)."""
        plots, panels = self.plots(), self.panels()
        self.current = min(self.current, len(panels) - 1)
        marks = [(plot, "-absent", plot not in plots) for plot in self.curves]
        marks += [(widget, "-current", widget is panels[self.current])
                  for widget in [*self.curves, self.table, self.log_view]]
        marks.append((self, "-show-bottom", not isinstance(panels[self.current], CurvePlot)))
        marks.append((self.query_one("#curves"), "-two-by-two", len(plots) == 4))  # not 3 and a lone 1
        changed = False
        for widget, name, on in marks:
            changed |= widget.has_class(name) != on
            widget.set_class(on, name)
        return changed

    def visible_plots(self) -> list[CurvePlot]:
        return [p for p in self.plots() if p.region.width]

    @property
    def on_screen(self) -> bool:
        """Not in a hidden tab or mode, nor being removed with its closed tab (`display` is False then)."""
        return bool(self.region.width) and self.is_attached and self.display and self.screen.is_current

    @property
    def up_to_date(self) -> bool:
        return self.drawn_version == self.model.version and self.due is None and not self.pending

    def model_changed(self) -> None:
        """The run has news: draw it when DRAW_INTERVAL_S has passed since the last drawing."""
        if self.due is not None or self.pending:
            return  # that drawing will see the news, or schedule the next one
        wait = self.drawn_at + DRAW_INTERVAL_S - time.monotonic()
        if wait > 0:
            self.due = self.set_timer(wait, self._draw_due)
        else:
            self._draw_due()

    def _draw_due(self) -> None:
        self.due = None
        if self.on_screen:
            self._draw()
        # hidden: redraw() catches up when it is shown

    def redraw(self) -> None:
        """Everything, now: a tab was shown, the terminal resized, another plot cycled in."""
        if self.on_screen:
            self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        if self._mark_current():  # plots came (the run's first losses) or went: draw them once laid out
            self.call_after_refresh(self.redraw)
            return
        self.drawn_version, self.drawn_at = self.model.version, time.monotonic()
        under_way = bool(self.pending)
        self.pending = [(plot, force) for plot in self.visible_plots()]
        if not under_way:  # else the drawing under way goes on with this list
            self._draw_pending()

    def _draw_pending(self) -> None:
        """Plots until FRAME_BUDGET_S of the UI thread's CPU is spent, the rest a frame later (a
        timer of this view's: it ends with the view); then the text, whose status line sums what
        the plots show."""
        if not self.on_screen:
            self.pending.clear()  # hidden or closed meanwhile: redraw() starts afresh when shown
            return
        start = time.thread_time()
        while self.pending:
            self._draw_plot(*self.pending.pop(0))
            if self.pending and time.thread_time() - start > FRAME_BUDGET_S:
                self.set_timer(NEXT_FRAME_S, self._draw_pending)
                return
        self._draw_text()
        if self.model.version != self.drawn_version:
            self.model_changed()  # news that came while this drawing went on

    def _draw_plot(self, plot: CurvePlot, force: bool = False) -> None:
        """Repaint `plot` if its curves changed (or `force`: its size may have)."""
        panel = self.model.panel(plot.group, plot.buckets)
        # Series only grow, so a curve's label and point count say whether it changed.
        data = (panel.title, plot.buckets, tuple((c.label, c.total) for c in panel.curves))
        if not force and self.plot_data.get(plot.id) == data:
            return
        self.plot_data[plot.id] = data
        plot.show(panel)

    def _draw_text(self) -> None:
        self._draw_status()
        self.table.show(self.model)
        self._append_log()
        self._tell_warnings()

    def _tell_warnings(self) -> None:
        for message in self.untold_warnings():
            self.app.notify(message, title=f"warning · {self.model.name or self.model.run_id}", severity="warning",
                            timeout=12, markup=False)

    def untold_warnings(self) -> list[str]:
        """The warnings to toast: those that arrive while the run is watched (the log's line scrolls
        away), not those of a run opened afterwards, which the status line says."""
        with self.model.lock:
            warnings, active = list(self.model.warnings), self.model.is_active
        told, self.warnings_told = self.warnings_told, len(warnings)
        return warnings[told:] if told is not None and active else []

    def _draw_status(self) -> None:
        losses = [p for p in self.visible_plots() if p.group != "top1"]
        shown, total = sum(p.shown for p in losses), sum(p.total for p in losses)
        # two lines, always: no layout pass for a new status
        self.status_line.update(self._status(shown, total), layout=False)

    def _tick(self) -> None:
        """A phase's start writes no event until its first logged step (tens of seconds of compiling
        on a GPU, or a slow model's first steps): its clock on the status line moves anyway."""
        if self.on_screen and self.model.before_first_log(time.time()) is not None:
            self._draw_status()

    def _append_log(self) -> None:
        """The engine's new lines, wrapped to the pane (a Log does not wrap, and a warning's end is
        often what matters); all of them again, wrapped anew, when the pane's width changed."""
        width = self.log_view.scrollable_content_region.width
        if width <= 0:  # hidden (a small terminal shows one panel at a time): folded once it shows
            return
        rewrap = width != self.log_width
        with self.model.lock:
            new = len(self.model.log) if rewrap else self.model.log_serial - self.log_shown
            lines = list(self.model.log)[-new:] if new > 0 else []
            self.log_shown = self.model.log_serial
        if rewrap:
            self.log_width = width
            self.log_view.clear()
        if lines:
            self.log_view.write_lines(wrap_log(lines, width))
        if rewrap:  # its scroll range is the new lines' only after the next layout: follow the end then
            self.call_after_refresh(self.log_view.scroll_end, animate=False)

    def _status(self, shown: int, total: int) -> str:
        """Two lines: progress first (what a glance needs), then what is running where."""
        m = self.model
        with m.lock:
            # between run_started and the first phase that runs, the engine builds models and data
            phase = PHASE_LABEL.get(m.phase, m.phase or ("preparing" if m.status == "running"
                                                         else "waiting for the engine"))
            progress = [status_markup(m.status), f"[b]{phase}[/]"]
            if self.handle.stop_requested and m.is_active:  # the step, its save and the exit take seconds
                progress.insert(1, "[b $warning]stopping: it saves its step, then exits[/]")
            if m.evaluating is not None and m.status == "running":  # (starting: an earlier segment's)
                progress.append("[b]evaluating the teacher[/]" if m.evaluating == 0
                                else f"[b]evaluating epoch {m.evaluating}[/]")
            if m.epochs_total:
                progress.append(f"epoch {m.epoch}/{m.epochs_total}")
            if m.steps_total:
                progress.append(f"step {m.step}/{m.steps_total}")
            # what a glance needs first: a narrow terminal cuts the line's end
            if m.view_phase == TEACHER:  # a teacher trained here, until distillation begins
                score = m.teacher_score()
                progress.append(f"teacher {pct(score[0])}% @{score[1]}" if score else "teacher –")
            else:
                progress.append(f"best {pct(m.best[0])}% @{m.best[1]}" if m.best else "best –")
            waiting = m.before_first_log(time.time())
            if waiting is not None and m.compiled:
                progress.append(f"[b]compiling the training step {clock(waiting)}[/]")
            elif waiting is not None:  # the phase's clock, until a step is logged
                every = f" (logged every {m.log_every})" if m.log_every else ""
                progress.append(f"[b]first steps running {clock(waiting)}[/]{every}")
            elif m.is_active and (eta := m.eta_seconds(time.time())) is not None:
                progress.append(f"ETA {clock(eta)}")
            if m.loss is not None:  # the last logged interval's: the log's epoch lines give epoch means
                progress.append(f"step loss {number(m.loss)}")
            if m.lr is not None:
                progress.append(f"lr {m.lr:.3g}")
            if m.img_s and m.is_active and m.resuming is None:  # ended, or not yet resumed: at no speed
                progress.append(f"{m.img_s:,.0f} img/s")
            if m.outcome.get("type") == "run_failed":
                progress.append(f"[b $error]{literal(str(m.outcome.get('error')))}: "
                                f"{literal(str(m.outcome.get('message')))}[/]")
            params = m.params
            sizes = [f"{who} {count(params[who])}" for who in ("teacher", "student", "fusion") if who in params]
            context = [literal(m.pair_label()), literal((m.config.get("method") or {}).get("name", "")),
                       literal(m.data.get("name", "")), ", ".join(sizes)]
            device = literal(m.device_name())
            if m.device.get("type") == "cuda":
                used = f"{m.gpu_mem_gb:.1f}" if m.gpu_mem_gb is not None else "–"
                total_gb = m.device.get("memory_gb")
                device += f" · GPU mem {used}/{total_gb} GB" if total_gb else f" · GPU mem {used} GB"
            # what the curves hold, and where a long run's are decimated for the screen, how many are drawn
            context += [device, f"curves: {shown:,} of {total:,} points drawn" if shown < total
                        else f"curves: {counted(total, 'point')}"]
            # the last warning first on the second line (its log line scrolls away), clipped so that
            # what runs where still shows on a wide terminal
            last = m.warnings[-1] if m.warnings else ""
            last = last if len(last) <= WARNING_CHARS else last[:WARNING_CHARS - 1] + "…"
            warned = (f"[$warning]⚠ {counted(len(m.warnings), 'warning')}: "
                      f"{literal(last)}[/] · " if m.warnings else "")
        return " · ".join(progress) + "\n" + warned + "[dim]" + " · ".join(c for c in context if c) + "[/]"
