"""A row-cursor table that renders only the lines on screen, each row from a cached strip.

History lists every run. Textual's DataTable lays every visible cell out through Rich (about 0.3 ms
a cell on a 2-core machine: 170 ms of CPU for History's first screenful of 56 rows by 11 columns) and
measures each row as it is added, so a thousand runs had to be added a chunk per frame. Here a row is
one Text joined from its cells, rendered once into a strip and cropped to the scroll position: a
screenful costs a few milliseconds, and the whole list is handed over at once.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

PAD = 1  # blank cells on each side of a column


@dataclass(frozen=True)
class TableColumn:
    key: str
    label: str
    width: int | None = None  # the content's width; None: as wide as the widest of label and cells
    max_width: int | None = None  # for a width of None: clip wider cells with an ellipsis


def _width(column: TableColumn, widest: int) -> int:
    """The width of `column` whose widest label or cell is `widest` cells wide."""
    if column.width is not None:
        return column.width
    return widest if column.max_width is None else min(widest, column.max_width)


def column_widths(columns: Sequence[TableColumn], rows: Iterable[list[Text]]) -> list[int]:
    widest = [cell_len(column.label) for column in columns]
    for row in rows:
        widest = [max(w, cell.cell_len) for w, cell in zip(widest, row)]
    return [_width(column, w) for column, w in zip(columns, widest)]


def table_width(widths: Sequence[int]) -> int:
    """The cells a table of columns `widths` wide takes, padding included."""
    return sum(w + 2 * PAD for w in widths)


class RunTable(ScrollView, can_focus=True):
    """Rows of Text cells under a header that stays put; one row holds the cursor. Posts
    RowHighlighted when the cursor moves, RowSelected on enter (or a click on the cursor's row) and
    HeaderSelected on a click in the header."""

    COMPONENT_CLASSES = {"run-table--header", "run-table--even-row", "run-table--hover", "run-table--cursor"}
    # DataTable's look, so History reads as it did
    DEFAULT_CSS = """
    RunTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .run-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        &:dark > .run-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .run-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .run-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .run-table--hover {
            background: $block-hover-background;
        }
        & > .run-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,ctrl+home", "move_to(0)", "First", show=False),
        Binding("end,ctrl+end", "move_to(-1)", "Last", show=False),
        Binding("left", "column(-1)", "Previous column", show=False),
        Binding("right", "column(1)", "Next column", show=False),
        Binding("enter", "select", "Select", show=False),
    ]

    class Changed(Message):
        """The base of the table's messages. None derives from another, so that a handler of one
        is never called for another (Textual dispatches along a message's classes)."""

        def __init__(self, table: RunTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> RunTable:
            return self.table

    class RowChanged(Changed):
        def __init__(self, table: RunTable, row_key: str) -> None:
            super().__init__(table)
            self.row_key = row_key

    class RowHighlighted(RowChanged):
        """The cursor moved to `row_key`."""

    class RowSelected(RowChanged):
        """Enter, or a click on the cursor's row."""

    class HeaderSelected(Changed):
        """A click on a column's header."""

        def __init__(self, table: RunTable, column_key: str) -> None:
            super().__init__(table)
            self.column_key = column_key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns: list[TableColumn] = []
        self.widths: list[int] = []
        self.row_keys: list[str] = []
        self.cursor_row = 0
        self.hover_row: int | None = None
        self._cells: dict[str, list[Text]] = {}
        self._strips: dict[tuple[str | None, Style, bool], Strip] = {}  # None: the header
        self._styles: dict[str, Style] = {}
        self._header: list[Text] = []

    # -- contents --------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.row_keys)

    @property
    def cursor_key(self) -> str | None:
        return self.row_keys[self.cursor_row] if self.row_keys else None

    def show(self, columns: Sequence[TableColumn], rows: Sequence[tuple[str, list[Text]]],
             cursor_key: str | None = None) -> None:
        """Replace every column and row. The cursor goes to `cursor_key` when it is among them, else
        it keeps its row number (the neighbour of a row that left); either way its row keeps its
        line on the screen where it can."""
        line = self.cursor_row - self.scroll_offset.y
        self.columns = list(columns)
        self.row_keys = [key for key, _ in rows]
        self._cells = dict(rows)
        self._measure()
        index = {key: i for i, key in enumerate(self.row_keys)}.get(cursor_key, self.cursor_row)
        self.cursor_row = min(index, max(0, self.row_count - 1))
        self.hover_row = None  # the mouse is over another row now, if any: its next move says which
        self._place_cursor(line)
        # the table may change height or gain its scrollbar in the next layout: place it again then
        self.call_after_refresh(self._place_cursor, line)

    def clear(self) -> None:
        self.show(self.columns, [])

    def update_row(self, key: str, cells: list[Text]) -> None:
        self._cells[key] = cells
        if any(_width(column, cell.cell_len) > width
               for column, cell, width in zip(self.columns, cells, self.widths)):
            self._measure()
        else:
            self._strips = {k: v for k, v in self._strips.items() if k[0] != key}
            self.refresh()

    def _measure(self) -> None:
        self._header = [Text(column.label) for column in self.columns]
        self.widths = column_widths(self.columns, self._cells.values())
        self._strips.clear()
        self.virtual_size = Size(table_width(self.widths), self.row_count + 1)
        self.refresh()

    # -- drawing ---------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()  # focus, theme or CSS changed: the strips' keys carry the old styles
        self.refresh()

    def _style(self, name: str = "") -> Style:
        """A component's style, or the table's own for ""."""
        if name not in self._styles:
            self._styles[name] = self.get_component_rich_style(name) if name else self.rich_style
        return self._styles[name]

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        index = scroll_y + y - 1
        if y == 0:
            strip = self._strip(None, self._header, self._style("run-table--header"))
        elif index < self.row_count:
            key = self.row_keys[index]
            if index == self.cursor_row:
                strip = self._strip(key, self._cells[key], self._style("run-table--cursor"), over=True)
            elif index == self.hover_row:
                strip = self._strip(key, self._cells[key], self._style("run-table--hover"))
            else:
                strip = self._strip(key, self._cells[key], self._style("run-table--even-row" if index % 2 == 0 else ""))
        else:
            return Strip.blank(width, self._style())
        return strip.crop_extend(scroll_x, scroll_x + width, self._style())

    def _strip(self, key: str | None, cells: list[Text], style: Style, over: bool = False) -> Strip:
        """A row's whole line: the cells clipped or padded to their columns, on `style`, or with
        `style` over the cells' own colours (the cursor's, as in DataTable)."""
        cached = self._strips.get((key, style, over))
        if cached is None:
            if len(self._strips) > 4 * (self.row_count + 1):  # strips of old styles (a theme, the cursor's)
                self._strips.clear()
            line = Text(end="", no_wrap=True)
            for cell, width in zip(cells, self.widths):
                text = cell.copy()
                text.truncate(width, overflow="ellipsis")
                text.align(cell.justify or "left", width)
                line.append(" " * PAD)
                line.append_text(text)
                line.append(" " * PAD)
            segments = line.render(self.app.console)
            styled = Segment.apply_style(segments, post_style=style) if over else Segment.apply_style(segments, style)
            cached = self._strips[key, style, over] = Strip(styled, line.cell_len)
        return cached

    # -- the cursor ------------------------------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        if not self.row_keys:
            return
        row = max(0, min(row, self.row_count - 1))
        moved, self.cursor_row = row != self.cursor_row, row
        self.hover_row = None  # as DataTable: the keyboard's cursor alone is highlighted
        self._scroll_to_cursor()
        self.refresh()
        if moved:
            self.post_message(self.RowHighlighted(self, self.row_keys[row]))

    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)  # the header's line is not the rows'

    def _scroll_to_cursor(self) -> None:
        top = self.scroll_offset.y
        if self.cursor_row < top:
            self._scroll_rows(self.cursor_row)
        elif self.cursor_row >= top + self._body_height():
            self._scroll_rows(self.cursor_row - self._body_height() + 1)

    def _place_cursor(self, line: int) -> None:
        """Scroll so that the cursor's row is the `line`-th on screen, or as near as fits."""
        self._scroll_rows(self.cursor_row - min(max(line, 0), self._body_height() - 1))

    def _scroll_rows(self, top: int) -> None:
        # forced: a table that had no scrollbar yet (one row, say) would otherwise ignore it
        self.scroll_to(y=max(0, top), animate=False, immediate=True, force=True)

    def on_resize(self) -> None:
        self.call_after_refresh(self._scroll_to_cursor)  # a shorter table must still show the cursor

    def action_move(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self._body_height() - 1))

    def _edges(self) -> list[int]:
        """Where each column starts, and where the last one ends."""
        return list(itertools.accumulate((w + 2 * PAD for w in self.widths), initial=0))

    def action_column(self, direction: int) -> None:
        """Scroll sideways to the previous or next column's left edge."""
        edges, x = self._edges(), self.scroll_offset.x
        target = max((e for e in edges if e < x), default=0) if direction < 0 else \
            min((e for e in edges if e > x), default=x)
        self.scroll_to(x=target, animate=False, immediate=True)

    def action_move_to(self, row: int) -> None:
        self.move_cursor(row if row >= 0 else self.row_count - 1)

    def action_select(self) -> None:
        if self.row_keys:
            self.post_message(self.RowSelected(self, self.row_keys[self.cursor_row]))

    def _row_at(self, event: events.MouseEvent) -> int | None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y == 0:
            return None
        row = self.scroll_offset.y + offset.y - 1
        return row if row < self.row_count else None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        row = self._row_at(event)
        if row != self.hover_row:
            self.hover_row = row
            self.refresh()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.hover_row = None  # another row is under the pointer now: its next move says which

    def on_leave(self) -> None:
        if self.hover_row is not None:
            self.hover_row = None
            self.refresh()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = bisect.bisect_right(self._edges(), offset.x + self.scroll_offset.x) - 1
            if column < len(self.columns):
                self.post_message(self.HeaderSelected(self, self.columns[column].key))
            return
        row = self._row_at(event)
        if row is not None:
            if row == self.cursor_row:
                self.action_select()
            else:
                self.move_cursor(row)
