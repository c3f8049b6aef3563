"""`fbt run --nproc-per-node N`: one run over several processes, launched through PyTorch's own
torchrun. This process validates first, picks the run id, starts torchrun and waits; when rank 0
died without closing the run (killed, or taken down with a failing rank), it closes the run with
the ranks' errors, so no run is left "running" and every rank's failure reaches the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from fbt_engine.formats import usable_cores
from fbt_engine.store.events import EventWriter
from fbt_engine.store.runs import RunStore, new_run_id

STATUS_EXIT = {"finished": 0, "interrupted": 130}
RANK_ERRORS = "rank-*.error.json"  # written by failing ranks other than 0 (see train/report.py)


def torchrun_command(args, run_id: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "fbt_engine.torchrun", f"--nproc-per-node={args.nproc_per_node}",
           f"--nnodes={args.nnodes}", f"--node-rank={args.node_rank}"]
    if args.rdzv_endpoint:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={args.rdzv_endpoint}"]
    elif str(args.nnodes) == "1":
        cmd.append("--standalone")
    cmd += ["-m", "fbt_engine", "run"]
    if args.preset:
        cmd.append(args.preset)
    for item in args.sets:
        cmd += ["--set", item]
    for tag in args.tags:
        cmd += ["--tag", tag]
    for flag, value in (("--name", args.name), ("--device", args.device), ("--resume", args.resume),
                        ("--id", run_id)):
        if value is not None:  # --name "" too: a run without a name
            cmd += [flag, value]
    cmd += [flag for flag, on in (("--json", args.json), ("--quiet", args.quiet)) if on]
    return cmd


def launch(args) -> int:
    store = RunStore()
    run_id = None if args.resume else (args.run_id or new_run_id())
    if several_machines(args) and not args.quiet:  # torchrun says nothing until they have
        print(f"waiting at {args.rdzv_endpoint} for the {args.nnodes} machines to join", file=sys.stderr)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the ranks; this one stays to close up
    # the cores split between this machine's ranks, unless the user chose (torchrun's default is 1
    # thread, with a banner saying so)
    env = {"OMP_NUM_THREADS": str(max(1, (usable_cores() or 1) // args.nproc_per_node)), **os.environ}
    proc = subprocess.Popen(torchrun_command(args, run_id), stdin=subprocess.DEVNULL, env=env)
    # a kill reaches torchrun too, which stops its ranks: it was left waiting for machines
    previous_term = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        code = proc.wait()
    finally:  # a process that ends with this run keeps ignoring them while it closes up (see StopFlag)
        signal.signal(signal.SIGINT, signal.SIG_IGN if args.ends_process else previous)
        signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ends_process else previous_term)
    if args.node_rank != 0:
        return code
    rid = run_id or store.resolve(args.resume)
    if not store.exists(rid):
        return code  # refused before the run existed; the ranks said why
    return close_if_abandoned(store, rid, code)


def close_if_abandoned(store: RunStore, run_id: str, code: int) -> int:
    meta = store.read_meta(run_id)
    status = meta.get("status")
    run_dir = store.run_dir(run_id)
    errors = [json.loads(p.read_text()) for p in sorted(run_dir.glob(RANK_ERRORS))]
    if status != "running":
        for e in errors:
            print(f"error: rank {e.get('rank')}: {e.get('error')}: {e.get('message')}", file=sys.stderr)
        return STATUS_EXIT.get(status, 1)
    first = errors[0] if errors else {"error": "ProcessExit", "message": f"torchrun exited with code {code}"}
    writer = EventWriter(run_dir / "events.jsonl")
    writer.write("run_failed", error=first.get("error"), message=first.get("message"),
                 traceback=first.get("traceback", ""), rank=first.get("rank"), ranks=errors)
    writer.close()
    now = time.time()
    store.update_meta(run_id, status="failed", exit_code=code or 1, ended=now, heartbeat=now)
    store.refresh_index(run_id)
    print(f"error: run {run_id} failed on rank {first.get('rank', '?')}: {first.get('error')}: "
          f"{first.get('message')}", file=sys.stderr)
    return 1


def several_machines(args) -> bool:
    return str(args.nnodes) != "1"  # torchrun's --nnodes may be a range ("1:4")


def is_launcher(args) -> bool:
    """True for the process that should start torchrun (not for the ranks it starts)."""
    return (args.nproc_per_node > 1 or several_machines(args)) and "LOCAL_RANK" not in os.environ


