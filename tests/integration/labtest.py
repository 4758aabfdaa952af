"""Helpers shared by the integration tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from lab import profiles


def kvm_usable() -> tuple[bool, str]:
    try:
        profiles.load("kvm").check_usable()
    except Exception as exc:  # UserError names what is missing
        return False, str(exc)
    return True, ""


def lab_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs the `lab` console script as a user would."""
    exe = shutil.which("lab") or sys.executable
    argv = [exe, *args] if exe != sys.executable else [exe, "-m", "lab", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
