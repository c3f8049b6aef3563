"""index.sqlite: one summary row per run, in WAL mode, rebuildable from the run folders."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

from fbt_engine.store.summary import RunSummary

OPEN_PATIENCE_S = 10.0  # as long as sqlite's own busy timeout waits for a lock
_COLUMNS = [f.name for f in fields(RunSummary)]
_JSON_COLUMNS = {"tags"}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    {', '.join(c + (' TEXT PRIMARY KEY' if c == 'id' else '') for c in _COLUMNS)}
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started);
"""


def index_stamp(path: Path) -> tuple[int, ...]:
    """When the index at `path` last changed, its write-ahead log included (where WAL mode writes
    first): what a poller compares, for the price of two stats."""
    stamps = []
    for file in (path, path.with_name(path.name + "-wal")):
        try:
            stamps.append(file.stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return tuple(stamps)


class IndexUnavailable(OSError):
    """The index cannot be opened as it is (a read-only data home, a lock held too long)."""


class RunIndex:
    """The index is a cache of the run folders: when it is unreadable, or its columns are not
    RunSummary's (another fbt version wrote it), it starts empty and RunStore rebuilds it."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.reset = False  # True when this open had to start the index afresh
        try:
            self.db = self._open_retrying()
        except sqlite3.OperationalError as exc:  # read-only, locked too long, not a file: no damage to mend
            raise IndexUnavailable(f"{path}: cannot open the run index ({exc})") from None
        except sqlite3.DatabaseError:  # "file is not a database": keep it for a post-mortem, start afresh
            for suffix in ("", "-wal", "-shm"):
                broken = path.with_name(path.name + suffix)
                if broken.exists():
                    broken.replace(path.with_name(f"{path.name}.corrupt{suffix}"))
            self.db = self._open()
            self.reset = True

    def _open_retrying(self) -> sqlite3.Connection:
        """`_open`, again while another process holds a lock: processes that create the index at
        once (the app and a run it launched, on a fresh data home) meet a lock that sqlite's busy
        timeout does not wait for (switching a new file to WAL)."""
        deadline = time.monotonic() + OPEN_PATIENCE_S
        while True:
            try:
                return self._open()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
            if columns and columns != _COLUMNS:
                db.execute("DROP TABLE runs")
                self.reset = True
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        self.db.close()

    def upsert(self, summary: RunSummary) -> None:
        row = summary.as_dict()
        values = [json.dumps(row[c]) if c in _JSON_COLUMNS else row[c] for c in _COLUMNS]
        placeholders = ", ".join("?" for _ in _COLUMNS)
        self.db.execute(f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) VALUES ({placeholders})", values)

    def delete(self, run_id: str) -> None:
        self.db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def replace_all(self, summaries: Iterable[RunSummary]) -> None:
        self.db.execute("BEGIN")
        try:
            self.db.execute("DELETE FROM runs")
            for s in summaries:
                self.upsert(s)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def all(self, include_trashed: bool = False) -> list[RunSummary]:
        where = "" if include_trashed else "WHERE trashed = 0"
        cur = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs {where} ORDER BY started DESC")
        return [self._row(r) for r in cur.fetchall()]

    def get(self, run_id: str) -> RunSummary | None:
        cur = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE id = ?", (run_id,))
        row = cur.fetchone()
        return self._row(row) if row else None

    @staticmethod
    def _row(row: tuple) -> RunSummary:
        data = dict(zip(_COLUMNS, row))
        for c in _JSON_COLUMNS:
            data[c] = json.loads(data[c]) if data[c] else []
        data["trashed"] = bool(data["trashed"])
        # NULL in a row that an fbt before the column wrote, while it ran
        data["paused"] = data["paused"] or 0.0
        data["subset"] = data["subset"] or 0
        return RunSummary(**data)
