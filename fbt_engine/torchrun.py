"""torchrun as `fbt run --nproc-per-node` starts it, with a failure said once: the ranks say in
one line why they stopped (a refusal, a NaN, a stop asked for), and torchrun then raised its own
exception for it, a Python traceback and a box of rank details under fbt's line. Exits as the
first rank that failed did, so a refusal keeps its code (3: no CUDA), and 128 + N on signal N."""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> int:
    # its log of the ranks' ends ("failed (exitcode: 3) local_rank: 0 …", "Sending process … closing
    # signal"): the ranks have said why, and the launcher names the run's state
    logging.getLogger("torch.distributed.elastic.multiprocessing").setLevel(logging.CRITICAL)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(argv)
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode  # < 0: -signal
    except SignalException as exc:  # Ctrl-C reached torchrun as well as its ranks, which save and exit
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
