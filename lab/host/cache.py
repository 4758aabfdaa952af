"""The lab's caches on the host: `$XDG_CACHE_HOME/x86-kernel-lab/<name>` (or ~/.cache/...)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str) -> Path:
    """The directory of the cache `name` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "x86-kernel-lab" / name
