"""The lab's one exception hierarchy.

Every failure the lab reports is a `LabError`. It carries what is needed to act on it: the
command that failed (argv), its exit status, and the directory holding the logs. The CLI prints
`UserError`s as one line without a traceback; other `LabError`s add the command, the status and
the log path.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Sequence


class LabError(Exception):
    """Root of every error the lab raises on purpose."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] | None = None,
        status: int | None = None,
        logs: Path | str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.command = list(command) if command is not None else None
        self.status = status
        self.logs = Path(logs) if logs is not None else None
        self.detail = detail

    def __str__(self) -> str:
        parts = [self.message]
        if self.command:
            parts.append(f"command: {shlex.join(self.command)}")
        if self.status is not None:
            parts.append(f"exit status: {self.status}")
        if self.logs is not None:
            parts.append(f"logs: {self.logs}")
        return "\n".join(parts)


class UserError(LabError):
    """Bad input from the user (unknown profile, missing file, missing tool): one line."""

    exit_code = 2

    def __str__(self) -> str:
        return self.message


class ToolMissing(UserError):
    """A program the lab needs is not installed."""


class BuildError(LabError):
    """The kernel did not build; the compiler's output was already shown."""


class LabTimeout(LabError):
    """A bounded wait expired. The message names what was awaited and for how long."""


class ProcessDied(LabError):
    """QEMU or gdb exited while the lab was waiting on it."""


class GdbError(LabError):
    """gdb answered a command with ^error."""


class GuestError(LabError):
    """The guest did something the lab did not expect (wrong marker, bad reply)."""


class LogWriteError(LabError):
    """A log could not be written (a full disk, a read-only file system): the run stops, since
    what it saw could not be kept."""


class TimeoutTooShort(LabTimeout):
    """A `--timeout` shorter than the work: what was awaited came, but after the bound. The
    lab's own timeout (exit 3), never a verdict about the CPU."""
