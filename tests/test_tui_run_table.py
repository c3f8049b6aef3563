"""History's table on its own, in a bare Textual app: cursor, scrolling, clicks, column widths."""

import asyncio

from rich.text import Text
from textual.app import App, ComposeResult

from fbt_tui.widgets.run_table import RunTable, TableColumn

COLUMNS = [TableColumn("mark", " ", width=1), TableColumn("id", "id"), TableColumn("top1", "top-1"),
           TableColumn("tag", "tag", width=4)]


def rows(n: int) -> list[tuple[str, list[Text]]]:
    return [(f"run{i:03d}", [Text(""), Text(f"run{i:03d}"), Text(f"{i / 10:.1f}", justify="right"), Text("")])
            for i in range(n)]


class TableApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield RunTable(id="t")

    def on_run_table_row_highlighted(self, event: RunTable.RowHighlighted) -> None:
        self.messages.append(("highlighted", event.row_key))

    def on_run_table_row_selected(self, event: RunTable.RowSelected) -> None:
        self.messages.append(("selected", event.row_key))

    def on_run_table_header_selected(self, event: RunTable.HeaderSelected) -> None:
        self.messages.append(("header", event.column_key))


def lines(table: RunTable) -> list[str]:
    return [table.render_line(y).text for y in range(table.scrollable_content_region.height)]


def drive(scenario) -> None:
    async def main() -> None:
        app = TableApp()
        async with app.run_test(size=(40, 10)) as pilot:
            table = app.query_one(RunTable)
            table.focus()
            await scenario(app, table, pilot)

    asyncio.run(main())


def test_the_cursor_moves_and_the_rows_scroll_under_a_header_that_stays():
    async def scenario(app, table, pilot):
        table.show(COLUMNS, rows(100))
        await pilot.pause()
        assert lines(table)[0].split() == ["id", "top-1", "tag"]
        assert lines(table)[1].split() == ["run000", "0.0"] and table.cursor_key == "run000"
        await pilot.press("down", "down")
        assert table.cursor_key == "run002" and app.messages == [("highlighted", "run001"), ("highlighted", "run002")]
        await pilot.press("end")
        await pilot.pause()
        shown = lines(table)
        assert table.cursor_key == "run099" and shown[0].split() == ["id", "top-1", "tag"]
        assert shown[-1].split() == ["run099", "9.9"]  # scrolled so that the cursor's row is the last one on screen
        await pilot.press("pageup")
        await pilot.pause()
        assert table.cursor_row < 99 and any(table.cursor_key in line for line in lines(table)[1:])
        await pilot.press("home", "up")
        await pilot.pause()
        assert table.cursor_key == "run000" and lines(table)[1].split()[0] == "run000"
        await pilot.hover(RunTable, offset=(2, 3))
        assert table.hover_row == 2
        table.scroll_to(y=5, animate=False, immediate=True)  # the wheel: another row under the pointer
        assert table.hover_row is None
        await pilot.press("enter")
        assert app.messages[-1] == ("selected", "run000")

    drive(scenario)


def test_clicks_select_a_row_or_a_header():
    async def scenario(app, table, pilot):
        table.show(COLUMNS, rows(5))
        await pilot.pause()
        await pilot.click(RunTable, offset=(6, 3))  # the third row: moves the cursor there
        assert table.cursor_key == "run002" and app.messages == [("highlighted", "run002")]
        await pilot.click(RunTable, offset=(6, 3))  # the cursor's own row: selects it
        assert app.messages[-1] == ("selected", "run002")
        await pilot.click(RunTable, offset=(11, 0))  # the first cell of "top-1" in the header: mark 3 + id 8 wide
        assert app.messages[-1] == ("header", "top1")

    drive(scenario)


def test_columns_fit_their_widest_cell_and_fixed_ones_clip_with_an_ellipsis():
    async def scenario(app, table, pilot):
        data = rows(3)
        data[1][1][3] = Text("a-long-tag")
        table.show(COLUMNS, data, cursor_key="run002")
        await pilot.pause()
        assert table.cursor_key == "run002"  # the cursor starts where it was asked to
        assert table.widths == [1, 6, 5, 4]  # "top-1" is wider than any value; the tag column is fixed
        assert lines(table)[2].split()[-1] == "a-l…"
        table.update_row("run001", [Text("●"), Text("run001-renamed"), Text("1.0"), Text("")])
        await pilot.pause()
        assert table.widths[1] == len("run001-renamed") and "run001-renamed" in lines(table)[2]
        table.show(COLUMNS, rows(3)[:1], cursor_key="gone")
        assert table.cursor_key == "run000"
        table.clear()
        assert table.row_count == 0 and table.cursor_key is None
        table.action_select()  # nothing to select: no message, no error
        await pilot.pause()
        assert not any(kind == "selected" for kind, _ in app.messages)

    drive(scenario)


def visible_keys(table: RunTable) -> list[str]:
    return [line.split()[0] for line in lines(table)[1:] if line.strip()]


def test_the_cursor_stays_in_view_and_on_its_line_when_the_rows_change():
    async def scenario(app, table, pilot):
        table.show(COLUMNS, rows(100), cursor_key="run090")
        await pilot.pause()
        assert table.cursor_key == "run090" and "run090" in visible_keys(table)
        table.show(COLUMNS, [r for r in rows(100) if r[0] == "run090"], cursor_key="run090")  # a filter
        await pilot.pause()
        table.show(COLUMNS, rows(100), cursor_key="run090")  # the filter cleared: a scrollbar again
        await pilot.pause()
        assert "run090" in visible_keys(table)
        line = visible_keys(table).index("run090")
        table.show(COLUMNS, rows(100)[::-1], cursor_key="run090")  # re-sorted: the row keeps its line
        await pilot.pause()
        assert table.cursor_key == "run090" and visible_keys(table).index("run090") == line
        table.show(COLUMNS, [r for r in rows(100)[::-1] if r[0] != "run090"], cursor_key="run090")  # trashed
        await pilot.pause()
        assert table.cursor_key == "run089" and "run089" in visible_keys(table)  # its neighbour
        await pilot.press("end")  # the cursor on the bottom line
        table.styles.height = 4  # the screen gives the table less room (a filter box opened)
        await pilot.pause()
        await pilot.pause()
        assert table.cursor_key == "run000" and visible_keys(table)[-1] == "run000"

    drive(scenario)


def test_wide_columns_clip_to_their_maximum_and_scroll_sideways_a_column_at_a_time():
    async def scenario(app, table, pilot):
        columns = [TableColumn("id", "id"), TableColumn("name", "name", max_width=12), TableColumn("top1", "top-1")]
        data = [(f"r{i}", [Text(f"r{i}"), Text("a-very-long-run-name-indeed"), Text("1.0")]) for i in range(3)]
        table.show(columns, data)
        table.styles.width = 12
        await pilot.pause()
        assert table.widths == [2, 12, 5] and lines(table)[1].startswith(" r0  a-very-")
        await pilot.press("right")
        assert table.scroll_offset.x == 4  # the name column's left edge
        await pilot.press("right", "left")
        assert table.scroll_offset.x == 4
        await pilot.hover(RunTable, offset=(1, 2))
        assert table.hover_row == 1
        await pilot.hover(RunTable, offset=(1, 0))  # the header is no row
        assert table.hover_row is None
        await pilot.hover(RunTable, offset=(1, 2))
        await pilot.press("down")  # as DataTable: the keyboard's cursor alone is highlighted
        assert table.hover_row is None

        measured = []
        table._measure = lambda: measured.append(1)  # counted: a re-measure redraws every row
        table.update_row("r1", [Text("r1"), Text("another-very-long-name"), Text("2.0")])
        assert measured == []  # clipped to the same 12 cells: nothing to re-measure
        table.update_row("r1", [Text("r1"), Text("x"), Text("100.25")])
        assert measured == [1]  # a wider top-1 column

    drive(scenario)
