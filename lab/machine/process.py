"""Child-process plumbing shared by the QEMU and gdb owners."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import time
from typing import Sequence

from lab.errors import LabTimeout, ProcessDied, TimeoutTooShort

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the lab dies, even by SIGKILL."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may already be gone between fork and prctl.
    if os.getppid() == 1:
        os._exit(1)


#: The signals the lab turns into exceptions (cli/main.py).
_STOPS = {signal.SIGINT, signal.SIGTERM}


def popen(argv: Sequence[str], child_setup=_die_with_parent, **kwargs) -> subprocess.Popen:
    """subprocess.Popen with SIGINT and SIGTERM held back while it forks.

    With a preexec_fn, CPython runs the at-fork hooks (logging's `_releaseLock` among them) in
    the parent, and an exception raised there by a signal handler is printed as "Exception
    ignored" and dropped: a SIGTERM landing then was swallowed and the run went on to the end
    with status 0 (3 in 130 trials of `lab fire all`). Blocked, the signal waits until the mask
    is restored after Popen returns, and is raised there; the child just started is reaped
    first. The child restores the mask before its own set-up and exec."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        child_setup()

    proc = None
    try:
        proc = subprocess.Popen(list(argv), preexec_fn=setup, **kwargs)
    finally:
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a held signal is raised here
        except BaseException:
            if proc is not None:
                _signal(proc, signal.SIGKILL)
                wait_exit(proc, None)
            raise
    return proc


@contextlib.contextmanager
def held_stops():
    """SIGINT and SIGTERM held back for a bounded teardown (reaping, closing sockets): one that
    lands inside would leave a half-closed object (qemu.qmp's disconnect, interrupted, asserts
    on its own state when it is closed again or collected). A held signal is raised as the
    block ends, so it still ends the run."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a held signal is raised here


def spawn(argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """Starts a child in its own session (a terminal's Ctrl-C goes to the lab, which then shuts
    the child down in order) that cannot outlive the lab."""
    return popen(argv, start_new_session=True, **kwargs)


def wait_exit(proc: subprocess.Popen, timeout: float | None) -> int | None:
    """`proc`'s exit status once it has exited within `timeout` (None: no bound), else None.

    Waits on the pidfd and reaps with os.waitpid rather than Popen.wait: Popen.poll() takes
    an internal lock with acquire(False) and releases it in a `finally` it has not yet entered,
    so a signal handler that raises there (the lab turns SIGTERM into an exception) leaves the
    lock held, and every later Popen.wait() without a timeout blocks forever. Seen here: `lab
    inspect` hung after SIGTERM in about 1 suite run in 10."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # reaped already
        return proc.returncode if proc.returncode is not None else -signal.SIGKILL
    try:
        if not select.select([fd], [], [], timeout)[0]:
            return None
    finally:
        os.close(fd)
    try:
        _, status = os.waitpid(proc.pid, 0)
    except ChildProcessError:  # Popen reaped it meanwhile
        return proc.returncode if proc.returncode is not None else -signal.SIGKILL
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode


def pid_gone(pid: int, timeout: float) -> bool:
    """Whether process `pid` (any process, not only a child) ends within `timeout`: its pidfd
    becomes readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def reap(proc: subprocess.Popen, soft_timeout: float = 1.0) -> int:
    """Waits for `proc`, then SIGTERM, then SIGKILL; always returns its exit status."""
    status = wait_exit(proc, soft_timeout)
    if status is None:
        _signal(proc, signal.SIGTERM)
        status = wait_exit(proc, soft_timeout)
    if status is None:
        _signal(proc, signal.SIGKILL)
        status = wait_exit(proc, None)
    return status


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.kill(proc.pid, sig)  # not Popen.send_signal: it calls poll() first
    except ProcessLookupError:
        pass


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
                                  status=wait_exit(proc, None), **err)
            if not ready:
                raise deadline.error(**err)
    finally:
        os.close(pidfd)


def patient(wait, timeout: float, usual: float, what: str, bound: float | None = None):
    """`wait(timeout)`; when that times out on a bound shorter than the `usual` one, the wait
    goes on for the rest of `usual`: what then comes shows the bound was too short for the work
    (TimeoutTooShort, exit 3), and only what does not come even then is the guest's doing (the
    first LabTimeout, for the caller to judge). `bound`: the user's whole bound, when `timeout`
    is what was left of it."""
    try:
        return wait(timeout)
    except LabTimeout as first:
        if timeout >= usual:
            raise
        t0 = time.monotonic()
        try:
            wait(usual - timeout)
        except LabTimeout:
            raise first from None
        bound = timeout if bound is None else bound
        raise TimeoutTooShort(
            f"timed out after {bound:g} s waiting for {what} (it came {time.monotonic() - t0:.3g} s "
            f"later: --timeout {bound:g} is too short for the work)", logs=first.logs) from None
