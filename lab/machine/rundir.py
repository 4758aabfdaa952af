"""A run's private directory: control sockets (mode 0700, never TCP) and logs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from lab.errors import LabError, LogWriteError, UserError

#: sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
SUN_PATH_MAX = 107
#: The longest socket name a run uses (lab/machine/qemu.py, lab/machine/relay.py).
LONGEST_SOCKET = "serial.sock"
#: Free space a run's logs need to start: a boot's serial, QEMU and gdb logs are well below it.
MIN_FREE_BYTES = 1 << 20
#: Where the socket directory goes when the system temp dir's path is too long for one.
SHORT_BASES = ("/tmp", "/dev/shm")


def _socket_dir() -> Path:
    """A fresh 0700 directory (mkdtemp) whose socket paths fit sun_path: under the system temp
    dir, or under a short base when that path is too long (a deep TMPDIR)."""
    for base in (None, *SHORT_BASES):
        try:
            path = Path(tempfile.mkdtemp(prefix="lab-", dir=base))
        except OSError:
            continue
        if len(str(path / LONGEST_SOCKET).encode()) <= SUN_PATH_MAX:
            return path
        path.rmdir()
    raise LabError(f"no temporary directory gives a unix socket path of at most {SUN_PATH_MAX} "
                   f"bytes (TMPDIR={tempfile.gettempdir()}); set TMPDIR to a short path")


class RunDir:
    """Sockets live in a fresh 0700 directory under the system temp dir (short paths: a unix
    socket path is limited to 107 bytes). Logs go to `log_dir` when given (kept), otherwise
    beside the sockets, kept only when the run failed or `keep` is set."""

    def __init__(self, log_dir: Path | None = None, keep: bool = False) -> None:
        if log_dir is not None:
            try:
                Path(log_dir).mkdir(parents=True, exist_ok=True)
                probe = Path(log_dir) / ".lab-write-test"
                probe.touch()
                probe.unlink()
            except OSError as exc:
                raise UserError(f"--log-dir {log_dir}: cannot write there ({exc.strerror or exc})") from None
            free = shutil.disk_usage(log_dir).free
            if free < MIN_FREE_BYTES:
                raise UserError(f"--log-dir {log_dir}: only {free} bytes free (a run needs {MIN_FREE_BYTES})")
        self.path = _socket_dir()  # mkdtemp creates it with mode 0700
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

    def close(self, failed: bool) -> None:
        """Removes the sockets; removes the logs too unless they must be kept."""
        for sock in self.path.glob("*.sock"):
            sock.unlink(missing_ok=True)
        if self.logs != self.path:
            shutil.rmtree(self.path, ignore_errors=True)
        elif not (failed or self.keep):
            shutil.rmtree(self.path, ignore_errors=True)


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
