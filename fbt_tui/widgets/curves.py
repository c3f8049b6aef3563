"""A textual-plot PlotWidget that draws a model `Panel`: decimated curves, legend in its title."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from math import ceil, floor

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual_hires_canvas import Canvas
from textual_plot import HiResMode, NumericAxisFormatter, PlotWidget
from textual_plot.plot_widget import Legend, LinePlot, map_coordinate_to_hires_pixel

from fbt_tui.format import count, literal
from fbt_tui.model import Panel

BORDER_CELLS = 4  # of the width inside the border, what a title cannot use: "─ " before it, " ─" after
PALETTE = ("#4ea1ff", "#ff7b72", "#7ee787", "#d2a8ff", "#ffa657", "#79c0ff", "#f2cc60", "#ff9bce")
# Unicode braille: the bit of each dot in a 4-row × 2-column cell
_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int32)


def braille_line(px: np.ndarray, py: np.ndarray, width: int, height: int) -> np.ndarray:
    """Braille codes (height × width cells, 0 = empty) of the polyline through (px, py), given in
    cell units. Each segment fills, in every dot column it crosses, the dots between its heights
    there, so the line stays unbroken however steep it is."""
    x, y = px * 2.0, py * 4.0
    # the axes' limits map to the canvas's far edges, one dot past its last: a curve at the y minimum
    # (a flat fusion accuracy under the student's) or a point at the x maximum is drawn on the last dots
    x = np.where(np.isclose(x, width * 2), width * 2 - 1e-6, x)
    y = np.where(np.isclose(y, height * 4), height * 4 - 1e-6, y)
    dots = np.zeros((height * 4 + 1, width * 2), dtype=np.int16)
    if len(x) == 1:
        x, y = np.repeat(x, 2), np.repeat(y, 2)
    x0, x1, y0, y1 = x[:-1], x[1:], y[:-1], y[1:]
    left, right = np.minimum(x0, x1), np.maximum(x0, x1)
    first = np.floor(left).astype(np.int64)
    counts = np.floor(right).astype(np.int64) - first + 1
    seg = np.repeat(np.arange(len(x0)), counts)
    col = first[seg] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    a = np.maximum(col, left[seg])
    b = np.minimum(col + 1.0, right[seg])
    dx = x1 - x0
    slope = np.divide(y1 - y0, dx, out=np.zeros_like(dx), where=dx != 0)[seg]
    vertical = (dx == 0)[seg]
    ya = np.where(vertical, y0[seg], y0[seg] + (a - x0[seg]) * slope)
    yb = np.where(vertical, y1[seg], y0[seg] + (b - x0[seg]) * slope)
    lo = np.floor(np.minimum(ya, yb)).astype(np.int64)
    hi = np.floor(np.maximum(ya, yb)).astype(np.int64)
    keep = (col >= 0) & (col < width * 2) & (hi >= 0) & (lo < height * 4)
    col, lo, hi = col[keep], np.clip(lo[keep], 0, height * 4 - 1), np.clip(hi[keep], 0, height * 4 - 1)
    np.add.at(dots, (lo, col), 1)  # a difference array: +1 where a run of dots starts, -1 after it ends
    np.add.at(dots, (hi + 1, col), -1)
    filled = np.cumsum(dots, axis=0)[:-1] > 0
    cells = filled.reshape(height, 4, width, 2) * _BRAILLE_BITS[None, :, None, :]
    return cells.sum(axis=(1, 3))


class CountFormatter(NumericAxisFormatter):
    """Ticks for an axis that counts (steps, epochs): whole numbers only. Early in a run the
    numeric formatter ticked steps 0 to 4 at 0.5 apart ("0.5 1.0 1.5"), steps no run has."""

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        ticks = super().get_ticks(min_, max_, max_ticks)
        if len(ticks) < 2 or ticks[1] - ticks[0] >= 1:
            return ticks
        return [float(t) for t in range(ceil(min_), floor(max_) + 1)]

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [f"{t:.0f}" for t in ticks]


class SpacedFormatter(NumericAxisFormatter):
    """Ticks for the y axis, two rows apart at least. The plot writes each label on the row nearest
    its value, so ticks closer than that shared rows and overwrote one another ("6.0 5.5 5.0 4.0
    3.5 2.5"): a linear axis labelled as if it bent. `rows`: the plot's height, set as it draws."""

    rows = 8

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        ticks = super().get_ticks(min_, max_, max_ticks)
        while len(ticks) > 2 and (ticks[1] - ticks[0]) * (self.rows - 1) < 2 * (max_ - min_):
            step = _coarser(ticks[1] - ticks[0])
            ticks = [float(t) for t in np.arange(ceil(min_ / step) * step, max_ + step / 2, step)]
        return ticks


def _coarser(step: float) -> float:
    """The next step of the 1, 2, 5, 10… ladder the numeric formatter's steps are on."""
    power = 10 ** floor(np.log10(step) + 1e-9)
    return next(m * power for m in (2, 5, 10, 20) if m * power > step * (1 + 1e-9))


class StyledCanvas(Canvas):
    """A Canvas that looks up its style once. The hires canvas asks for `rich_style` on every
    line it renders, and each time Textual walks the whole DOM above it: a quarter of a dashboard
    frame. The style changes only when styles do, which Textual announces to every widget below
    the change through `notify_style_update` (its own component-style cache is cleared there too)."""

    _style: Style | None = None

    @property
    def rich_style(self) -> Style:
        if self._style is None:
            self._style = super().rich_style
        return self._style

    def notify_style_update(self) -> None:
        self._style = None
        super().notify_style_update()


class CurvePlot(PlotWidget):
    """One panel of curves, redrawn whole: the model hands it at most a few points per column."""

    # a plot focused for its zoom and pan keys holds the arrows and the key bar until let go
    BINDINGS = [Binding("escape", "let_go", "Done", show=False)]

    def __init__(self, group: str, *, markers: bool = False, id: str | None = None):
        super().__init__(id=id, classes="curve")
        self.group = group
        self.markers = markers
        self.shown = self.total = 0
        self._pinned: set[str] = set()  # axes whose limits are set here: the data has no spread on them
        self._drawing_here = False
        self._borders: tuple[str, str] = ("", "")
        self.canvases: list[StyledCanvas] = []

    def compose(self) -> ComposeResult:
        """PlotWidget's own layout, on StyledCanvas."""
        with Grid():
            for part in ("margin-top", "margin-left", "plot", "margin-bottom"):
                yield StyledCanvas(1, 1, id=part)
        yield Legend(id="legend")

    def action_let_go(self) -> None:
        self.screen.set_focus(None)

    def on_mount(self) -> None:
        self.canvases = list(self.query(StyledCanvas))
        self.margin_top, self.margin_bottom, self.margin_left = 0, 1, 7
        self.set_x_formatter(CountFormatter())
        self.set_y_formatter(SpacedFormatter())
        self.border_title = self.group

    @property
    def buckets(self) -> int:
        """Braille packs two dots per cell column: one min/max pair per dot column is all it can show."""
        return max(8, (self.size.width - self.margin_left) * 2)

    def show(self, panel: Panel, styles: dict[str, str] | None = None, legend_elsewhere: bool = False) -> None:
        """Draw `panel` onto the canvases now, so that only they are repainted. PlotWidget would
        repaint itself whole and draw the canvases while Textual renders that frame, which
        repaints them again in the next one: two frames of the whole plot for every update.
        `legend_elsewhere`: Compare's table has a colour swatch beside each run, so a legend that
        neither border can hold is left out (see _titles)."""
        self._drawing_here = True
        try:
            self.clear()
            self._fit_flat_data(panel)
            legend = []
            for i, curve in enumerate(panel.curves):
                style = (styles or {}).get(curve.label, PALETTE[i % len(PALETTE)])
                if self.markers or len(curve.x) == 1:  # a lone point gets a whole cell: one braille dot hides
                    self.scatter(curve.x, curve.y, marker="•", marker_style=style,
                                 hires_mode=None if len(curve.x) == 1 else HiResMode.BRAILLE)
                if len(curve.x) > 1:
                    self.plot(curve.x, curve.y, line_style=style, hires_mode=HiResMode.BRAILLE)
                legend.append(f"[{style}]━[/] {literal(curve.label)}")
        finally:
            self._drawing_here = False
        if self._needs_canvas_resize:
            self.refresh()  # a new size: PlotWidget's render() sizes the canvases first, then draws
        else:
            with ExitStack() as batch:  # each canvas repaints once, not once per line and label on it
                for canvas in self.canvases:
                    batch.enter_context(canvas.batch_refresh())
                self._render_plot()
            self._needs_rerender = False
        self.shown, self.total = panel.shown, panel.total
        # A border change repaints the whole plot, so the subtitle changes only when the count
        # it rounds does; the dashboard's status line has the exact counts.
        self._set_borders(*self._titles(panel, "  ".join(legend), legend_elsewhere))

    def _titles(self, panel: Panel, key: str, legend_elsewhere: bool) -> tuple[str, str]:
        """The top and bottom borders' texts: the title and the legend (`key`) on top where they fit
        there, else the legend at the bottom in place of the decimation note (the dashboard's
        status line counts the points too), else (only with `legend_elsewhere`) no legend, else the
        legend cut. (Cut, it named only the first curves.)"""
        note = f"min/max per column of {count(panel.total)} points" if panel.shown < panel.total else ""
        if not key:
            return f"{panel.title} · no data yet", note
        title = panel.title if any(np.isfinite(c.y).any() for c in panel.curves) else \
            f"{panel.title} · no finite values"  # a run that failed on a NaN loss at its first log step
        room = self.size.width - BORDER_CELLS
        head, whole = f"[b]{title}[/]", f"[b]{title}[/]  {key}"
        if Text.from_markup(whole).cell_len <= room:
            return whole, note
        if Text.from_markup(key).cell_len <= room:
            return head, key
        return (head if legend_elsewhere else whole), note

    def _set_borders(self, title: str, subtitle: str) -> None:
        if (title, subtitle) != self._borders:
            self._borders = title, subtitle
            self.border_title, self.border_subtitle = title, subtitle

    def _rerender(self) -> None:
        """PlotWidget calls this after each change; show() draws once, after all of them."""
        if self._drawing_here:
            self._needs_rerender = True
        else:
            super()._rerender()

    def _fit_flat_data(self, panel: Panel) -> None:
        """Autoscaling a constant curve (one epoch, a frozen teacher) gives a zero-width axis
        with ticks like 0.9999990 1.0000000; give that axis ±1 instead. A lone point (every curve's
        first epoch, a one-epoch run in Compare) is a whole-cell marker, which textual-plot places
        outside the canvas at an axis's far end: where there is one, a tenth of the range is added
        at both ends (Compare lost a one-epoch run's point, the best, beside a longer run's curve).
        No data: the axes start afresh."""
        lone = any(len(c.x) == 1 for c in panel.curves)
        for axis in "xy":
            values = np.concatenate([getattr(c, axis) for c in panel.curves]) if panel.curves else np.empty(0)
            values = values[np.isfinite(values)]
            limits = getattr(self, f"set_{axis}limits")
            if not len(values):
                limits(None, None)
                self._pinned.discard(axis)
            elif values.max() - values.min() < 1e-9:
                limits(float(values[0]) - 1, float(values[0]) + 1)
                self._pinned.add(axis)
            elif lone:
                pad = (float(values.max()) - float(values.min())) / 10
                limits(float(values.min()) - pad, float(values.max()) + pad)
                self._pinned.add(axis)
            elif axis in self._pinned:
                limits(None, None)
                self._pinned.discard(axis)

    def _render_y_ticks(self) -> None:
        self._y_formatter.rows = self.query_one("#plot", Canvas).size.height
        super()._render_y_ticks()

    def _render_line_plot(self, dataset: LinePlot) -> None:
        """textual-plot rasterises every segment dot by dot in Python (tens of ms for one noisy
        curve, hundreds for a dashboard); the same braille line, drawn with numpy, takes ~1 ms."""
        if dataset.hires_mode is not HiResMode.BRAILLE or not len(dataset.x):
            super()._render_line_plot(dataset)
            return
        canvas = self.query_one("#plot", Canvas)
        width, height = canvas.size
        px, py = map_coordinate_to_hires_pixel(dataset.x, dataset.y, self._x_min, self._x_max, self._y_min,
                                               self._y_max, region=self._scale_rectangle)
        codes = braille_line(np.asarray(px, dtype=float), np.asarray(py, dtype=float), width, height)
        for code in np.unique(codes[codes > 0]):
            rows, cols = np.nonzero(codes == code)
            canvas.set_pixels(list(zip(cols.tolist(), rows.tolist())), chr(0x2800 + int(code)), dataset.line_style)
