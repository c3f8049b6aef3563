"""Two or more runs side by side: overlaid curves, summary deltas, the config keys that differ."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Static

from fbt_engine.store.export import compare, flatten, load_config, method_own_keys
from fbt_engine.store.runs import RunStore
from fbt_engine.store.summary import RunSummary

from fbt_tui.format import best_at, counted, duration, pct
from fbt_tui.model import Panel, RunModel
from fbt_tui.screens.base import FbtScreen
from fbt_tui.widgets.curves import PALETTE, CurvePlot
from fbt_tui.widgets.keybar import KeyBar

# the second plot's curves, one per run, that m cycles through: (plot group, curve label or the first, title);
# first the one every method measures alike (a train loss sums each method's own terms: FBT's ~8× KD's)
METRICS = (("CE", "val", "validation loss"), ("CE", "ce", "student CE × ce_weight"),
           ("loss", None, "train loss (each method's own sum)"))


NAME_CLIP = 16  # a name's cells in the narrow summary's run column
# the summary's layouts: the first that fits is taken, else the last. Narrow, each run goes by its tab's name, then
# the status and the fusion's score give way (History has them): at 80 columns "best fusion" was cut to "b"
WIDE_LEFT_OUT = ("run",)
NARROW_LEFT_OUTS = tuple(("id", "name", "teacher → student", "duration") + more
                         for more in ((), ("status",), ("status", "best fusion")))


@dataclass
class Compared:
    summaries: list[RunSummary]
    diff: dict[str, list[Any]]
    everything: dict[str, list[Any]]
    models: list[RunModel]


def _value(v: Any) -> Text:
    """A config value as a cell: Text, which DataTable shows as is (a str it reads as markup)."""
    if v is None:
        return Text("–")
    return Text(v if isinstance(v, str) else json.dumps(v))


def _delta(value: float | None, base: float | None) -> Text:
    if value is None or base is None:
        return Text("")
    d = value - base
    return Text(f"{d:+.2f}", style="green" if d > 0 else "red" if d < 0 else "")


class CompareScreen(FbtScreen):
    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("a", "toggle_all", "All config keys"),
        Binding("m", "metric", "Next curve"),
    ]

    def __init__(self, run_ids: list[str]):
        super().__init__()
        self.run_ids = run_ids
        self.data: Compared | None = None
        self.compact = False  # the summary's narrow layout (see _summary)
        self.show_all = False
        self.metric = 0

    def compose(self) -> ComposeResult:
        yield Static(self._title("first = baseline for Δ"), id="compare-title")
        with Vertical(id="compare-body"):
            yield DataTable(id="compare-summary", cursor_type="none")
            with Horizontal(id="compare-plots"):
                yield CurvePlot("top1", markers=True, id="compare-acc")
                yield CurvePlot("loss", id="compare-metric")
            yield Label("config keys that differ", id="compare-diff-title", classes="section-title")
            yield DataTable(id="compare-diff", cursor_type="row", zebra_stripes=True)
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load(self) -> None:
        store = RunStore()
        try:
            summaries, diff = compare(store, self.run_ids)
            flats = [flatten(load_config(store, rid)) for rid in self.run_ids]
            keys = sorted(set().union(*flats))
            everything = {k: [f.get(k) for f in flats] for k in keys}
            models = []
            for rid, s in zip(self.run_ids, summaries):
                model = RunModel(rid, name=s.name, status=s.status)
                model.add_events(store.events(rid))
                models.append(model)
        finally:
            store.close()
        self.app.call_from_thread(self._loaded, Compared(summaries, diff, everything, models))

    def _title(self, baseline: str) -> str:
        return f" Compare {len(self.run_ids)} runs [dim]({baseline} · esc back)[/]"

    def _loaded(self, data: Compared) -> None:
        self.data = data
        if data.summaries[0].best_top1 is None:  # its Δ cells all blank, unexplained
            self.query_one("#compare-title", Static).update(
                self._title("the first, the baseline for Δ, has no top-1 score: no Δ"))
        self._summary()
        self._diff()
        self.call_after_refresh(self._plots)

    def _summary(self) -> None:
        """Where the whole table does not fit, each run is named as its tab names it (its name,
        clipped, and the end of its id), with no pair or duration (the config diff below has the
        models where they differ), so the scores stay in view."""
        assert self.data is not None
        table = self.query_one("#compare-summary", DataTable)
        table.clear(columns=True)
        self.compact = not self._fits(self._rows(clip=False), WIDE_LEFT_OUT)
        rows = self._rows(clip=self.compact)
        left_out = next((lo for lo in NARROW_LEFT_OUTS if self._fits(rows, lo)), NARROW_LEFT_OUTS[-1]) \
            if self.compact else WIDE_LEFT_OUT
        columns = [c for c in rows[0] if c not in left_out]
        table.add_columns(*columns)
        for row in rows:
            table.add_row(*(row[c] for c in columns))

    def _fits(self, rows: list[dict[str, Any]], left_out: tuple[str, ...]) -> bool:
        """Whether the summary's columns, less `left_out`, fit the screen less a vertical scrollbar,
        which many runs add (DataTable pads a cell by one on each side)."""
        columns = [c for c in rows[0] if c not in left_out]
        room = self.size.width - self.query_one("#compare-summary", DataTable).styles.scrollbar_size_vertical
        return sum(max(cell_len(c), *(cell_len(str(row[c])) for row in rows)) + 2 for c in columns) <= room

    def _rows(self, clip: bool) -> list[dict[str, Any]]:
        assert self.data is not None
        base = self.data.summaries[0]
        return [{"": Text("━━", style=PALETTE[i % len(PALETTE)]), "id": s.id,
                 "name": Text(s.name if s.name != s.id else ""), "run": Text(label), "method": s.method,
                 "teacher → student": Text(s.pair), "status": s.status,
                 "best @ep": best_at(s.best_top1, s.best_epoch),
                 "Δ best": _delta(s.best_top1, base.best_top1) if i else "", "final": pct(s.final_top1),
                 "Δ final": _delta(s.final_top1, base.final_top1) if i else "", "best fusion": pct(s.fusion_top1),
                 "duration": duration(s.elapsed(time.time()))}
                for i, (s, label) in enumerate(zip(self.data.summaries, self.labels(clip=clip)))]

    def on_resize(self) -> None:
        if self.data is not None:
            compact = self.compact
            self._summary()
            if self.compact != compact:
                self._diff()
            self._plots()

    def _plots(self) -> None:
        if self.data is None:
            return
        acc = self.query_one("#compare-acc", CurvePlot)
        acc.show(*self._overlay("top1", acc.buckets, "student", "student top-1 % / epoch"), legend_elsewhere=True)
        group, only, title = METRICS[self.metric % len(METRICS)]
        other = self.query_one("#compare-metric", CurvePlot)
        other.show(*self._overlay(group, other.buckets, only, title), legend_elsewhere=True)

    def _overlay(self, group: str, buckets: int, only: str | None, title: str) -> tuple[Panel, dict[str, str]]:
        """One curve per run (its first curve of `group`, or the one labelled `only`). Losses go by
        epoch, as the accuracies do, where every run says its epoch's steps: by step, runs of other
        data sizes or batches lay their epochs at other places on one axis."""
        assert self.data is not None
        curves, styles = [], {}
        per_epoch = [model.steps_per_epoch() for model in self.data.models]
        by_epoch = group != "top1" and all(per_epoch)
        for i, (label, model) in enumerate(zip(self.labels(clip=self.compact), self.data.models)):
            panel = model.panel(group, buckets)
            for c in [c for c in panel.curves if only is None or c.label == only][:1]:
                c.label = label
                if by_epoch:
                    c.x = c.x / per_epoch[i]
                styles[c.label] = PALETTE[i % len(PALETTE)]
                curves.append(c)
        unit = "" if group == "top1" else " / epoch" if by_epoch else " / step"
        return Panel(title + unit, curves), styles

    def labels(self, clip: bool = False) -> list[str]:
        """Each run as its dashboard tab names it: its name (`clip`: to NAME_CLIP cells) and the
        end of its id (names repeat)."""
        assert self.data is not None

        def name(s: RunSummary) -> str:
            return set_cell_size(s.name, NAME_CLIP - 1) + "…" if clip and cell_len(s.name) > NAME_CLIP else s.name
        return [f"{name(s)} {s.id[-6:]}" if s.name and s.name != s.id else s.id[-6:] for s in self.data.summaries]

    def action_metric(self) -> None:
        self.metric += 1
        self._plots()

    def action_toggle_all(self) -> None:
        self.show_all = not self.show_all
        self._diff()

    def _diff(self) -> None:
        assert self.data is not None
        hidden = method_own_keys(self.data.diff)
        rows = self.data.everything if self.show_all else {
            key: values for key, values in self.data.diff.items() if key not in hidden}
        table = self.query_one("#compare-diff", DataTable)
        table.clear(columns=True)
        table.add_columns("key", *map(Text, self.labels(clip=self.compact)))  # names as typed: "[/]" is no markup
        for key, values in rows.items():
            differs = key in self.data.diff
            table.add_row(Text(key, style="bold" if differs else "dim"), *[_value(v) for v in values])
        own = f", and {len(hidden)} parameters that only some of these methods have" if hidden else ""
        what = "every config key (a: only the differing ones)" if self.show_all else (
            f"{counted(len(rows), 'config key')} {'differs' if len(rows) == 1 else 'differ'}{own} (a: show all)" if rows else
            "the configs are identical (a: show all)")
        self.query_one("#compare-diff-title", Label).update(what)
