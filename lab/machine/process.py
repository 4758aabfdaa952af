"""Child-process plumbing shared by the QEMU and gdb owners."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import time
from typing import Sequence

from lab.errors import LabTimeout, ProcessDied

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the lab dies, even by SIGKILL."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may already be gone between fork and prctl.
    if os.getppid() == 1:
        os._exit(1)


def spawn(argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """Starts a child in its own session (a terminal's Ctrl-C goes to the lab, which then shuts
    the child down in order) that cannot outlive the lab."""
    return subprocess.Popen(list(argv), preexec_fn=_die_with_parent, start_new_session=True,
                            **kwargs)


def reap(proc: subprocess.Popen, soft_timeout: float = 1.0) -> int:
    """Waits for `proc`, then SIGTERM, then SIGKILL; always returns its exit status."""
    try:
        return proc.wait(timeout=soft_timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
    try:
        return proc.wait(timeout=soft_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class Deadline:
    """A bound on a wait, with the name of what is awaited for the error message."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def error(self, **kwargs) -> LabTimeout:
        return LabTimeout(f"timed out after {self.seconds:g} s waiting for {self.what}", **kwargs)


def wait_readable(fd: int, proc: subprocess.Popen, deadline: Deadline, name: str, **err) -> None:
    """Blocks until `fd` is readable, the child exits, or the deadline passes (no polling:
    the child's pidfd is in the same select)."""
    pidfd = os.pidfd_open(proc.pid)
    try:
        while True:
            ready, _, _ = select.select([fd, pidfd], [], [], deadline.remaining())
            if fd in ready:
                return
            if pidfd in ready:
                raise ProcessDied(f"{name} exited while the lab waited for {deadline.what}",
                                  status=proc.wait(), **err)
            if not ready:
                raise deadline.error(**err)
    finally:
        os.close(pidfd)
