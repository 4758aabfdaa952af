"""A run's private directory: control sockets (mode 0700, never TCP) and logs."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from lab.errors import LabError, LogWriteError, UserError
from lab.host.locks import owner_gone, owner_tag

#: sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
SUN_PATH_MAX = 107
#: The longest socket name a run uses (lab/machine/qemu.py, lab/machine/relay.py).
LONGEST_SOCKET = "serial.sock"
#: Free space a run's logs need to start: a boot's serial, QEMU and gdb logs are well below it.
MIN_FREE_BYTES = 1 << 20
#: Where the socket directory goes when the system temp dir's path is too long for one.
SHORT_BASES = ("/tmp", "/dev/shm")
#: `lab-PID-XXXXXXXX` (mkdtemp's suffix): the lab's own run directories.
NAME = re.compile(r"lab-(\d+)-[a-z0-9_]{8}")
#: The owner's tag, `PID-STARTTIME` (lab/host/locks.py): present while the owner runs, removed
#: when a failed run's logs are kept on purpose.
OWNER_FILE = ".lab-owner"

_swept: set[str] = set()  # temp dirs swept by this process


def _socket_dir() -> Path:
    """A fresh 0700 directory (mkdtemp) whose socket paths fit sun_path: under the system temp
    dir, or under a short base when that path is too long (a deep TMPDIR)."""
    for base in (None, *SHORT_BASES):
        try:
            path = Path(tempfile.mkdtemp(prefix=f"lab-{os.getpid()}-", dir=base))
        except OSError:
            continue
        if len(str(path / LONGEST_SOCKET).encode()) <= SUN_PATH_MAX:
            return path
        path.rmdir()
    raise LabError(f"no temporary directory gives a unix socket path of at most {SUN_PATH_MAX} "
                   f"bytes (TMPDIR={tempfile.gettempdir()}); set TMPDIR to a short path")


def _check_log_dir(log_dir: Path) -> None:
    """Creates `log_dir` (and its missing parents) and makes sure a run can write its logs
    there; a refused one is one line, and whatever this made for it is removed again."""
    made = [d for d in (log_dir, *log_dir.parents) if not os.path.lexists(d)][::-1]
    try:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            probe = log_dir / ".lab-write-test"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise UserError(f"--log-dir {log_dir}: cannot write there ({exc.strerror or exc})") from None
        free = shutil.disk_usage(log_dir).free
        if free < MIN_FREE_BYTES:
            raise UserError(f"--log-dir {log_dir}: only {free} bytes free (a run needs {MIN_FREE_BYTES})")
    except UserError:
        for d in reversed(made):
            try:
                d.rmdir()  # only if still empty: never what another process put there since
            except OSError:
                pass
        raise


class RunDir:
    """Sockets live in a fresh 0700 directory under the system temp dir (short paths: a unix
    socket path is limited to 107 bytes). Logs go to `log_dir` when given (kept), otherwise
    beside the sockets, kept only when the run failed or `keep` is set.

    A run killed by SIGKILL cannot remove its directory: the next RunDir of any process sweeps
    those whose owner has ended (`sweep`)."""

    def __init__(self, log_dir: Path | None = None, keep: bool = False) -> None:
        if log_dir is not None:
            _check_log_dir(Path(log_dir))
        for base in (None, *SHORT_BASES):
            sweep(base)
        self.path = _socket_dir()  # mkdtemp creates it with mode 0700
        (self.path / OWNER_FILE).write_text(owner_tag() + "\n")
        self.logs = Path(log_dir) if log_dir is not None else self.path
        self.keep = keep or log_dir is not None

    def socket(self, name: str) -> Path:
        path = self.path / f"{name}.sock"
        assert len(str(path).encode()) <= SUN_PATH_MAX, f"socket name {name!r} longer than {LONGEST_SOCKET!r}"
        return path

    def log(self, name: str) -> Path:
        return self.logs / name

    def open_log(self, name: str, mode: str = "ab") -> "LogFile":
        return LogFile(self.log(name), mode)

    def remove_sockets(self) -> None:
        for sock in self.path.glob("*.sock"):
            sock.unlink(missing_ok=True)

    def close(self, failed: bool) -> None:
        """Removes the sockets; removes the logs too unless they must be kept."""
        self.remove_sockets()
        if self.logs != self.path:
            shutil.rmtree(self.path, ignore_errors=True)
        elif not (failed or self.keep):
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            (self.path / OWNER_FILE).unlink(missing_ok=True)  # kept: no later sweep takes it
            if not any(self.path.iterdir()):
                # No log was written here (a nested run, e.g. the one making the saved ready
                # state, failed and named its own directory): nothing to keep.
                self.path.rmdir()


def sweep(root: str | None = None) -> list[Path]:
    """Removes the run directories under `root` (the system temp dir) left by lab processes
    that have ended without closing them (SIGKILL): only directories named as RunDir names them,
    owned by this user, whose owner file names the same pid as their name, and whose process
    has ended. Kept logs (no owner file) and everything else are left alone. Once per process
    and directory."""
    root = root or tempfile.gettempdir()
    if root in _swept:
        return []
    _swept.add(root)
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    uid = os.geteuid()
    for entry in entries:
        m = NAME.fullmatch(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                continue
            fd = os.open(os.path.join(entry.path, OWNER_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                tag = os.read(fd, 64).decode().strip()
            finally:
                os.close(fd)
        except (OSError, UnicodeDecodeError):
            continue
        pid, _, start = tag.partition("-")
        if pid == m.group(1) and start.isdigit() and owner_gone(int(pid), start):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


class LogFile:
    """One log file the lab writes; a failed write (a full disk) raises LogWriteError naming the
    file instead of an OSError from deep inside pexpect or the MI transcript."""

    def __init__(self, path: Path, mode: str = "ab") -> None:
        self.path = path
        self._f = open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"}))

    def _failed(self, exc: OSError) -> LogWriteError:
        return LogWriteError(f"cannot write the log {self.path}: {exc.strerror or exc}", logs=self.path.parent)

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def __enter__(self) -> "LogFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:
            pass  # the failed write was reported when it happened
