"""The one console the CLI prints through, and the progress display of long work.

Width: a terminal's own width; piped, `COLUMNS` when it is set, else 80 (rich's rule). Every
table is built to shrink to that width (rich wraps or folds its cells), so no line is longer
than the terminal it is printed on; nothing is forced to a fixed width.

Progress goes to stderr, and only when stderr is a terminal: a pipe or a log gets the result
and nothing else."""

from __future__ import annotations

import errno
import os
import sys
from contextlib import contextmanager

from rich.console import Console

#: The narrowest layout the lab's tables are designed for.
MIN_WIDTH = 80


class _Stdout(Console):
    """rich's Console, except that a closed stdout is a BrokenPipeError, which the CLI ends
    with SIGPIPE's status (141), where rich itself would exit 1, the check-failed status."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "stdout's reader went away")


def width() -> int:
    """The width output is laid out for: the terminal's, else COLUMNS, else 80."""
    return Console().width


def console() -> Console:
    """stdout, at `width()` (rich reads the terminal's size or COLUMNS itself)."""
    return _Stdout()


def shows_progress() -> bool:
    return sys.stderr.isatty() and not os.environ.get("LAB_NO_PROGRESS")


class _Quiet:
    """The progress display when stderr is not a terminal: nothing at all."""

    def step(self, description: str, completed: float | None = None) -> None:
        pass

    def advance(self, n: float = 1, description: str | None = None) -> None:
        pass


class _Shown:
    def __init__(self, progress, task) -> None:
        self._p, self._task = progress, task

    def step(self, description: str, completed: float | None = None) -> None:
        self._p.update(self._task, description=description, **({} if completed is None else {"completed": completed}))

    def advance(self, n: float = 1, description: str | None = None) -> None:
        self._p.update(self._task, advance=n, **({} if description is None else {"description": description}))


@contextmanager
def progress(description: str, total: float | None = None):
    """A progress bar (`total` steps) or a spinner (no total) on stderr while the block runs,
    removed when it ends; on a pipe, nothing. Yields an object with `step(description,
    completed)` and `advance(n, description)`."""
    if not shows_progress():
        yield _Quiet()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as p:
        yield _Shown(p, p.add_task(description, total=total))
