"""One lock file, one exclusive holder at a time, across processes (parallel test workers, two
terminals). The lock is the open file's flock: it ends when the file is closed, also when the
holder dies. The holder writes its pid into the file, so a waiter that gives up can say who
holds it.

Also here: who owns a leftover. Files and directories the lab may leave behind when it is
SIGKILLed carry an owner tag, `PID-STARTTIME` (the start time from /proc/PID/stat, so a pid
reused by another process is not mistaken for the owner); `owner_gone` tells a later run that
it may remove them."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import time
from contextlib import contextmanager
from pathlib import Path

from lab.errors import LabError, LabTimeout

_IN_CLOSE = 0x08 | 0x10  # IN_CLOSE_WRITE | IN_CLOSE_NOWRITE
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def exclusive(path: Path, timeout: float | None = None, what: str | None = None):
    """Holds an exclusive flock on `path` (created, with its folder) for the `with` block.

    `timeout` bounds the wait (None: no bound); when it expires, LabTimeout names `what` the
    lock guards and the process holding it. The file is opened without following a symbolic
    link and without truncating it (a waiter must not erase the holder's pid)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LabError(f"the lock file {path} is a symbolic link; the lab does not follow "
                           f"links to its lock files: remove it") from None
        raise
    try:
        _acquire(fd, path, timeout, what or str(path))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _acquire(fd: int, path: Path, timeout: float | None, what: str) -> None:
    """Blocks for the lock, at most `timeout`. No polling: the holder releases the lock by
    closing the file (or by dying, which closes it), and inotify reports every close of it."""
    if _try_lock(fd):
        return
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    end = time.monotonic() + timeout
    ino = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if ino < 0:
        raise OSError(ctypes.get_errno(), f"inotify_init1: {os.strerror(ctypes.get_errno())}")
    try:
        if _libc.inotify_add_watch(ino, os.fsencode(f"/proc/self/fd/{fd}"), _IN_CLOSE) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
        while not _try_lock(fd):  # the watch exists first: a release in between is not missed
            remaining = end - time.monotonic()
            if remaining <= 0 or not select.select([ino], [], [], remaining)[0]:
                raise LabTimeout(f"timed out after {timeout:g} s waiting for the lock on {what} "
                                 f"({path}): {holder(fd)}")
            try:
                os.read(ino, 4096)  # the events only wake the wait; what they say is not needed
            except BlockingIOError:
                pass
    finally:
        os.close(ino)


def holder(fd: int) -> str:
    """Who holds the flock on the file open as `fd`: the kernel's /proc/locks (authoritative)
    or else the pid the holder wrote into the file, with that process's command line."""
    st = os.fstat(fd)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pid = None
    try:
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF"; waiters' lines have "->"
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == ident:
                    pid = int(fields[4])
                    break
    except (OSError, ValueError):
        pass
    if pid is None:
        try:
            pid = int(os.pread(fd, 32, 0).split()[0])
        except (OSError, ValueError, IndexError):
            return "the holder is unknown (no pid in the lock file, none in /proc/locks)"
    try:
        cmd = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return f"held by pid {pid} (no longer running?)"
    stopped = " (stopped)" if state in ("T", "t") else ""
    return f"held by pid {pid}{stopped}: {cmd[:200]}"


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), or None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


_owner: tuple[int, str] | None = None


def owner_tag() -> str:
    """This process as an owner: `PID-STARTTIME`."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:  # recomputed in a forked child
        _owner = (pid, f"{pid}-{_start_time(pid)}")
    return _owner[1]


def owner_gone(pid: int, start: str | None = None) -> bool:
    """Whether the process that wrote tag `PID-START` (or just PID, for older names) has ended.
    A process that cannot be examined counts as alive: its leftovers are kept."""
    now = _start_time(pid)
    if now is None:
        return not Path(f"/proc/{pid}").exists()
    return start is not None and now != start
