"""A run's private directory: control sockets (mode 0700, never TCP) and logs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


class RunDir:
    """Sockets live in a fresh 0700 directory under the system temp dir (short paths: a unix
    socket path is limited to 107 bytes). Logs go to `log_dir` when given (kept), otherwise
    beside the sockets, kept only when the run failed or `keep` is set."""

    def __init__(self, log_dir: Path | None = None, keep: bool = False) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="lab-"))  # mkdtemp creates it with mode 0700
        self.logs = Path(log_dir) if log_dir is not None else self.path
        self.logs.mkdir(parents=True, exist_ok=True)
        self.keep = keep or log_dir is not None

    def socket(self, name: str) -> Path:
        return self.path / f"{name}.sock"

    def log(self, name: str) -> Path:
        return self.logs / name

    def close(self, failed: bool) -> None:
        """Removes the sockets; removes the logs too unless they must be kept."""
        for sock in self.path.glob("*.sock"):
            sock.unlink(missing_ok=True)
        if self.logs != self.path:
            shutil.rmtree(self.path, ignore_errors=True)
        elif not (failed or self.keep):
            shutil.rmtree(self.path, ignore_errors=True)
