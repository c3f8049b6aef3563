"""Run folders under the data home (SPEC §5), their meta.json, and the index kept beside them.

One writer per run folder: the engine process that owns the run. Tags, notes and status changes
from other processes go through `modify_meta`, a locked read-modify-write, so nobody's fields are
lost. Deleting moves a folder to trash/; purge empties the trash.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import string
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w

from fbt_engine import paths
from fbt_engine.store.events import last_event_time, read_events
from fbt_engine.store.index import RunIndex
from fbt_engine.store.summary import RunSummary, summarize

STATUSES = ("running", "finished", "failed", "interrupted", "crashed")
RESUMABLE = ("interrupted", "crashed", "failed")  # `fbt run --resume` goes on from its last checkpoint
ACTIVE = "running"
STALE_HEARTBEAT_S = 300.0  # a run on another host is crashed when silent this long
_ALPHABET = string.digits + string.ascii_lowercase
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-z]{6}$")


class RunNotFound(LookupError):
    pass


class AmbiguousRun(RunNotFound):
    """An id prefix several runs begin with."""


def new_run_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{''.join(secrets.choice(_ALPHABET) for _ in range(6))}"


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (Linux), to tell a reused pid from ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


def process_alive(pid: int, start_ticks: int | None) -> bool:
    proc = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            stat = proc.read_text()
        except OSError:
            return False
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] in ("Z", "X"):  # zombie: dead, not yet reaped by its parent
            return False
        return start_ticks is None or int(fields[19]) == start_ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def id_tails(run_id: str) -> tuple[str, ...]:
    """The ends of an id that the app shows for it: its random part (tabs, compare) and its time
    with it (History on a narrow terminal)."""
    parts = run_id.split("-")
    return tuple("-".join(parts[i:]) for i in range(1, len(parts)))


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a run's name, or None. Lists show a run a line, and "last" always
    means the newest run."""
    # control characters, line and paragraph separators, and the lone surrogates of undecodable argv bytes
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in name):
        return f"name {json.dumps(name)}: a name cannot hold control characters (tabs, newlines) or bytes " \
               "that are not UTF-8: lists show a run a line"
    if name == "last":
        return 'a run cannot be named "last": it always means the newest run'
    return None


def tag_problem(tag: str) -> str | None:
    """Why `tag` cannot be a run's tag, or None. Lists show a run's tags joined by commas, the
    app reads "-tag" as "remove tag", and its filter `tag:x` takes one word."""
    if not tag.strip():
        return "a tag cannot be empty"
    if "," in tag:
        return f'tag "{tag}": a tag cannot hold a comma (lists join tags with commas)'
    if any(ch.isspace() for ch in tag):
        return f'tag "{tag}": a tag is one word, without spaces (the app\'s filter tag:… takes one word)'
    if tag.startswith("-"):
        return f'tag "{tag}": a tag cannot start with "-" (the app reads "-tag" as removing it)'
    return None


def more_epochs_hint(run_dir: Path) -> str:
    """What trains a finished run further: a new run from its config."""
    return f"for more epochs, start a new run from its config: fbt run {run_dir / 'config.toml'} --set train.epochs=N"


class RunStore:
    def __init__(self, home: Path | None = None):
        self.home = home or paths.data_home()
        self.runs_dir = paths.runs_dir(self.home)
        self.trash_dir = paths.trash_dir(self.home)
        self._index: RunIndex | None = None

    @property
    def index(self) -> RunIndex:
        if self._index is None:
            self._index = RunIndex(paths.index_path(self.home))
            if self._index.reset:  # a corrupt or outdated index was replaced: refill it from the folders
                self.reindex()
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    # -- creating ------------------------------------------------------------------------------

    def create(self, *, config: dict[str, Any], preset_raw: bytes, preset_source: str, name: str,
               tags: list[str], extra_meta: dict[str, Any], run_id: str | None = None) -> Path:
        """A complete run folder, made under a temporary name and renamed into place."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        run_id = run_id or new_run_id()
        if not RUN_ID.match(run_id):
            raise ValueError(f"run id {run_id!r} is not of the form YYYYMMDD-HHMMSS-xxxxxx")
        final = self.runs_dir / run_id
        if final.exists() or (self.trash_dir / run_id).exists():
            raise FileExistsError(f"run {run_id} already exists")
        tmp = self.runs_dir / f".{run_id}.tmp"
        tmp.mkdir()
        (tmp / "checkpoints").mkdir()
        (tmp / "preset.toml").write_bytes(preset_raw)
        (tmp / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
        (tmp / "events.jsonl").touch()
        (tmp / "stdout.log").touch()
        now = time.time()
        meta = {
            "id": run_id, "name": name or run_id, "status": ACTIVE, "pid": os.getpid(),
            "pid_start": process_start_ticks(os.getpid()), "host": socket.gethostname(),
            "started": now, "heartbeat": now, "ended": None, "exit_code": None,
            "preset": preset_source, "tags": sorted(set(tags)), "note": "", **extra_meta,
        }
        write_json_atomic(tmp / "meta.json", meta)
        os.rename(tmp, final)
        self.refresh_index(run_id)
        return final

    # -- reading -------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        for folder in (self.runs_dir, self.trash_dir):
            if (folder / run_id / "meta.json").is_file():
                return folder / run_id
        raise RunNotFound(f"no run {run_id}")

    def exists(self, run_id: str) -> bool:
        return any((folder / run_id).exists() for folder in (self.runs_dir, self.trash_dir))

    def fresh_id_error(self, run_id: str) -> str | None:
        """Why `run_id` (picked by a caller, e.g. the TUI) cannot name a new run; None if it can."""
        if RUN_ID.match(run_id) and not self.exists(run_id):
            return None
        return f"--id {run_id}: not a fresh id of the form YYYYMMDD-HHMMSS-xxxxxx"

    def read_meta(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.run_dir(run_id) / "meta.json").read_text(encoding="utf-8"))

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return read_events(self.run_dir(run_id) / "events.jsonl")

    def summary(self, run_id: str) -> RunSummary:
        folder = self.run_dir(run_id)
        return summarize(self.read_meta(run_id), read_events(folder / "events.jsonl"),
                         trashed=folder.parent == self.trash_dir)

    def _folders(self, include_trashed: bool, with_meta: bool = True) -> Iterator[Path]:
        """The run folders (`with_meta`: those that hold a meta.json)."""
        for folder in (self.runs_dir, self.trash_dir) if include_trashed else (self.runs_dir,):
            if folder.is_dir():
                # ".<id>.tmp" is a run still being created (or one whose creation crashed): not a run
                yield from (p for p in folder.iterdir() if RUN_ID.match(p.name)
                            and ((p / "meta.json").is_file() if with_meta else p.is_dir()))

    # -- changing ------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, run_id: str):
        folder = self.run_dir(run_id)
        with open(folder / ".meta.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def modify_meta(self, run_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        """One locked read-modify-write of meta.json: `change` sees the meta as it is now and returns
        the fields to change (None: none), or raises to refuse; a decision taken on an earlier read
        could undo another process's change in between. Returns the meta as it is after."""
        with self._locked(run_id) as folder:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            changes = change(meta)
            if changes:
                meta.update(changes)
                write_json_atomic(folder / "meta.json", meta)
        return meta

    def update_meta(self, run_id: str, **changes: Any) -> dict[str, Any]:
        return self.modify_meta(run_id, lambda _: changes)

    def claim(self, run_id: str, **changes: Any) -> dict[str, Any]:
        """Mark a stopped run as running again for the caller (`changes`: its pid, host…), with its
        next segment: of two resumes at once, the second finds the first's. Raises RuntimeError
        while another process runs it, ValueError once it finished."""
        def claimed(meta: dict[str, Any]) -> dict[str, Any]:
            if (refusal := self.resume_refusal(meta)) is not None:
                raise refusal
            return {**changes, "status": ACTIVE, "segments": int(meta.get("segments", 1)) + 1}

        return self.modify_meta(run_id, claimed)

    def resume_refusal(self, meta: dict[str, Any]) -> Exception | None:
        """Why the meta's run cannot be resumed now: RuntimeError while another process runs it,
        ValueError once it finished; None where it can."""
        if self._running(meta):
            return RuntimeError(f"the run is still running (pid {meta['pid']})")
        if meta.get("status") == "finished":
            return ValueError("the run already finished: a resume goes on with a run that stopped before its end; "
                              + more_epochs_hint(self.runs_dir / str(meta.get("id", "<run>"))))
        return None

    def refresh_index(self, run_id: str) -> RunSummary:
        summary = self.summary(run_id)
        self.index.upsert(summary)
        return summary

    def reindex(self) -> tuple[int, list[str]]:
        """Rebuild index.sqlite from the run folders alone: (runs indexed, why each folder it left
        out was; one unreadable meta.json must not take the whole history down)."""
        summaries, skipped = [], []
        for folder in self._folders(include_trashed=True, with_meta=False):
            try:
                meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            except FileNotFoundError:
                skipped.append(f"{folder}: a run folder without a meta.json")
                continue
            except (OSError, ValueError) as exc:
                skipped.append(f"{folder / 'meta.json'}: {exc.strerror if isinstance(exc, OSError) else exc}")
                continue
            if not isinstance(meta, dict) or "id" not in meta:
                skipped.append(f"{folder / 'meta.json'}: not a run's meta (no id)")
                continue
            summaries.append(summarize(meta, read_events(folder / "events.jsonl"),
                                       trashed=folder.parent == self.trash_dir))
        self.index.replace_all(summaries)
        return len(summaries), skipped

    def detect_crashes(self) -> list[str]:
        """Mark runs whose process is gone (or, on another host, whose heartbeat went stale)."""
        crashed = []
        for s in self.index.all(include_trashed=True):
            if s.status != ACTIVE:
                continue
            try:
                if self.is_alive(self.read_meta(s.id)):  # the common case, read without the lock
                    continue
                status = self.modify_meta(s.id, self._crash).get("status")
            except (RunNotFound, json.JSONDecodeError):
                continue
            if status == "crashed":
                crashed.append(s.id)
            if status != s.status:
                self.refresh_index(s.id)
        return crashed

    def _crash(self, meta: dict[str, Any]) -> dict[str, Any] | None:
        """The change that marks a run crashed, where its meta says running and its process is gone."""
        return {"status": "crashed", "ended": self._last_sign_of_life(meta)} if meta.get("status") == ACTIVE \
            and not self.is_alive(meta) else None

    def _last_sign_of_life(self, meta: dict[str, Any]) -> float | None:
        """A dead run's end: its last heartbeat or its last event, the later. The heartbeat beats
        every few seconds, so a run killed in its first ones read as lasting none."""
        times = [t for t in (meta.get("heartbeat"), last_event_time(self.run_dir(meta["id"]) / "events.jsonl"))
                 if t is not None]
        return max(times, default=None)

    @staticmethod
    def is_alive(meta: dict[str, Any]) -> bool:
        if meta.get("host") == socket.gethostname():
            return process_alive(int(meta["pid"]), meta.get("pid_start"))
        return time.time() - float(meta.get("heartbeat", 0)) < STALE_HEARTBEAT_S

    def list(self, status: str | None = None, tag: str | None = None,
             include_trashed: bool = False) -> list[RunSummary]:
        if not self.index.path.exists() or self._index_is_empty_but_runs_exist():
            self.reindex()
        self.detect_crashes()
        rows = self.index.all(include_trashed=include_trashed)
        return [r for r in rows if (status is None or r.status == status) and (tag is None or tag in r.tags)]

    def _index_is_empty_but_runs_exist(self) -> bool:
        return not self.index.all(include_trashed=True) and any(self._folders(include_trashed=True))

    def resolve(self, ref: str, include_trashed: bool = False, trashed_only: bool = False) -> str:
        """A run id from an id, a unique id prefix, its end as the app shows it, a name (its latest
        run) or `last`. Where the trash is not searched, a run that only the trash holds is named,
        with how to restore it; where only the trash is, a run outside it is named as such."""
        try:
            return self._resolve(ref, include_trashed, trashed_only)
        except RunNotFound as missing:
            if isinstance(missing, AmbiguousRun) or include_trashed:
                raise
            try:
                elsewhere = self._resolve(ref, trashed_only=not trashed_only)
            except RunNotFound:
                raise missing from None
            if trashed_only:  # "the trash is empty" did not say that the run is fine where it is
                raise RunNotFound(f'run {elsewhere} ("{ref}") is not in the trash') from None
            raise RunNotFound(f'run {elsewhere} ("{ref}") is in the trash: fbt runs restore {elsewhere}') from None

    def _resolve(self, ref: str, include_trashed: bool = False, trashed_only: bool = False) -> str:
        runs = self.list(include_trashed=include_trashed or trashed_only)
        where = " in the trash" if trashed_only else ""
        if trashed_only:
            runs = [r for r in runs if r.trashed]
        if not runs:
            self._unlisted(ref)
            raise RunNotFound("the trash is empty" if trashed_only else "there are no runs yet")
        # `last` and a name mean what `fbt runs ls` shows first: a run in the trash only when no
        # other will do (an id or an id prefix names one run wherever it is)
        runs = sorted(runs, key=lambda r: r.trashed)  # stable: newest first within each
        if ref == "last":
            return runs[0].id
        exact = [r.id for r in runs if r.id == ref]
        if exact:
            return exact[0]
        prefixed = [r.id for r in runs if r.id.startswith(ref)]
        if len(prefixed) == 1:
            return prefixed[0]
        ended = [r.id for r in runs if ref in id_tails(r.id)]
        if len(ended) == 1:
            return ended[0]
        named = [r.id for r in runs if r.name == ref]
        if named:
            return named[0]
        if len(several := prefixed if len(prefixed) > 1 else ended) > 1:
            raise AmbiguousRun(f'"{ref}" matches {len(several)} runs: {", ".join(several[:5])}'
                               + (", …" if len(several) > 5 else ""))
        self._unlisted(ref)
        raise RunNotFound(f'no run{where} matches "{ref}" (an id, a unique id prefix, its last part, a name, '
                          'or "last")')

    def _unlisted(self, ref: str) -> None:
        """Where `ref` is the id of a run folder that no list shows, why, as the refusal to name it:
        "no run matches" of a folder that is there."""
        if not RUN_ID.match(ref):
            return
        folder = next((f / ref for f in (self.runs_dir, self.trash_dir) if (f / ref).is_dir()), None)
        if folder is None:
            return
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = None
        readable = isinstance(meta, dict) and "id" in meta
        if readable:  # copied in, say, since the index was built
            raise RunNotFound(f"{folder}: a run the index does not hold yet: fbt runs reindex adds it")
        raise RunNotFound(f"{folder}: a run folder without a readable meta.json, so nothing lists it (its events "
                          "and checkpoints are still there; fbt runs reindex says what is wrong)")

    def running_problem(self, run_id: str) -> str | None:
        """Why `run_id` cannot be moved now (its process is alive), or None."""
        meta = self.read_meta(run_id)
        if not self._running(meta):
            return None
        if meta.get("host") != socket.gethostname():
            return f"run {run_id} is still running on {meta.get('host')} (pid {meta['pid']} there); stop it there first"
        return f"run {run_id} is still running (pid {meta['pid']}); stop it first: kill -INT {meta['pid']}"

    def _running(self, meta: dict[str, Any]) -> bool:
        """Whether the meta's run is running now: said so, and its process alive."""
        return meta.get("status") == ACTIVE and self.is_alive(meta)

    def trash(self, run_id: str) -> None:
        if problem := self.running_problem(run_id):
            raise RuntimeError(problem)
        self.trash_dir.mkdir(parents=True, exist_ok=True)
        os.rename(self.runs_dir / run_id, self.trash_dir / run_id)
        self.refresh_index(run_id)

    def restore(self, run_id: str) -> None:
        if not (self.trash_dir / run_id).is_dir():
            raise RunNotFound(f"run {run_id} is not in the trash")
        os.rename(self.trash_dir / run_id, self.runs_dir / run_id)
        self.refresh_index(run_id)

    def purge(self) -> list[str]:
        removed = []
        if self.trash_dir.is_dir():
            for folder in list(self.trash_dir.iterdir()):
                shutil.rmtree(folder)
                self.index.delete(folder.name)
                removed.append(folder.name)
        return removed

    def add_tag(self, run_id: str, tag: str) -> list[str]:
        if problem := tag_problem(tag):
            raise ValueError(problem)
        return self._retag(run_id, lambda tags: tags | {tag})

    def remove_tag(self, run_id: str, tag: str) -> list[str]:
        return self._retag(run_id, lambda tags: tags - {tag})

    def _retag(self, run_id: str, change: Callable[[set[str]], set[str]]) -> list[str]:
        meta = self.modify_meta(run_id, lambda m: {"tags": sorted(change(set(m.get("tags", []))))})
        self.refresh_index(run_id)
        return meta["tags"]

    def set_note(self, run_id: str, text: str) -> None:
        self.update_meta(run_id, note=text)
        self.refresh_index(run_id)

    def close_run(self, run_id: str) -> str:
        """Give a run whose process is gone a final status (crashed), for runs stuck as running; a
        run on another host is closed whatever its heartbeat says (its owner knows it is gone)."""
        def closed(meta: dict[str, Any]) -> dict[str, Any] | None:
            if meta.get("status") != ACTIVE:
                return None
            if meta.get("host") == socket.gethostname() and process_alive(int(meta["pid"]), meta.get("pid_start")):
                raise RuntimeError(f"run {run_id} is still running (pid {meta['pid']}); "
                                   f"stop it with: kill -INT {meta['pid']}")
            return {"status": "crashed", "ended": self._last_sign_of_life(meta)}

        status = self.modify_meta(run_id, closed)["status"]
        self.refresh_index(run_id)
        return status
