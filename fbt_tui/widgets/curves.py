"""A textual-plot PlotWidget that draws a model `Panel`: decimated curves, legend in its title."""

from __future__ import annotations

from textual_plot import HiResMode, PlotWidget

from fbt_tui.model import Panel

PALETTE = ("#4ea1ff", "#ff7b72", "#7ee787", "#d2a8ff", "#ffa657", "#79c0ff", "#f2cc60", "#ff9bce")


class CurvePlot(PlotWidget):
    """One panel of curves, redrawn whole: the model hands it at most a few points per column."""

    def __init__(self, group: str, *, markers: bool = False, id: str | None = None):
        super().__init__(id=id, classes="curve")
        self.group = group
        self.markers = markers
        self.shown = self.total = 0

    def on_mount(self) -> None:
        self.margin_top, self.margin_bottom, self.margin_left = 0, 1, 7
        self.border_title = self.group

    @property
    def buckets(self) -> int:
        """Braille packs two dots per cell column: one min/max pair per dot column is all it can show."""
        return max(8, (self.size.width - self.margin_left) * 2)

    def show(self, panel: Panel, styles: dict[str, str] | None = None) -> None:
        self.clear()
        legend = []
        for i, curve in enumerate(panel.curves):
            style = (styles or {}).get(curve.label, PALETTE[i % len(PALETTE)])
            if self.markers or len(curve.x) == 1:
                self.scatter(curve.x, curve.y, marker="•", marker_style=style, hires_mode=HiResMode.BRAILLE)
            if len(curve.x) > 1:
                self.plot(curve.x, curve.y, line_style=style, hires_mode=HiResMode.BRAILLE)
            legend.append(f"[{style}]━[/] {curve.label}")
        self.border_title = f"[b]{panel.title}[/]  " + "  ".join(legend) if legend else f"{panel.title} · no data yet"
        self.shown, self.total = panel.shown, panel.total
        self.border_subtitle = f"showing {panel.shown:,} of {panel.total:,} points" if panel.total else ""
