"""fbt's headless command line (SPEC §2). Imports stay lazy: `fbt --help` and the history
commands never import torch, timm or textual; only `run` and `doctor` import torch."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

import fbt_engine
from fbt_engine.formats import best_at, counted, duration, os_error, percent, to_devnull, when

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3

DESCRIPTION = """\
fbt: cross-architecture knowledge distillation (Fuse Before Transfer) with an experiment manager.
Run `fbt` with no command to open the terminal app."""

EPILOG = """\
RUN is a run id, a unique id prefix, its last part (as the app shows it), a run name, or `last`.
Exit codes: 0 ok, 1 run failed, 2 usage or config error, 3 environment, 130 interrupted.
Examples:
  fbt run mlp_to_cnn
  fbt run mlp_to_cnn --set train.epochs=2 --set data.subset=1000 --json
  fbt runs ls --status finished
  fbt export last --format csv -o metrics.csv"""


RUN_HELP = 'a run id, a unique id prefix, its last part, a run name (its newest run) or "last"'


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fbt", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"fbt {fbt_engine.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="one run, headless")
    run.add_argument("preset", nargs="?", help="preset file or name (omit with --resume)")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override a preset key; the value is TOML, and text that is not TOML is a string")
    run.add_argument("--name", help="run name")
    run.add_argument("--tag", dest="tags", action="append", default=[], help="tag (repeatable)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override run.device")
    run.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    run.add_argument("--resume", metavar="RUN",
                     help="continue a run that stopped short (interrupted, crashed or failed) from its last checkpoint")
    run.add_argument("--id", dest="run_id", help=argparse.SUPPRESS)  # the TUI picks the id it will tail
    run.add_argument("--quiet", action="store_true", help="no progress on stderr")
    run.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                     help="train with N processes on this machine (DDP, launched through torchrun)")
    run.add_argument("--nnodes", default="1", help="machines taking part (torchrun's --nnodes, e.g. 2 or 1:4)")
    run.add_argument("--node-rank", type=int, default=0, help="this machine's rank among --nnodes")
    run.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="where the machines meet (several machines)")

    runs = sub.add_parser("runs", help="run history").add_subparsers(dest="runs_command", metavar="ACTION")
    ls = runs.add_parser("ls", help="list runs")
    ls.add_argument("--json", action="store_true", help="a JSON list, one object per run")
    ls.add_argument("--status", choices=("running", "finished", "failed", "interrupted", "crashed"),
                    help="only runs with this status")
    ls.add_argument("--tag", help="only runs with this tag")
    ls.add_argument("--trash", action="store_true", help="list the trash instead")
    show = runs.add_parser("show", help="one run's summary, weights and epochs (--json: with its config)")
    show.add_argument("run", help=RUN_HELP)
    show.add_argument("--json", action="store_true", help="summary, meta and config as JSON")
    for name, text in (("rm", "move runs to the trash"), ("restore", "bring runs back from the trash")):
        runs.add_parser(name, help=text).add_argument("runs", nargs="+", metavar="RUN", help=RUN_HELP)
    runs.add_parser("purge", help="delete the trash for good").add_argument(
        "--yes", action="store_true", help="do not ask (needed without a terminal)")
    tag = runs.add_parser("tag", help="add (or --remove) a tag")
    tag.add_argument("run", help=RUN_HELP)
    tag.add_argument("tag", help="one word, without commas")
    tag.add_argument("--remove", action="store_true", help="take the tag off instead")
    note = runs.add_parser("note", help="set a run's note")
    note.add_argument("run", help=RUN_HELP)
    note.add_argument("text", help='the note, which replaces the last one ("" clears it)')
    runs.add_parser("close", help="mark a run stuck as running as crashed (on this machine: only once its process "
                    "is gone; a run of another machine: at your word)").add_argument("run", help=RUN_HELP)
    runs.add_parser("reindex", help="rebuild index.sqlite from the run folders")

    cmp_ = sub.add_parser("compare", help="summaries and the config keys that differ")
    cmp_.add_argument("runs", nargs="+", metavar="RUN", help="two or more")
    cmp_.add_argument("--csv", action="store_true", help="the summaries and differing keys as one CSV table")
    cmp_.add_argument("--all", action="store_true",
                      help="also the parameters that only some of the runs' methods have")

    exp = sub.add_parser("export", help="metrics (csv/json/jsonl/md) or the distilled student")
    exp.add_argument("runs", nargs="+", metavar="RUN", help=RUN_HELP)
    exp.add_argument("--format", choices=("csv", "json", "jsonl", "md"),
                     help="csv: one row per logged step, each epoch's validation on its last step's row; json: "
                          "one object per run; jsonl: the events; md: tables of the summaries and epochs")
    exp.add_argument("-o", "--output", default="-", help="file, or - for stdout")
    exp.add_argument("--student", metavar="FILE.safetensors", help="write the student's weights and a sidecar TOML")
    exp.add_argument("--weights", choices=("final", "best"),
                     help="with --student: the last epoch's weights (the default) or the best evaluated epoch's")

    presets = sub.add_parser("presets", help="built-in and user presets").add_subparsers(dest="presets_command",
                                                                                       metavar="ACTION")
    pls = presets.add_parser("ls", help="list presets")
    pls.add_argument("--json", action="store_true", help="a JSON list, one object per preset")
    keys = presets.add_parser("keys", help="every setting a preset or --set takes: its default and meaning")
    keys.add_argument("filter", nargs="?", default="", metavar="TEXT", help="only the keys that contain TEXT")
    validate = presets.add_parser("validate", help="report every problem of each preset")
    validate.add_argument("presets", nargs="+", metavar="PRESET")
    validate.add_argument("--strict", action="store_true",
                          help="also fail (exit 3) when this machine lacks the data or checkpoint a preset names")
    validate.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                          help="override a key of each preset, as fbt run would, and check the result")

    sub.add_parser("paths", help="where fbt keeps its data")
    doctor = sub.add_parser("doctor", help="what this environment has; with --preset, whether it can run that preset")
    doctor.add_argument("--json", action="store_true", help="the checks as JSON")
    doctor.add_argument("--preset", metavar="PRESET",
                        help="also check this preset here: data, models, and its teacher checkpoint (keys, accuracy "
                             "on the validation split; --set data.subset=N scores N/5 images instead)")
    doctor.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset key (with --preset)")
    return p


# -- helpers -------------------------------------------------------------------------------------

def _store():
    from fbt_engine.store.runs import RunStore

    return RunStore()


def _resolve(store, ref: str, include_trashed: bool = False, trashed_only: bool = False) -> str:
    from fbt_engine.store.runs import RunNotFound

    if not ref.strip():  # as a prefix, "" would match every run
        raise CliError('an empty run reference: give an id, a unique id prefix, a name or "last"')
    try:
        return store.resolve(ref, include_trashed=include_trashed, trashed_only=trashed_only)
    except RunNotFound as exc:
        raise CliError(str(exc)) from None


CLIPPED_WIDTHS = (16, 8)  # a column that gives way to a narrow terminal keeps this many cells, then fewer


def _print_table(headers: list[str], rows: list[list[str]], *, right: frozenset[int] = frozenset(),
                 flexible: frozenset[int], optional: tuple[int, ...] = (), title: str | None = None) -> None:
    """Columns two spaces apart, one line a row, as `docker ps` prints them. (rich's Table laid
    every cell out through its layout engine: half a second for 1,000 runs.) Piped, every cell is
    whole, for grep and less. On a terminal too narrow, the widest `flexible` columns (pairs, tags:
    not ids, statuses or numbers) give way with an ellipsis down to 16 cells, then the `optional`
    ones are left out in that order, then the flexible ones go down to 8. `right`: right-aligned."""
    from rich.cells import cell_len, set_cell_size

    widths = [max([cell_len(h), *(cell_len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    shown = list(range(len(headers)))
    room = os.get_terminal_size().columns if sys.stdout.isatty() else None

    def fits() -> bool:
        return room is None or sum(widths[i] + 2 for i in shown) - 2 <= room

    def clip(floor: int) -> None:
        while not fits():
            widest = max((i for i in flexible if i in shown), key=lambda i: widths[i], default=None)
            if widest is None or widths[widest] <= floor:
                return
            widths[widest] -= 1

    natural = widths[:]
    clip(CLIPPED_WIDTHS[0])
    for i in optional:
        if not fits():
            shown.remove(i)
    widths[:] = natural  # the room the columns left out freed goes to those clipped before
    clip(CLIPPED_WIDTHS[0])
    clip(CLIPPED_WIDTHS[1])  # what is still too wide wraps, as the terminal wraps it

    def cell(text: str, i: int) -> str:
        spare = widths[i] - cell_len(text)
        if spare < 0:
            return set_cell_size(text, widths[i] - 1) + "…"
        return " " * spare + text if i in right else text + " " * spare

    lines = [title] if title else []
    lines += ["  ".join(cell(row[i], i) for i in shown).rstrip() for row in [headers, *rows]]
    sys.stdout.write("\n".join(lines) + "\n")


def _console():
    from rich.console import Console

    class PipedConsole(Console):
        def on_broken_pipe(self) -> None:
            """A reader that went away (`| head`) is no failure: rich's own answer is exit 1, which
            means a failed run here; main() answers BrokenPipeError with 0."""
            to_devnull(sys.stdout)
            raise BrokenPipeError

    # Piped or redirected, rich would assume 80 columns and wrap; a reader (a person with
    # `| less`, or grep) needs every line whole. No markup: what it prints holds run names, notes
    # and errors, which a "[x]" in them must not turn into styles.
    return PipedConsole(highlight=False, markup=False, width=None if sys.stdout.isatty() else 240)


def _write(text: str, output: str) -> None:
    if output == "-":
        sys.stdout.write(text)
        return
    try:
        Path(output).expanduser().write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"-o {output}: cannot write: {exc.strerror}", EXIT_ENV) from None
    print(f"wrote {output}", file=sys.stderr)


# -- commands -----------------------------------------------------------------------------------

def _interrupt(signum, frame) -> NoReturn:
    raise KeyboardInterrupt


def cmd_run(args) -> int:
    # Until the run's own handlers take over (StopFlag, or the launcher's), a SIGTERM ends it as
    # Ctrl-C does, with 130 and nothing made (its default ended the process with 143, unsaid); a
    # caller of main gets its own handler back.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(args)
    finally:
        if not args.ends_process:  # else ignored from the run's end on (StopFlag, exit_process): its code stands
            signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    if args.resume is None and args.preset is None:
        raise CliError("fbt run: give a preset (a file or a preset name) or --resume RUN")
    if args.run_id is not None and (error := _store().fresh_id_error(args.run_id)):
        raise CliError(error)
    if problem := _launch_problem(args):
        raise CliError(problem)
    from fbt_engine.store.runs import name_problem, tag_problem

    if problem := next(filter(None, map(tag_problem, args.tags)), None):
        raise CliError(f"--tag: {problem}")
    if args.name is not None and (problem := name_problem(args.name)):
        raise CliError(f"--name: {problem}")
    if args.resume is not None:  # a run that cannot be resumed is an error before torch is imported
        store = _store()
        rid = _resolve(store, args.resume)
        if (refusal := store.resume_refusal(store.read_meta(rid))) is not None:
            raise CliError(f"--resume {rid}: {refusal}")
        _check_resume_arguments(args, store, rid)
    else:
        # SPEC §3: a bad preset is reported before anything heavy is imported (torch takes
        # seconds); the engine validates again, this only answers bad input sooner.
        from fbt_engine.config.presets import PresetError, collect, command_line_sets

        problems = collect(args.preset, command_line_sets(args.sets, args.device, args.name)).problems
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            return PresetError(problems).exit_code
    from fbt_engine import paths

    # before torch is imported: importing timm fixes inductor's cache at its /tmp default
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(paths.compile_cache_dir()))
    from fbt_engine.launch import is_launcher, launch

    if is_launcher(args):
        return launch(args)
    from fbt_engine.train.engine import RunOptions, run

    return run(RunOptions(preset=args.preset, sets=args.sets, name=args.name, tags=args.tags, device=args.device,
                          json=args.json, resume=args.resume, run_id=args.run_id, quiet=args.quiet,
                          ends_process=args.ends_process))


def _launch_problem(args) -> str | None:
    """What is wrong with the process flags, before torchrun would take them: it ran a single
    process for --nproc-per-node 0, ignored --node-rank without --nnodes, and waited for ever,
    silent, for machines given no place to meet."""
    from fbt_engine.launch import several_machines

    if args.nproc_per_node < 1:
        return f"--nproc-per-node: at least 1 process, got {args.nproc_per_node}"
    several = several_machines(args)
    if args.node_rank and not several:
        return f"--node-rank {args.node_rank}: a rank among several machines; give --nnodes too"
    if several and not args.rdzv_endpoint:
        return f"--nnodes {args.nnodes}: give --rdzv-endpoint HOST:PORT, where the machines meet"
    return None


def _check_resume_arguments(args, store, rid: str) -> None:
    """A resumed run keeps its config, name and tags: what would change them is refused, not
    silently left aside (only --set train.epochs may change, which the engine checks)."""
    given = [flag for flag, value in (("--name", args.name), ("--tag", args.tags), ("--device", args.device))
             if value is not None and value != []]
    if given:
        hint = f" (fbt runs tag {rid} TAG adds a tag)" if given == ["--tag"] else ""
        raise CliError(f"--resume {rid}: {', '.join(given)}: a resumed run keeps its name, tags and device{hint}")
    if args.preset is not None:
        from fbt_engine.config.presets import PresetError, find_preset

        try:
            same = find_preset(args.preset).read_bytes() == (store.run_dir(rid) / "preset.toml").read_bytes()
        except (PresetError, OSError):
            same = False
        if not same:
            raise CliError(f"--resume {rid}: {args.preset} is not the preset the run started from "
                           f"(its copy is {store.run_dir(rid) / 'preset.toml'}); leave the preset out")


def cmd_runs(args) -> int:
    store = _store()
    action = args.runs_command
    if action in (None, "ls"):
        return _runs_ls(store, args)
    if action == "show":
        return _runs_show(store, args)
    if action == "rm":
        # all or none: a bad reference moves nothing; two references to one run move it once
        ids = list(dict.fromkeys(_resolve(store, ref) for ref in args.runs))
        if problem := next(filter(None, map(store.running_problem, ids)), None):
            raise CliError(problem)
        for rid in ids:
            try:
                store.trash(rid)
            except RuntimeError as exc:  # started running since
                raise CliError(str(exc)) from None
            print(f"moved {rid} to the trash (fbt runs restore {rid})")
    elif action == "restore":
        for rid in dict.fromkeys(_resolve(store, ref, trashed_only=True) for ref in args.runs):
            try:
                store.restore(rid)
            except LookupError as exc:  # RunNotFound: the run is not in the trash
                raise CliError(str(exc)) from None
            print(f"restored {rid}")
    elif action == "purge":
        trashed = [s.id for s in store.list(include_trashed=True) if s.trashed]
        if not trashed:
            print("the trash is empty")
        elif not args.yes and not _confirm(f"delete {counted(len(trashed), 'run')} for good?"):
            return EXIT_USAGE
        else:
            print(f"deleted {counted(len(store.purge()), 'run')}")
    elif action == "tag":
        rid = _resolve(store, args.run)
        absent = args.remove and args.tag not in store.read_meta(rid).get("tags", [])
        try:
            tags = store.remove_tag(rid, args.tag) if args.remove else store.add_tag(rid, args.tag)
        except ValueError as exc:  # a tag that lists could not show
            raise CliError(str(exc)) from None
        print(f"{rid}: {f'had no tag {args.tag}; ' if absent else ''}tags {', '.join(tags) or '(none)'}")
    elif action == "note":
        rid = _resolve(store, args.run)
        store.set_note(rid, args.text)
        print(f"{rid}: note {'saved' if args.text else 'cleared'}")
    elif action == "close":
        rid = _resolve(store, args.run)
        was = store.read_meta(rid).get("status")
        try:
            status = store.close_run(rid)
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
        print(f"{rid}: {status}" + (" (it was not running: nothing to close)" if was == status else ""))
    elif action == "reindex":
        indexed, skipped = store.reindex()
        for problem in skipped:
            print(f"warning: left out {problem}", file=sys.stderr)
        print(f"indexed {counted(indexed, 'run')} into {store.index.path}")
    return EXIT_OK


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"{question} Refusing without a terminal; pass --yes.", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _runs_ls(store, args) -> int:
    trash = getattr(args, "trash", False)
    rows = store.list(status=getattr(args, "status", None), tag=getattr(args, "tag", None), include_trashed=trash)
    if trash:
        rows = [r for r in rows if r.trashed]
    if getattr(args, "json", False):
        print(json.dumps([r.as_report(time.time()) for r in rows], indent=1))
        return EXIT_OK
    if not rows:
        filters = " ".join(f"--{key} {value}" for key in ("status", "tag") if (value := getattr(args, key, None)))
        print(f"no runs match {filters}" if filters and store.list(include_trashed=trash)
              else "the trash is empty" if trash else "no runs yet — try: fbt run presets/mlp_to_cnn.toml")
        return EXIT_OK
    _print_table(["id", "name", "status", "method", "teacher → student", "data", "best @ep", "final",
                  "duration", "tags", "started"],
                 [[r.id, r.name if r.name != r.id else "", r.status, r.method, r.pair, r.data,
                   best_at(r.best_top1, r.best_epoch), percent(r.final_top1), duration(r.elapsed(time.time())),
                   ",".join(r.tags), when(r.started)] for r in rows],
                 right=frozenset({6, 7, 8}), flexible=frozenset({1, 3, 4, 9}), optional=(10, 5, 8))
    return EXIT_OK


def _runs_show(store, args) -> int:
    from fbt_engine.store.export import epoch_rows, last_failure, load_config

    rid = _resolve(store, args.run, include_trashed=True)
    s, meta, events = store.summary(rid), store.read_meta(rid), store.events(rid)
    epochs = epoch_rows(rid, events)
    failure = last_failure(events)
    if args.json:
        print(json.dumps({"summary": s.as_report(time.time()), "meta": meta, "config": load_config(store, rid),
                          "epochs": epochs, "failure": failure}, indent=1))
        return EXIT_OK
    out = _console()
    from rich.text import Text

    out.print(Text.assemble((s.id, "bold"), "  ", s.name if s.name != s.id else ""))
    status = s.status + (f" (exit {meta.get('exit_code')})" if meta.get("exit_code") else "") + \
        (f"; in the trash (fbt runs restore {rid})" if s.trashed else "")  # only its folder's path said so
    for label, value in (("status", status),
                         ("method", s.method), ("pair", s.pair), ("data", _data_text(s.dataset, events)),
                         ("best top-1", percent(s.best_top1) + (f" (epoch {s.best_epoch})" if s.best_epoch else "")),
                         ("final top-1", percent(s.final_top1)), ("teacher top-1", percent(s.teacher_top1)),
                         ("best fusion", percent(s.fusion_top1)), ("epochs done", f"{s.epochs_done}/{s.epochs_total}"),
                         ("started", when(s.started)), ("duration", duration(s.elapsed(time.time()))),
                         ("tags", ", ".join(s.tags) or "–"), ("note", s.note or "–"), ("folder", str(store.run_dir(rid))),
                         ("student", _student_files(store.run_dir(rid), s.status))):
        out.print(f"  {label:14s} " + value.replace("\n", "\n" + " " * 17))  # a note's lines under its first
    if failure:
        out.print(f"  {'error':14s} {failure.get('error')}: {failure.get('message')}")
    if epochs:
        shown = epochs[-SHOWN_EPOCHS:]

        def number(value: float | None, fmt: str) -> str:
            return "–" if value is None else format(value, fmt)

        print()
        _print_table(["phase", "epoch", "train loss", "val loss", "top-1", "fusion top-1", "time"],
                     [[e["phase"].replace("_", " "), str(e["epoch"]), number(e["train_loss"], ".4f"),
                       number(e["val_loss"], ".4f"), number(e["student/top1"] if e["phase"] == "distillation"
                                                            else e["teacher/top1"], ".2f"),
                       number(e["fusion/top1"], ".2f"),
                       epoch_time_text(e)] for e in shown],
                     right=frozenset({1, 2, 3, 4, 5, 6}), flexible=frozenset({0}),
                     title=f"epochs ({len(epochs) - len(shown)} earlier: --json has them)" if len(shown) < len(epochs)
                     else "epochs")
    return EXIT_OK


SHOWN_EPOCHS = 12  # runs show's table: the last ones; --json and export have every epoch


def _data_text(name: str, events: list[dict]) -> str:
    """The dataset and how many images the run trained and was scored on: two runs on other slices
    of one dataset (data.subset) read alike by name alone."""
    data = next((e.get("data") or {} for e in events if e["type"] == "run_started"), {})
    train, val = data.get("train_images"), data.get("val_images")
    return f"{name} ({train:,} training images, {val:,} validation)" if train and val else name


def epoch_time_text(row: dict) -> str:
    """An epoch's time; of how many of its steps, where a resume split it."""
    if row["epoch_time"] is None or row.get("timed_steps") == 0:  # 0: only its evaluation ran after the resume
        return "–"
    return f"{row['epoch_time']:.1f} s" + (f" ({row['timed_steps']} steps)" if row.get("timed_steps") is not None else "")


def _student_files(folder: Path, status: str) -> str:
    """Which weights the run keeps, as `fbt export --weights` names them."""
    from fbt_engine.store.export import STUDENT_FILES, ExportError, recorded

    kept = []
    for which, name in STUDENT_FILES.items():
        if (folder / name).is_file():
            try:
                epoch = recorded(folder / name).get("epoch")
            except ExportError:
                epoch = None
            kept.append(f"{which}{f' (epoch {epoch})' if epoch else ''}: {name}")
    return " · ".join(kept) or ("– (written when it finishes)" if status == "running" else
                                "– (none: the run did not finish)")


def cmd_compare(args) -> int:
    from fbt_engine.store.export import compare, compare_csv, config_text, method_own_keys

    store = _store()
    ids = [_resolve(store, r, include_trashed=True) for r in args.runs]
    for i, rid in enumerate(ids):
        if rid in ids[:i]:
            raise CliError(f"compare: {args.runs[ids.index(rid)]} and {args.runs[i]} are the same run, {rid}")
    if len(ids) < 2:
        raise CliError(f"compare takes two runs or more (fbt runs show {args.runs[0]} shows one)")
    summaries, diff = compare(store, ids)
    hidden = set() if args.all else method_own_keys(diff)
    shown = {key: values for key, values in diff.items() if key not in hidden}
    left_out = f"{len(hidden)} parameters that only some of these methods have: --all shows them"
    if args.csv:
        sys.stdout.write(compare_csv(summaries, shown))
        if hidden:  # on stderr: the file stays a table
            print(f"note: left out {left_out}", file=sys.stderr)
        return EXIT_OK
    best = max((s.best_top1 for s in summaries if s.best_top1 is not None), default=None)
    rows = []
    for s in summaries:
        mark = " ★" if s.best_top1 is not None and s.best_top1 == best else ""
        status = f"{s.status} (trash)" if s.trashed else s.status  # compare reads the trash too
        rows.append([s.id, s.name if s.name != s.id else "", s.method, s.pair, status,
                     f"{best_at(s.best_top1, s.best_epoch)}{mark}", percent(s.final_top1), percent(s.fusion_top1),
                     duration(s.elapsed(time.time()))])
    _print_table(["id", "name", "method", "teacher → student", "status", "best @ep", "final", "best fusion",
                  "duration"], rows, right=frozenset({5, 6, 7, 8}), flexible=frozenset({1, 2, 3}), title="runs")
    if shown:
        print()
        _print_table(["key", *(s.id[-6:] for s in summaries)],
                     [[key, *("–" if v is None else config_text(v) for v in values)]
                      for key, values in shown.items()],
                     flexible=frozenset(range(1, 1 + len(summaries))), title="config keys that differ")
    else:
        print("the configs are identical")
    if hidden:
        print(f"(and {left_out})")
    return EXIT_OK


PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".ckpt", ".pkl"})  # what torch.save writes, by custom


def cmd_export(args) -> int:
    from fbt_engine.store.export import BEST_STEM, ExportError, export_metrics, export_student

    store = _store()
    ids = [_resolve(store, r, include_trashed=True) for r in args.runs]
    if args.student is not None:
        if not args.student.strip():
            raise CliError("export --student: give a file (FILE.safetensors) or a folder to write the weights to")
        if len(ids) != 1:
            raise CliError("export --student takes exactly one run")
        if args.format or args.output != "-":
            raise CliError("export: --student writes the weights; --format and -o export metrics: one at a time")
        which = args.weights or "final"
        target = Path(args.student).expanduser()
        if target.is_dir() or args.student.endswith("/"):  # a folder: the run's id names the file
            target = target / f"{ids[0]}{BEST_STEM if which == 'best' else ''}.safetensors"
        elif target.suffix in PICKLE_SUFFIXES:  # written as FILE.safetensors, it looked like a pickle was
            raise CliError(f"export --student {args.student}: the weights are written as safetensors, not a torch "
                           f"pickle: give {target.with_suffix('.safetensors')}")
        try:
            weights, sidecar = export_student(store, ids[0], target, which)
        except ExportError as exc:
            raise CliError(str(exc), EXIT_ENV) from None
        print(f"wrote {weights} and {sidecar}", file=sys.stderr)  # as the metrics' exports say it: stdout is data
        return EXIT_OK
    if args.weights:
        raise CliError("export: --weights chooses the student's weights: give --student FILE.safetensors too")
    if not args.format:
        raise CliError("export: give --format csv|json|jsonl|md, or --student FILE.safetensors")
    _write(export_metrics(store, ids, args.format), args.output)
    return EXIT_OK


def cmd_presets(args) -> int:
    from fbt_engine.config.presets import SET_SOURCE, collect, is_error, list_presets, spoiled
    from fbt_engine.data.catalog import download_note

    if args.presets_command == "keys":
        return _print_keys(args.filter)
    if args.presets_command == "validate":
        worst = EXIT_OK
        for ref in args.presets:
            resolved = collect(ref, args.sets)
            # A preset is valid when its content is; what it needs from this machine (a dataset
            # folder, a checkpoint) is a warning unless --strict, since presets travel between machines.
            needs = [p for p in resolved.problems if not is_error(p) and not args.strict]
            errors = [p for p in resolved.problems if p not in needs]
            # a --set's problem names no file: with several presets, which one it met is said
            with_preset = f" (with {resolved.source})" if len(args.presets) > 1 else ""
            for problem in errors:
                print(f"error: {problem}{with_preset if problem.source == SET_SOURCE else ''}", file=sys.stderr)
            for problem in needs:
                print(f"warning: {problem} (needed to run it on this machine)", file=sys.stderr)
            for doubt in resolved.doubts:
                print(f"warning: {doubt}{with_preset if doubt.source == SET_SOURCE else ''}", file=sys.stderr)
            data = resolved.config.data
            if not errors and (note := download_note(data.name, data.root, data.download)):
                print(f"warning: data.root: {note}{with_preset}", file=sys.stderr)
            if not errors:
                print(f"ok: {resolved.source}" + (f" with {' '.join(args.sets)}" if args.sets else ""))
                continue
            worst = max(worst, EXIT_USAGE if any(not p.environment for p in errors) else EXIT_ENV)
        return worst
    rows = []
    refs = list_presets()
    yours = {ref.name for ref in refs if not ref.builtin}
    for ref in refs:
        resolved = collect(ref.path)
        cfg = resolved.config
        errors = [p for p in resolved.problems if is_error(p)]  # as `presets validate` tells them
        wrong = spoiled(errors)

        def shown(key: str, value: object) -> object:
            """None for a wrong value, which the config holds as the schema's default."""
            return None if wrong(key) else value

        rows.append({"name": ref.name, "kind": "built-in" if ref.builtin else "user", "path": str(ref.path),
                     "method": shown("method.name", cfg.method.name),
                     "teacher": shown("teacher.model", cfg.teacher.model) if cfg.method.needs_teacher else "",
                     "student": shown("student.model", cfg.student.model), "data": shown("data.name", cfg.data.name),
                     "epochs": shown("train.epochs", cfg.train.epochs),
                     "problems": [str(problem) for problem in errors],
                     "needs": [str(problem) for problem in resolved.problems if not is_error(problem)],
                     "downloads": not errors and download_note(cfg.data.name, cfg.data.root, cfg.data.download)
                     is not None,
                     "shadowed": ref.builtin and ref.name in yours})  # the name runs the user's preset
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    _print_table(["name", "kind", "method", "teacher → student", "data", "epochs", "check"],
                 [[r["name"], r["kind"], *(
                     "?" if v is None else str(v) for v in (
                         r["method"], f"{r['teacher'] or '?'} → {r['student'] or '?'}" if r["teacher"] != "" else
                         r["student"], r["data"], r["epochs"])),
                   (f"shadowed: {r['name']!r} runs your preset; this one runs as {r['path']}; " if r["shadowed"]
                    else "") +
                   (f"{counted(len(r['problems']), 'problem')}: fbt presets validate {r['name']}" if r["problems"] else
                    f"ok; this machine lacks what it needs: fbt presets validate {r['name']}" if r["needs"] else
                    "ok; downloads its data first" if r["downloads"] else "ok")]
                  for r in rows], right=frozenset({5}), flexible=frozenset({3, 6}), optional=(4, 1))
    return EXIT_OK


def _print_keys(text: str) -> int:
    """Each key = its default, then what it takes and means, indented and wrapped to the terminal."""
    import textwrap

    from fbt_engine.config.fields import as_written
    from fbt_engine.config.presets import every_setting

    rows = [row for row in every_setting() if text.lower() in row[0].lower()]
    if not rows:
        print(f"error: no setting's key contains {text!r} (fbt presets keys lists them all)", file=sys.stderr)
        return EXIT_USAGE
    width = min(100, os.get_terminal_size().columns) if sys.stdout.isatty() else 100
    for key, takes, default, meaning in rows:
        print(f"{key} = {as_written(default)}")
        print(textwrap.fill(f"{takes}: {meaning}" if meaning else takes, width, initial_indent="    ",
                            subsequent_indent="    "))
    return EXIT_OK


def cmd_paths(args) -> int:
    from fbt_engine import paths

    for label, path in (("data", paths.data_home()), ("runs", paths.runs_dir()), ("trash", paths.trash_dir()),
                        ("index", paths.index_path()), ("teacher cache", paths.teacher_cache_dir()),
                        ("compile cache", paths.compile_cache_dir()),
                        ("config", paths.config_home()), ("user presets", paths.user_presets_dir()),
                        ("built-in presets", paths.builtin_presets_dir())):
        print(f"{label:17s} {path}")
    return EXIT_OK


def cmd_doctor(args) -> int:
    from fbt_engine.doctor import check_preset, report

    preset_checks, code = check_preset(args.preset, args.sets) if args.preset else ([], EXIT_OK)
    checks = report() + preset_checks
    if args.json:
        print(json.dumps(checks, indent=1))
    else:
        for c in checks:
            mark = {"ok": "✓", "info": "·", "warn": "!", "missing": "✗"}[c["state"]]
            print(f"{mark} {c['name']:22s} {c['detail']}")
    # what this machine lacks in general (another dataset, say) does not fail a check of one preset
    return code


COMMANDS = {"run": cmd_run, "runs": cmd_runs, "compare": cmd_compare, "export": cmd_export,
            "presets": cmd_presets, "paths": cmd_paths, "doctor": cmd_doctor}


def main(argv: list[str] | None = None, *, ends_process: bool = False) -> int:
    """`ends_process`: the caller exits with the code returned (see exit_process)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.ends_process = ends_process
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # the data home or a file it holds cannot be read or written as it is
        print(f"error: {os_error(exc)}{_in_data_home(exc)}", file=sys.stderr)
        return EXIT_ENV
    except KeyboardInterrupt:
        return 130


def _in_data_home(exc: OSError) -> str:
    """Where the failing path is fbt's data home or in it, a word saying so and where it was set:
    "/tmp/x: File exists" did not say that FBT_HOME named a file."""
    from fbt_engine import paths

    home = paths.data_home()
    if not exc.filename or not Path(os.fsdecode(exc.filename)).is_relative_to(home):
        return ""
    return f" (fbt's data home is {home}, from FBT_HOME)" if os.environ.get("FBT_HOME") else \
        f" (fbt's data home is {home}; FBT_HOME chooses another)"


def exit_process(code: int) -> NoReturn:
    """The end of an `fbt` process, once `main(ends_process=True)` has returned: what ran (a run,
    say) has ended and recorded how, so a late Ctrl-C must neither cut the exit short with a
    traceback nor change its code. A run starts ignoring it as it returns (StopFlag), which leaves
    no gap before this. Only a process's own end ignores it: a caller of `main` in its own process
    keeps its Ctrl-C (and its SIGTERM, which `fbt run` takes for one while it starts). What is
    left of the exit, Python's own, is short: a process that hung there would need SIGKILL."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(code)


if __name__ == "__main__":
    exit_process(main(ends_process=True))
