"""One interactive child on the user's terminal (gdb for `lab debug` / `lab attach`, QEMU with
its console on stdio for `lab boot`): the one process owner that shares the lab's session,
because it needs the terminal's foreground process group.

Like the other owners it is a context manager: the child cannot outlive the lab (it dies
with its parent, even by SIGKILL) and is reaped (soft, then hard) in a `finally`.
"""

from __future__ import annotations

import subprocess
from typing import Mapping, Sequence

from lab.errors import LabError
from lab.machine.process import _die_with_parent, reap, wait_exit


class TerminalProcess:
    """Owns one child that runs on the lab's terminal."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, name: str = "") -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.name = name or self.argv[0]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "TerminalProcess":
        self.launch()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def launch(self) -> None:
        try:
            # Same session as the lab: the child reads the terminal (foreground process group).
            self.proc = subprocess.Popen(self.argv, env=self.env, preexec_fn=_die_with_parent)
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
