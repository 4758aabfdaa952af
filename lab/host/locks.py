"""One lock file, one exclusive holder at a time, across processes (parallel test workers, two
terminals). The lock is the open file's flock: it ends when the file is closed, also when the
holder dies."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: Path):
    """Holds an exclusive flock on `path` (created, with its folder) for the `with` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
