"""One interactive child on the user's terminal (gdb for `lab debug` / `lab attach`, QEMU with
its console on stdio for `lab boot`): the one process owner that shares the lab's session,
because it needs the terminal's foreground process group.

Like the other owners it is a context manager: the child cannot outlive the lab (it dies
with its parent, even by SIGKILL) and is reaped (soft, then hard) in a `finally`.

A terminal's Ctrl-C is a SIGINT to its whole foreground process group: the child and the lab.
While the child owns the terminal, the Ctrl-C is the child's (gdb interrupts the guest and
returns to its prompt), so the lab ignores SIGINT until the child has ended; the child starts
with SIGINT's default action whatever the lab inherited. SIGTERM still unwinds the lab, which
reaps the child and everything else in its `finally` blocks. (QEMU, spawned in its own
session, never sees the terminal's signals.)
"""

from __future__ import annotations

import signal
import subprocess
from typing import Mapping, Sequence

from lab.errors import LabError
from lab.machine.process import _die_with_parent, popen, reap, wait_exit


def _child_setup() -> None:
    """Before exec: die with the lab, and take SIGINT's default action (the lab ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent()


class TerminalProcess:
    """Owns one child that runs on the lab's terminal."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, name: str = "") -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.name = name or self.argv[0]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "TerminalProcess":
        self._sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is the child's
        try:
            self.launch()
        except BaseException:
            signal.signal(signal.SIGINT, self._sigint)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.shutdown()
        finally:
            signal.signal(signal.SIGINT, self._sigint)

    def launch(self) -> None:
        try:
            # Same session as the lab: the child reads the terminal (foreground process group).
            self.proc = popen(self.argv, child_setup=_child_setup, env=self.env)
        except OSError as exc:
            raise LabError(f"{self.name} failed to start: {exc}", command=self.argv) from None

    def wait(self) -> int:
        """The child's exit status, once it has exited (no bound: the user ends it)."""
        assert self.proc is not None
        return wait_exit(self.proc, None)

    def shutdown(self) -> int | None:
        if self.proc is None:
            return None
        return reap(self.proc)
