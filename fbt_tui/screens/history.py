"""History mode: every run from the SQLite index, sortable, filterable, with the run actions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.widgets import Input, Static

from fbt_engine.paths import index_path
from fbt_engine.store.export import ExportError, export_metrics, export_student
from fbt_engine.store.index import index_stamp
from fbt_engine.store.runs import STATUSES, RunStore, tag_problem
from fbt_engine.store.summary import RunSummary

from fbt_tui.format import STATUS_MARKS, STATUS_STYLES, best_at, counted, duration, literal, pct, when
from fbt_tui.screens.base import FbtScreen
from fbt_tui.screens.compare import CompareScreen
from fbt_tui.screens.dialogs import ConfirmDialog, PromptDialog
from fbt_tui.screens.export import STUDENT_WEIGHTS, ExportDialog, ExportRequest
from fbt_tui.widgets.header import FbtHeader
from fbt_tui.widgets.keybar import KeyBar
from fbt_tui.widgets.run_table import RunTable, TableColumn, column_widths, table_width
from fbt_tui.widgets.typed import TypedInput

REFRESH_S = 2.0  # a run started elsewhere shows as soon as its tab does (WATCH_S); active rows change
MARK = TableColumn("mark", " ", width=1)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    sort: Callable[[RunSummary], Any]
    cell: Callable[[RunSummary], Any]
    max_width: int | None = None  # clipped beyond it, half of it when compact (the detail line has it whole)
    high_first: bool = False  # sorted highest (best, longest, newest) first when chosen

    def table_column(self, compact: bool) -> TableColumn:
        cap = self.max_width // 2 if compact and self.max_width else self.max_width
        return TableColumn(self.key, self.label, max_width=cap)


def _status_cell(s: RunSummary) -> Text:
    style = {"$success": "green", "$error": "red", "$warning": "yellow", "$text-primary": "blue"}.get(
        STATUS_STYLES.get(s.status, ""), "")
    return Text(f"{STATUS_MARKS.get(s.status, '?')} {s.status}", style=style)


COLUMNS = (
    Column("id", "id", lambda s: s.id, lambda s: s.id),
    Column("name", "name", lambda s: s.name, lambda s: s.name if s.name != s.id else "", max_width=32),
    Column("pair", "teacher → student", lambda s: s.pair, lambda s: s.pair),
    Column("method", "method", lambda s: s.method, lambda s: s.method),
    Column("status", "status", lambda s: s.status, _status_cell),
    Column("best", "best @ep", lambda s: s.best_top1,
           lambda s: Text(best_at(s.best_top1, s.best_epoch), justify="right"), high_first=True),
    Column("final", "final", lambda s: s.final_top1, lambda s: Text(pct(s.final_top1), justify="right"),
           high_first=True),
    Column("duration", "duration", lambda s: s.elapsed(time.time()),
           lambda s: Text(duration(s.elapsed(time.time())), justify="right"),
           high_first=True),
    Column("tags", "tags", lambda s: ",".join(s.tags), lambda s: ",".join(s.tags), max_width=24),
    Column("started", "started", lambda s: s.started, lambda s: when(s.started), high_first=True),
)
# The table's layouts (columns left out, compact), richest first: History shows the first that fits
# its width. A column left out is whole in the detail line below the table (the id holds the start
# time too); a compact layout also shortens the id to its time and suffix and halves the caps.
_NARROW = frozenset({"started", "pair", "duration"})
DATE_CELLS = len("20261207-")  # of a run's id
LAYOUTS = ((frozenset(), False), (frozenset({"started"}), False), (frozenset({"started", "pair"}), False),
           (_NARROW, False), (_NARROW, True), (_NARROW | {"tags"}, True))
BY_KEY = {c.key: c for c in COLUMNS}


def sort_rows(rows: list[RunSummary], key: str, reverse: bool) -> list[RunSummary]:
    """Missing values (no accuracy yet, no duration) go last whichever the direction."""
    column = BY_KEY[key]
    present = [r for r in rows if column.sort(r) is not None]
    missing = [r for r in rows if column.sort(r) is None]
    return sorted(present, key=column.sort, reverse=reverse) + missing


FILTER_FIELDS: dict[str, Callable[[RunSummary, str], bool]] = {
    "status": lambda s, value: s.status.startswith(value),
    "tag": lambda s, value: value in [t.lower() for t in s.tags],
    "method": lambda s, value: s.method.lower() == value,
}


def matches(s: RunSummary, query: str) -> bool:
    """Every word must match: `field:value` for the FILTER_FIELDS, else text anywhere in the row."""
    # what the row and its detail line show: its start "12-07 13:05" too, a subset's "5000" as typed
    haystack = " ".join([s.id, s.name, s.pair, s.method, s.status, s.data, str(s.subset or ""), s.note,
                         *s.tags, when(s.started)]).lower()
    for word in query.lower().split():
        field_, sep, value = word.partition(":")
        test = FILTER_FIELDS.get(field_) if sep else None
        if not (test(s, value) if test else word in haystack):
            return False
    return True


def unknown_fields(query: str) -> list[str]:
    """The `x:` of words that look like a field filter but name no field (searched as text)."""
    fields = (word.partition(":")[0] for word in query.lower().split() if ":" in word)
    return [f for f in fields if f.isalpha() and f not in FILTER_FIELDS]


def unknown_statuses(query: str) -> list[str]:
    """The values of `status:` words that begin no status: they match no run, and say why."""
    values = (word.partition(":")[2] for word in query.lower().split() if word.startswith("status:"))
    return [v for v in values if not any(status.startswith(v) for status in STATUSES)]


class HistoryScreen(FbtScreen):
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("space", "mark", "Mark ↓"),  # marks and moves on, as in a file manager
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort(False)", "Sort"),
        Binding("S", "sort(True)", "Reverse sort", show=False),
        Binding("c", "compare", "Compare"),
        Binding("e", "export", "Export"),
        Binding("t", "tag", "Tag"),
        Binding("n", "note", "Note"),
        Binding("x", "trash", "Trash"),
        Binding("r", "restore", "Restore"),
        Binding("v", "toggle_trash", "Trash view"),
        Binding("escape", "clear_filter", "Clear the filter, else the marks", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[RunSummary] = []
        self.shown: list[RunSummary] = []
        self.marked: dict[str, None] = {}  # in marking order: the first one marked is the baseline
        self.sort_key, self.sort_reverse = "started", True
        self.trash_view = False
        self.left_out: frozenset[str] = frozenset()
        self.compact = False
        self.fitted_to: int | None = None  # the table's room the layout was chosen for (_table_room)
        self._keep_cursor: str | None = None  # the cursor's run while a filter hides every row
        self._index_stamp: tuple[int, ...] = ()  # the index as last read (see _refresh_if_active)
        self.loaded = False  # the first read of the index is done
        self.export_folder: Path | None = None  # where the last export went: the next one's default

    def compose(self) -> ComposeResult:
        yield FbtHeader("history")
        yield Static(id="history-title")
        yield TypedInput(placeholder="filter: words, status:crashed, tag:best, method:fbt — enter to keep, esc to clear",
                         id="history-filter")
        yield RunTable(id="history-table")
        yield Static(id="history-detail")
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.query_one("#history-filter").display = False
        self.set_interval(REFRESH_S, self._refresh_if_active)

    def on_resize(self) -> None:
        self.call_after_refresh(self._refit)  # once the table has its new size

    def _refit(self) -> None:
        if self._table_room() != self.fitted_to:
            self.populate()

    def _table_room(self) -> int:
        """The cells a row may take: the table's width less a vertical scrollbar's, which more rows
        than fit would add."""
        table = self.query_one(RunTable)
        return max(0, table.content_region.width - table.styles.scrollbar_size_vertical)

    def columns(self) -> list[Column]:
        return [c for c in COLUMNS if c.key not in self.left_out]

    @staticmethod
    def _layout(full: list[list[Text]], width: int) -> tuple[frozenset[str], bool]:
        """The first of LAYOUTS whose table fits `width`, else the last, measured on the rows'
        cells in the full layout. (A 120-column screen had every column: a run's long name or tags
        pushed the scores half off it.)"""
        columns = [MARK, *(c.table_column(False) for c in COLUMNS)]
        wide = dict(zip([c.key for c in columns], column_widths(columns, full)))
        narrow = {c.key: w if c.max_width is None else min(w, c.max_width)
                  for c, w in zip([MARK, *(c.table_column(True) for c in COLUMNS)], wide.values())}
        narrow["id"] = max(cell_len("id"), wide["id"] - DATE_CELLS)
        for left_out, compact in LAYOUTS:
            widths = narrow if compact else wide
            if table_width([w for key, w in widths.items() if key not in left_out]) <= width:
                return left_out, compact
        return LAYOUTS[-1]

    def on_screen_resume(self) -> None:
        if self.app.started:
            self.reload()
        self.query_one(RunTable).focus()

    def _refresh_if_active(self) -> None:
        """Runs change the index at their epoch ends, the app's own and any other's alike (a
        headless `fbt run`, a tag from the CLI): a changed index file is read again. A stat of it
        is all an idle History costs. While a row says running, it is read anyway: a run killed
        outright writes nothing, and reading is what finds it crashed (its duration ticks then too)."""
        if self.app.screen is not self:
            return
        stamp = index_stamp(index_path())
        if stamp != self._index_stamp or self.app.manager.active() or any(r.status == "running" for r in self.rows):
            self._index_stamp = stamp
            self.reload()

    # -- loading and showing ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="history-load", exit_on_error=False)
    def reload(self) -> None:
        store = RunStore()
        try:
            rows = store.list(include_trashed=True)  # also marks crashed runs
        finally:
            store.close()
        self.app.call_from_thread(self._loaded, rows)

    def _loaded(self, rows: list[RunSummary]) -> None:
        if rows == self.rows and self.loaded:
            if any(r.status == "running" for r in self.shown):  # their durations tick
                self._update_changed(self.shown, running_too=True)
            return  # a periodic reload with nothing new: no other repaint
        self.loaded = True
        previous, self.rows = self.shown, rows
        shown = self._visible_rows()
        if [r.id for r in shown] == [r.id for r in previous]:
            self.shown = shown
            self._update_changed(previous)
            return
        # sorted newest first, a cursor on the first row follows a run that arrives above it: "the
        # latest run" is what it was on; elsewhere the cursor keeps its run
        newest_first = self.sort_key == "started" and self.sort_reverse
        arrived = newest_first and shown and previous and shown[0].id not in {r.id for r in previous}
        self.populate(shown[0].id if arrived and self.query_one(RunTable).cursor_row == 0 else None)

    def in_view(self) -> list[RunSummary]:
        """The runs of the view, the trash or the rest, before the filter."""
        return [r for r in self.rows if r.trashed == self.trash_view]

    def _visible_rows(self) -> list[RunSummary]:
        query = self.query_one("#history-filter", Input).value
        rows = [r for r in self.in_view() if matches(r, query)]
        return sort_rows(rows, self.sort_key, self.sort_reverse)

    def _cells(self, r: RunSummary) -> list[Text]:
        return self._row(r, self.columns(), self.compact)

    def _row(self, r: RunSummary, columns: Iterable[Column], compact: bool) -> list[Text]:
        """The mark, then the cells of `columns`, each a Text: never markup, so a run named "[x]"
        keeps its brackets."""
        cells = [c.cell(r) for c in columns]
        if compact:
            cells[0] = r.id[DATE_CELLS:]  # the date is in the detail line below; time and suffix stay unique
        return [Text("●" if r.id in self.marked else ""), *(c if isinstance(c, Text) else Text(c) for c in cells)]

    def _update_changed(self, previous: list[RunSummary], running_too: bool = False) -> None:
        """The rows that changed; with `running_too`, the running ones as well (their durations)."""
        table = self.query_one(RunTable)
        for old, new in zip(previous, self.shown):
            if old != new or (running_too and new.status == "running"):
                table.update_row(new.id, self._cells(new))
        if self.fitted_to is not None and table_width(table.widths) > self.fitted_to:  # a tag added, a score come
            self.populate()
            return
        self._title()
        self._detail()

    def populate(self, cursor_key: str | None = None) -> None:
        """Rebuild the table from the rows, sorted and filtered; the cursor stays on its run, or
        goes to `cursor_key`'s."""
        table = self.query_one(RunTable)
        keep = cursor_key or table.cursor_key or self._keep_cursor
        self.shown = self._visible_rows()
        self.fitted_to = self._table_room()
        # measured on every run of the view, not only those the filter shows: the columns stay put as
        # the filter is typed; each row's cells are built once (a thousand runs)
        full = {r.id: self._row(r, COLUMNS, compact=False) for r in self.in_view()}
        self.left_out, self.compact = self._layout(list(full.values()), self.fitted_to)
        columns = self.columns()
        if self.compact:
            rows = [self._row(r, columns, compact=True) for r in self.shown]
        else:
            kept = [0, *(1 + i for i, c in enumerate(COLUMNS) if c.key not in self.left_out)]
            rows = [[full[r.id][i] for i in kept] for r in self.shown]
        table.show([MARK, *(c.table_column(self.compact) for c in columns)],
                   list(zip([r.id for r in self.shown], rows)), cursor_key=keep)
        self._keep_cursor = None if self.shown else keep
        self._title()
        self._detail()

    def _title(self) -> None:
        arrow = "▼" if self.sort_reverse else "▲"
        view = "[b $warning]trash[/] (r restores)" if self.trash_view else "runs"
        query = self.query_one("#history-filter", Input).value
        parts = [f"{view}: {len(self.shown)} of {len(self.in_view())}",
                 f"sorted by {BY_KEY[self.sort_key].label} {arrow}"]
        if query:
            parts.append(f"filter “{literal(query)}”")
            if unknown := unknown_fields(query):
                parts.append(f"[$warning]{literal(unknown[0])}: is no field, searched as text "
                             f"({', '.join(f'{f}:' for f in FILTER_FIELDS)} are)[/]")
            if unknown := unknown_statuses(query):
                parts.append(f"[$warning]“{literal(unknown[0])}” is no status ({', '.join(STATUSES)})[/]")
        if self.marked:
            hidden = len(self.marked) - len(self.marked_shown())
            left_out = f", {hidden} hidden by the filter and left out" if hidden else ""
            parts.append(f"{len(self.marked)} marked{left_out} (c compares)")
        self.query_one("#history-title", Static).update(" · ".join(parts))

    def cursor_id(self) -> str | None:
        return self.query_one(RunTable).cursor_key

    def marked_shown(self) -> list[str]:
        """The marked runs that the filter shows, in marking order: what the actions act on (a run
        marked and then filtered out stays marked, but is not trashed or exported unseen)."""
        shown = {r.id for r in self.shown}
        return [rid for rid in self.marked if rid in shown]

    def selected_ids(self) -> list[str]:
        """The marked runs shown; else the one under the cursor."""
        if marked := self.marked_shown():
            return marked
        current = self.cursor_id()
        return [current] if current else []

    def targets(self, verb: str) -> list[str]:
        """The runs an action takes (selected_ids), or a word on why it does nothing."""
        ids = self.selected_ids()
        if not ids:
            why = ("there are no runs yet." if not self.rows else "the trash is empty." if self.trash_view and
                   not any(r.trashed for r in self.rows) else "none matches the filter.")
            self.notify(f"No run to {verb}: {why}", severity="warning")
        return ids

    @on(RunTable.RowHighlighted)
    def _detail(self) -> None:
        rid = self.cursor_id()
        row = next((r for r in self.shown if r.id == rid), None)
        text = ""
        if row is not None:
            name = f" {literal(row.name)} ·" if row.name != row.id else ""
            tags = f" · tags {literal(', '.join(row.tags))}" if row.tags else ""
            # the start early in the line, where a wrap does not part it from its date; a teacher
            # and a fusion model only where the method has them
            scores = "".join(f" · {what} {pct(top1)}" for what, top1 in
                             (("teacher", row.teacher_top1), ("best fusion", row.fusion_top1)) if top1 is not None)
            text = (f"[b]{literal(row.id)}[/]{name} started {when(row.started)} · {literal(row.pair)} · "
                    f"{literal(row.data)} · {row.epochs_done}/{row.epochs_total} epochs done · "
                    f"{duration(row.elapsed(time.time()))}{scores}{tags}")
            if row.note:
                text += f"\n[i]note:[/] {literal(row.note)}"
        elif self.loaded and not self.rows:
            text = ("No runs yet. Launch one from Presets ([b]p[/]), or in a shell: [b]fbt run "
                    "presets/mlp_to_cnn.toml[/]; it appears here as it starts.")
        elif self.loaded and (query := self.query_one("#history-filter", Input).value):
            text = f"No run matches “{literal(query)}”: [b]Esc[/] clears the filter."
        elif self.loaded:
            text = ("The trash is empty: [b]v[/] shows the runs." if self.trash_view
                    else "Every run is in the trash: [b]v[/] shows them.")
        self.query_one("#history-detail", Static).update(text)

    # -- sorting and filtering -------------------------------------------------------------------

    def action_sort(self, reverse_only: bool) -> None:
        if reverse_only:
            self.sort_reverse = not self.sort_reverse
        else:
            keys, shown = [c.key for c in COLUMNS], {c.key for c in self.columns()}
            here = keys.index(self.sort_key) + 1
            # a column left out (a narrow screen) would sort by what no one sees
            self.sort_key = next(key for key in keys[here:] + keys[:here] if key in shown)
            self.sort_reverse = BY_KEY[self.sort_key].high_first
        self.populate()

    @on(RunTable.HeaderSelected)
    def _header(self, event: RunTable.HeaderSelected) -> None:
        key = event.column_key
        if key not in BY_KEY:
            return
        self.sort_reverse = not self.sort_reverse if key == self.sort_key else BY_KEY[key].high_first
        self.sort_key = key
        self.populate()

    def action_filter(self) -> None:
        box = self.query_one("#history-filter", Input)
        box.display = True
        self.set_focus(box)  # at once, not after the keys typed behind "/" (FbtApp.on_key sends them here)

    @on(Input.Changed, "#history-filter")
    def _filter_changed(self) -> None:
        self.populate()

    @on(Input.Submitted, "#history-filter")
    def _filter_done(self) -> None:
        box = self.query_one("#history-filter", Input)
        box.display = bool(box.value)
        self.query_one(RunTable).focus()

    def action_clear_filter(self) -> None:
        """Esc: the filter, and where there is none, the marks (unmarked one by one, before)."""
        box = self.query_one("#history-filter", Input)
        if not (box.value or box.display) and self.marked:
            self.marked.clear()
        box.value = ""
        box.display = False
        self.query_one(RunTable).focus()
        self.populate()

    # -- actions ---------------------------------------------------------------------------------

    @on(RunTable.RowSelected)
    async def _row_selected(self) -> None:
        await self.action_open()

    async def action_open(self) -> None:
        rid = self.cursor_id()
        if rid:
            await self.app.open_run(rid)

    def action_mark(self) -> None:
        rid = self.cursor_id()
        if rid is None:
            return
        if rid in self.marked:
            del self.marked[rid]
        else:
            self.marked[rid] = None
        table = self.query_one(RunTable)
        table.update_row(rid, self._cells(next(r for r in self.shown if r.id == rid)))
        table.move_cursor(table.cursor_row + 1)
        self._title()

    def action_compare(self) -> None:
        ids = self.marked_shown()
        if len(ids) < 2:
            self.notify("Mark two or more runs with space, then press c.", severity="warning")
            return
        self.app.push_screen(CompareScreen(ids))

    def action_export(self) -> None:
        ids = self.targets("export")
        if ids:
            self.app.push_screen(ExportDialog(ids, self.export_folder), self._export)

    def _export(self, request: ExportRequest | None) -> None:
        if request is not None:
            self.export_folder = Path(request.path).expanduser().parent  # the next export's default
            self.run_export(request)

    @work(thread=True, group="export", exit_on_error=False, name="Export")  # "Export failed" on the unforeseen
    def run_export(self, request: ExportRequest) -> None:
        store = RunStore()
        try:  # the dialog checked the folder: none is made here, a typo must not create one
            target = Path(request.path).expanduser()
            if request.format in STUDENT_WEIGHTS:
                weights, sidecar = export_student(store, request.run_ids[0], target, STUDENT_WEIGHTS[request.format])
                message = f"wrote {weights} and {sidecar}"
            else:
                target.write_text(export_metrics(store, request.run_ids, request.format), encoding="utf-8")
                message = f"wrote {target}"
        except (ExportError, OSError) as exc:  # what the user can mend: said in words, not as a class name
            self.app.call_from_thread(self.app.show_error, "Export failed", str(exc))
            return
        finally:
            store.close()
        self.app.call_from_thread(partial(self.notify, message, title="Exported", markup=False))  # paths as typed

    def refused_in_trash(self, verb: str) -> bool:
        """A run in the trash is not changed, as the CLI refuses to: said, with the way out."""
        if self.trash_view:
            self.notify(f"A run in the trash cannot {verb}: r restores it first.", severity="warning")
        return self.trash_view

    def action_tag(self) -> None:
        if self.refused_in_trash("be tagged"):
            return
        ids = self.targets("tag")
        if not ids:
            return
        self.app.push_screen(PromptDialog(f"Tag {len(ids)} runs" if len(ids) > 1 else f"Tag {ids[0]}", "",
                                          "tag", "A tag to add; -tag removes it.", check=_tag_answer_problem),
                             partial(self._tag, ids))

    def _tag(self, ids: list[str], tag: str | None) -> None:
        tag = (tag or "").strip()
        if not tag or tag == "-":
            return
        if tag.startswith("-"):
            had = [r.id for r in self.rows if r.id in ids and tag[1:] in r.tags]
            if not had:  # as the CLI: removing what is not there is said, not reported done
                self.notify(f"no run of these has the tag {tag[1:]}", severity="warning", markup=False)
                return
            self.store_op(lambda store: [store.remove_tag(rid, tag[1:]) for rid in had], f"untagged {literal(tag[1:])}")
        else:
            self.store_op(lambda store: [store.add_tag(rid, tag) for rid in ids], f"tagged {literal(tag)}")

    def action_note(self) -> None:
        if self.refused_in_trash("take a note"):
            return
        rid = self.cursor_id()
        row = next((r for r in self.shown if r.id == rid), None)
        if row is not None:
            self.app.push_screen(PromptDialog(f"Note for {rid}", row.note, "a note (empty clears it)"),
                                 partial(self._note, rid))

    def _note(self, rid: str, text: str | None) -> None:
        if text is not None:
            note = text.strip()
            self.store_op(lambda store: store.set_note(rid, note), "note saved" if note else "note cleared")

    def action_trash(self) -> None:
        if self.trash_view:
            self.notify("Already in the trash; r restores.", severity="warning")
            return
        ids = self.targets("trash")
        running = [r.id for r in self.rows if r.id in ids and r.status == "running"]
        if running:
            self.notify(f"{', '.join(running)}: still running; stop it first (s in its tab)", severity="warning")
            ids = [rid for rid in ids if rid not in running]
        if ids:
            names = {r.id: r.name for r in self.rows}
            lines = [f"{rid}  {names[rid]}" if names.get(rid) not in (None, "", rid) else rid for rid in ids[:8]]
            self.app.push_screen(ConfirmDialog(f"Move {counted(len(ids), 'run')} to the trash?\n" + "\n".join(lines)
                                               + "\n(v shows the trash; r restores)", yes="Trash"),
                                 partial(self._trash, ids))

    def _trash(self, ids: list[str], yes: bool | None) -> None:
        def trash(store: RunStore) -> None:
            for rid in ids:
                store.trash(rid)
                # its tab would show a folder gone; only once it moved (the store refuses a running run)
                self.app.call_from_thread(self.app.dashboard.close_ended, [rid])

        if yes:
            self._unmark(ids)
            self.store_op(trash, f"moved {counted(len(ids), 'run')} to the trash")

    def action_restore(self) -> None:
        if not self.trash_view:
            self.notify("Restore works in the trash view (v).", severity="warning")
            return
        ids = self.targets("restore")
        if ids:
            self._unmark(ids)
            self.store_op(lambda store: [store.restore(rid) for rid in ids], f"restored {counted(len(ids), 'run')}")

    def _unmark(self, ids: list[str]) -> None:
        for rid in ids:
            self.marked.pop(rid, None)

    def action_toggle_trash(self) -> None:
        self.trash_view = not self.trash_view
        self.marked.clear()
        self.populate()

    @work(thread=True, group="history-op", exit_on_error=False)
    def store_op(self, op: Callable[[RunStore], object], done: str) -> None:
        store = RunStore()
        try:
            op(store)
        except (RuntimeError, ValueError, LookupError, OSError) as exc:  # the store refused: said in its words
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=10)
            done = ""
        finally:
            store.close()
        if done:
            self.app.call_from_thread(self.notify, done)
        self.app.call_from_thread(self.reload)

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Compare marked runs", "overlaid curves, deltas, differing config", self.action_compare)
        yield SystemCommand("Export selected runs", "CSV/JSON/Markdown or the student's weights", self.action_export)
        yield SystemCommand("Show the trash" if not self.trash_view else "Show runs", "toggle the trash view",
                            self.action_toggle_trash)


def _tag_answer_problem(answer: str) -> str | None:
    """The tag dialog's check: "-tag" removes a tag and an empty answer does nothing."""
    tag = answer.strip()
    return None if not tag or tag.startswith("-") else tag_problem(tag)
