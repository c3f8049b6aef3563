"""torchrun as `fbt run --nproc-per-node` starts it, with a failure said once: the ranks say in
one line why they stopped (a refusal, a NaN, a stop asked for), and torchrun then raised its own
exception for it, a Python traceback and a box of rank details under fbt's line. Exits as the
first rank that failed did, so a refusal keeps its code (3: no CUDA), and 128 + N on signal N."""

from __future__ import annotations

import logging
import signal
import sys

QUIET = ("torch.distributed.elastic.multiprocessing", "torch.distributed.elastic.agent.server.api")


def signal_name(number: int) -> str:
    """"SIGKILL"; a real-time signal has no name ("signal 40")."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    # Its log of the ranks' ends ("failed (exitcode: 3) local_rank: 0 …", "Received 2 death signal,
    # shutting down workers"): the ranks say why, and a rank that a signal ended is named below.
    # (Set after the imports, which set these loggers' levels.)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.CRITICAL)

    try:
        torchrun(argv)
    except ChildFailedError as exc:
        for rank, ended in sorted(exc.failures.items()):
            if ended.exitcode < 0:  # by a signal, with no word of its own
                name = signal_name(-ended.exitcode)
                print(f"error: rank {rank} was ended by {name}" + (" (out of memory?)" if name == "SIGKILL" else ""),
                      file=sys.stderr)
        _, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode
    except SignalException as exc:  # Ctrl-C reached torchrun as well as its ranks, which save and exit
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
