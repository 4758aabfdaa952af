"""`lab`: the command-line front end. Thin: parses arguments (options.py), calls a run
(commands.py), prints, and maps the outcome to an exit status.

Exit status: 0 all checks pass; 1 a check failed; 2 bad input (one line, no traceback);
3 the lab itself failed (the message names the command, its status and the logs);
130 interrupted; 141 the reader of stdout went away (`lab ... | head -1`: SIGPIPE's status,
silently, as `yes | head` ends); 143 terminated.

The signal handlers are the first thing this module does when the `lab` command (or
`python -m lab`) imports it, before any other import (even `from __future__`, which is a real
import): a SIGTERM or Ctrl-C that lands while the lab's modules import is recorded, and raised
as soon as `main` starts, so it gives the same one line and status as one that lands later.
One that lands while CPython itself starts (its `site` imports, before the first line of the
lab's code) gets CPython's own handling: SIGTERM's default action, or for SIGINT a
KeyboardInterrupt traceback from CPython's start-up. That window is outside the lab.
"""

import _signal  # built in: installing the handlers imports nothing
import sys


class Terminated(BaseException):
    """SIGTERM, turned into an exception so every `finally` reaps its processes."""


#: Every stopping signal received, in order: a handler's exception raised where CPython
#: prints and drops it (a finalizer, an at-fork hook) must not let the run end as a success.
_received: list[type[BaseException]] = []

#: Set once `main` is inside its `try`: until then a signal is only recorded (an exception
#: raised while this module imports would escape as a traceback), and `main` raises it first.
_armed = False


def _on_sigterm(signum, frame):
    _received.append(Terminated)
    if _armed:
        raise Terminated()


def _on_sigint(signum, frame):
    _received.append(KeyboardInterrupt)
    if _armed:
        raise KeyboardInterrupt()


def _install_signal_handlers() -> None:
    global _armed
    _armed = True
    _signal.signal(_signal.SIGTERM, _on_sigterm)
    # Ctrl-C must unwind through the `finally` blocks that reap QEMU and gdb even when SIGINT
    # was ignored by whatever started the lab (pytest-xdist's workers ignore it, and so do
    # their children unless told otherwise).
    _signal.signal(_signal.SIGINT, _on_sigint)


def _disarm() -> None:
    """The run's status is decided and its output flushed: a signal from here to the process's
    end (gdb's reaping, CPython's own exit) takes its default action, so the lab still ends by
    that signal, and never with a traceback from outside `main`."""
    if _launched_as_the_lab_command():
        _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)


def _launched_as_the_lab_command() -> bool:
    """This module imported by the `lab` console script or `python -m lab`, not by a program
    that uses the lab as a library (a test, `lab.api`), whose signals are its own."""
    top = sys.modules.get("__main__")
    spec = getattr(top, "__spec__", None)
    if spec is not None:
        return spec.name == "lab.__main__"
    return (getattr(top, "__file__", None) or "").rpartition("/")[2] == "lab"


if _launched_as_the_lab_command():  # record, not yet raise: see `_armed`
    _signal.signal(_signal.SIGTERM, _on_sigterm)
    _signal.signal(_signal.SIGINT, _on_sigint)

import signal  # noqa: E402 - after the handlers, on purpose (see the module's docstring)


#: A closed stdout (the reader of a pipe exited): 128 + SIGPIPE, as a shell reports it.
CLOSED_PIPE = 128 + signal.SIGPIPE


def _closed_pipe() -> int:
    """stdout's reader is gone: nothing more can be said there, and Python's own flush at exit
    must not fail again, so stdout becomes /dev/null."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return CLOSED_PIPE


#: OSErrors that say a path given is not one the system can look up (a component over 255 bytes).
_PATH_ERRNOS = {36}  # errno.ENAMETOOLONG on Linux

#: How each way of being stopped ends: (message, exit status).
STOPPED = {KeyboardInterrupt: ("lab: interrupted", 130), Terminated: ("lab: terminated", 143)}


def _stopped_by(exc: BaseException) -> tuple[str, int] | None:
    """The signal behind `exc`: itself, or one it was raised while handling (a clean-up that
    failed as Ctrl-C or SIGTERM unwound, e.g. `-break-delete` on a target still running), so a
    failing clean-up never replaces the termination status."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for kind, outcome in STOPPED.items():
            if isinstance(exc, kind):
                return outcome
        exc = exc.__context__
    return None


def _report(exc: BaseException) -> int:
    stopped = _stopped_by(exc)
    if stopped is not None:
        print(stopped[0], file=sys.stderr)
        return stopped[1]
    from lab.errors import LabError, UserError

    if isinstance(exc, LabError):
        print(f"lab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, OSError) and exc.errno in _PATH_ERRNOS and exc.filename is not None:
        # a path the user gave that the system cannot even look up: bad input, wherever it showed
        print(f"lab: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return UserError.exit_code
    raise exc


def _finish(status: int) -> int:
    """The run's status, unless a stopping signal's exception was dropped on the way (CPython
    prints and drops one raised in a finalizer): the run was still stopped."""
    if _received:
        return _report(_received[0]())
    return status


def main(argv: list[str] | None = None) -> int:
    early_gdb = None
    try:
        _install_signal_handlers()  # inside the try: a signal right after it is reported too
        if _received:  # one that landed while the lab's modules imported
            raise _received[0]()
        import faulthandler

        from lab.cli.commands import COMMANDS, check_outputs
        from lab.cli.options import parser

        # `kill -USR1` a lab that seems stuck: every thread's Python stack goes to stderr.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        args = parser(COMMANDS).parse_args(argv)
        check_outputs(args)
        import logging

        # qemu.qmp runs its own asyncio tasks: an interrupted QMP command leaves a task whose
        # KeyboardInterrupt asyncio would print at exit ("Task exception was never retrieved")
        # after the lab's one line. QMP failures reach the lab as exceptions (machine/qemu.py).
        # qemu.qmp logs its own connection's ups and downs (with tracebacks when a signal breaks
        # its state machine mid-disconnect); the lab reports what matters itself.
        for name in ("asyncio", "qemu.qmp"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if args.verbose:
            logging.basicConfig(level=logging.INFO, format="lab: %(message)s", stream=sys.stderr)
        if hasattr(args, "fresh"):  # the commands that start a Session
            from lab.machine import gdb as early_gdb

            early_gdb.prestart()  # starts while the command's modules import
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return _finish(status)
    except BrokenPipeError:
        return _closed_pipe()
    except (Exception, KeyboardInterrupt, Terminated) as exc:
        return _report(exc)
    finally:
        _disarm()
        if early_gdb is not None:
            early_gdb.discard_early()


if __name__ == "__main__":
    raise SystemExit(main())
