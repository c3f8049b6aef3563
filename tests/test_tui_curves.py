"""The dashboard's plots draw their curves straight onto their canvases (one frame per update, not
two), so the canvases must follow the terminal's size and the theme on their own."""

from textual.dom import DOMNode

from fbt_tui.widgets.curves import CurvePlot, StyledCanvas
from fbt_tui.widgets.run_view import RunView

from test_tui_support import fake_run, run_app, wait_for


def braille_cells(canvas: StyledCanvas) -> int:
    return sum(0x2800 < ord(ch) <= 0x28FF for row in canvas._buffer for ch in row)


def fitted(plot: CurvePlot) -> bool:
    """Every canvas holds a buffer of its own size on screen, and the curves are on the plot."""
    return all(c._canvas_size == c.size for c in plot.canvases if c.size) and \
        braille_cells(plot.query_one("#plot", StyledCanvas)) > 0


def test_plots_follow_the_terminal_size_and_the_theme(fbt_home):
    fake_run(fbt_home, "sized", top1=(50.0, 60.0, 65.0), steps_per_epoch=40)

    async def scenario(app, pilot):
        await wait_for(pilot, lambda: app.screen.query("#history-table"), 10, "History")
        await wait_for(pilot, lambda: app.screen.query_one("#history-table").row_count == 1, 10, "the run's row")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query(RunView), 10, "the run's tab")
        view = app.screen.query_one(RunView)
        plot = view.query_one("#plot-loss", CurvePlot)
        await wait_for(pilot, lambda: view.up_to_date and plot.total == 123, 10, "the loss curve")  # 120 steps, 3 val
        await wait_for(pilot, lambda: fitted(plot), 5, "the curve on a canvas of the plot's size")
        before = plot.query_one("#plot", StyledCanvas).size

        await pilot.resize_terminal(200, 60)
        await wait_for(pilot, lambda: plot.query_one("#plot", StyledCanvas).size != before, 5, "the resize")
        await wait_for(pilot, lambda: fitted(plot), 5, "the curve redrawn at the new size")

        canvas = plot.query_one("#plot", StyledCanvas)
        style = canvas.rich_style
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await pilot.pause(0.2)
        assert canvas.rich_style == DOMNode.rich_style.fget(canvas)  # the cached style follows the theme
        assert canvas.rich_style != style

    run_app(scenario, start_mode="history")
