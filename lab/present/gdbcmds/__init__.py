"""The lab's gdb commands, loaded into gdb's own Python (`lab debug`, `lab attach`):
`python import lab.present.gdbcmds`.

Each command is a `gdb.Command` whose docstring is its help (`help lab-idt`); `help lab` (or
`lab`) lists them all. Failures are one gdb error line, never a Python traceback.
"""

from __future__ import annotations

import gdb  # provided by gdb itself

# Each module registers its commands on import; `help lab` lists them in this order.
from lab.present.gdbcmds import state  # noqa: F401  isort: skip
from lab.present.gdbcmds import frames  # noqa: F401  isort: skip
from lab.present.gdbcmds import replay  # noqa: F401  isort: skip
from lab.present.gdbcmds.live import REGISTRY


def _summary(cls) -> str:
    """A command's help, first sentence, on one line."""
    text = " ".join((cls.__doc__ or "").split())
    usage, _, rest = text.partition(": ")
    return f"  {cls.cmd:<14} {rest}" if rest else f"  {text}"


class LabHelp(gdb.Command):
    """The lab's gdb commands (`help lab-NAME` for one):"""

    def __init__(self) -> None:
        super().__init__("lab", gdb.COMMAND_USER)

    def invoke(self, arg: str, from_tty: bool) -> None:
        print(LabHelp.__doc__)


LabHelp.__doc__ = "\n".join([LabHelp.__doc__, *(_summary(c) for c in REGISTRY)])
for _cls in REGISTRY:
    _cls()
LabHelp()
