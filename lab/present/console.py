"""The one console the CLI prints through."""

from __future__ import annotations

import sys

from rich.console import Console

#: Piped output (CI logs) gets a fixed wide layout instead of rich's 80 columns.
PIPED_WIDTH = 160


def console(piped_width: int = PIPED_WIDTH) -> Console:
    return Console() if sys.stdout.isatty() else Console(width=piped_width)
