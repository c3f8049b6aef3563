"""The `fbt` command: no arguments opens the app; anything else is the headless CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None, *, ends_process: bool = False) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        # piped, closed or in a job: it drew escape codes and waited
        if not all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stdout)):
            print("error: the app needs a terminal (stdin and stdout); `fbt --help` lists the commands that "
                  "run without one", file=sys.stderr)
            return 2
        from fbt_tui.app import run_app

        return run_app()
    from fbt_engine.cli import main as cli_main

    return cli_main(argv, ends_process=ends_process)


def entry() -> None:
    """The `fbt` command (see exit_process)."""
    from fbt_engine.cli import exit_process

    exit_process(main(ends_process=True))


if __name__ == "__main__":
    entry()
