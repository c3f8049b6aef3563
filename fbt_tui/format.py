"""Short human formats for numbers, times and statuses (the CLI's own where it has one)."""

from __future__ import annotations

import textwrap

from rich.text import Text

from fbt_engine.formats import best_at, counted, duration, percent as pct, when  # noqa: F401  (re-exported)

STATUS_MARKS = {"running": "●", "starting": "◌", "finished": "✓", "failed": "✗", "crashed": "‼",
                "interrupted": "◼", "cancelled": "◼", "failed to start": "✗"}
STATUS_STYLES = {"running": "$success", "starting": "$warning", "finished": "$text-primary", "failed": "$error",
                 "crashed": "$error", "interrupted": "$warning", "cancelled": "$warning",
                 "failed to start": "$error"}


def status_markup(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, '')}]{STATUS_MARKS.get(status, '?')} {status}[/]"


def count(n: int | None) -> str:
    """Parameter counts: 308,826 → 309k, 21,800,000 → 21.8M."""
    if n is None:
        return "–"
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.0f}k"
    return str(n)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.{digits}f}".rstrip("0").rstrip(".")


def fixed(value: float | None, places: int = 2) -> Text:
    """A table cell of a column of numbers: the same decimals in every row, right-aligned."""
    if value is None:
        return Text("–", justify="right")
    shown = f"{value:.{places}f}"
    return Text(shown.removeprefix("-") if float(shown) == 0 else shown, justify="right")  # no "-0.00"



def literal(text: str) -> str:
    """Text for Textual markup, shown as is: every "[" escaped (textual.markup.escape leaves a
    lone "[" alone, and a closing tag right after it then swallows both)."""
    return text.replace("[", r"\[")


WIDE = 120  # columns: narrower, the dashboard shows one plot at a time and Presets narrows its side

LOG_INDENT = " " * 9  # continuation lines start past the engine log's "HH:MM:SS " stamp
LOG_MIN_WIDTH = 20  # narrower, the pane is not laid out yet (or hidden): lines go in unwrapped


def wrap_log(lines: list[str], width: int) -> list[str]:
    """The engine's log lines folded to `width` columns, for a pane that does not wrap."""
    if width < LOG_MIN_WIDTH:
        return lines
    return [part for line in lines
            for part in textwrap.wrap(line, width, subsequent_indent=LOG_INDENT, break_on_hyphens=False) or [""]]
