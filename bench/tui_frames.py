"""What one full dashboard redraw costs the UI thread: `RunView.redraw()` of all six plots, then
Textual's compositor frames until the screen is up to date (headless `run_test` at 200×60).

A writer process (bench/tui_perf.py's) leaves a running run with `--preload` steps and no further
events, so nothing but the forced redraw changes the screen. Prints medians of `--repeats` redraws.

    .venv/bin/python bench/tui_frames.py [--preload 200] [--repeats 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


async def measure(home: Path, preload: int, repeats: int) -> tuple[float, float, float]:
    import textual._compositor as compositor

    from fbt_tui.app import FbtApp
    from fbt_tui.widgets.run_view import RunView

    frames: list[float] = []
    render_update = compositor.Compositor.render_update

    def timed_render_update(self, *args, **kwargs):  # the compositor's share of each frame
        t = time.perf_counter()
        result = render_update(self, *args, **kwargs)
        frames.append((time.perf_counter() - t) * 1000)
        return result

    compositor.Compositor.render_update = timed_render_update  # type: ignore[method-assign]
    writer = subprocess.Popen([sys.executable, str(BENCH / "tui_perf.py"), "--writer", str(home), "0.001",
                               "600", str(preload)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    writer.stdout.readline()
    app = FbtApp(start_mode="dashboard")
    redraw, compose, count = [], [], []
    try:
        async with app.run_test(size=(200, 60)) as pilot:
            while not app.screen.query(RunView) or app.screen.query_one(RunView).model.step < preload:
                await pilot.pause(0.1)
            view = app.screen.query_one(RunView)
            await pilot.pause(1.0)
            for _ in range(repeats):
                frames.clear()
                t = time.perf_counter()
                view.redraw()
                redraw.append((time.perf_counter() - t) * 1000)
                while not view.up_to_date:
                    await pilot.pause(0.01)
                await pilot.pause(0.15)
                compose.append(sum(frames))
                count.append(len(frames))
    finally:
        compositor.Compositor.render_update = render_update  # type: ignore[method-assign]
        writer.kill()
        writer.wait()
        app.cleanup()
    return statistics.median(redraw), statistics.median(compose), statistics.median(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preload", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FBT_HOME"] = tmp
        redraw, compose, frames = asyncio.run(measure(Path(tmp), args.preload, args.repeats))
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"{args.preload} steps on the curves, 200×60, medians of {args.repeats} forced redraws:")
    print(f"  redraw() on the UI thread   {redraw:6.1f} ms")
    print(f"  compositor, all its frames  {compose:6.1f} ms in {frames:.0f} frame(s)")


if __name__ == "__main__":
    main()
