"""`lab`: the command-line front end. Thin: parses arguments (options.py), calls a run
(commands.py), prints, and maps the outcome to an exit status.

Exit status: 0 all checks pass; 1 a check failed; 2 bad input (one line, no traceback);
3 the lab itself failed (the message names the command, its status and the logs);
130 interrupted.
"""

from __future__ import annotations

import signal
import sys

from lab.cli.commands import COMMANDS
from lab.cli.options import parser
from lab.errors import LabError


class Terminated(BaseException):
    """SIGTERM, turned into an exception so every `finally` reaps its processes."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import faulthandler

    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C must unwind through the `finally` blocks that reap QEMU and gdb even when SIGINT
    # was ignored by whatever started the lab (pytest-xdist's workers ignore it, and so do
    # their children unless told otherwise).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # `kill -USR1` a lab that seems stuck: every thread's Python stack goes to stderr.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    args = parser(COMMANDS).parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="lab: %(message)s", stream=sys.stderr)
    early_gdb = hasattr(args, "fresh")  # the commands that start a Session
    if early_gdb:
        from lab.machine import gdb
    try:
        if early_gdb:
            gdb.prestart()  # starts while the command's modules import
        return args.func(args)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("lab: terminated", file=sys.stderr)
        return 143
    finally:
        if early_gdb:
            gdb.discard_early()


if __name__ == "__main__":
    raise SystemExit(main())
