"""Helpers shared by the integration tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from lab.host import profiles
from lab.machine.process import pid_gone


def kvm_usable() -> tuple[bool, str]:
    try:
        profiles.load("kvm").check_usable()
    except Exception as exc:  # UserError names what is missing
        return False, str(exc)
    return True, ""


def lab_cli(*args: str, env: dict | None = None, timeout: float = 60, cwd=None) -> subprocess.CompletedProcess:
    """Runs the `lab` console script as a user would (in `cwd`, where lab.toml is looked for)."""
    exe = shutil.which("lab") or sys.executable
    argv = [exe, *args] if exe != sys.executable else [exe, "-m", "lab", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether process `pid` ends within `timeout` (its pidfd becomes readable)."""
    return pid_gone(pid, timeout)


#: Processes of VMs deliberately shared across a module's tests; the orphan guard skips them.
SHARED_PIDS: set[int] = set()


class SharedVM:
    """One booted VM shared by a module's tests, replaced when a test leaves it unusable (a
    fire that timed out leaves the guest in an unknown state): one bad event fails one test,
    not every test after it. Its processes are registered with the orphan guard."""

    def __init__(self, kernel, profile, log_root, **options):
        self.kernel, self.profile, self.log_root, self.options = kernel, profile, log_root, options
        self.session = None
        self.count = 0

    def get(self):
        from lab.machine.session import Session

        if self.session is None:
            self.count += 1
            self.session = Session(self.kernel, self.profile, log_dir=self.log_root / f"vm{self.count}",
                                   **self.options)
            self.session.__enter__()
            SHARED_PIDS.update({self.session.qemu.proc.pid, self.session.gdb.proc.pid})
            self.session.boot_to_ready()
        return self.session

    def discard(self) -> None:
        if self.session is not None:
            pids = {self.session.qemu.proc.pid, self.session.gdb.proc.pid}
            self.session.close(failed=True)
            SHARED_PIDS.difference_update(pids)
            self.session = None
