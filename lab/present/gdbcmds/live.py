"""What every lab gdb command shares: the stopped guest seen through gdb's Python API
(LiveTarget, the interface the lab's MI client has: read_memory, registers, monitor), the
kernel's symbols, a console as wide as gdb's `width`, and the base class that turns every
failure into one gdb error line."""

from __future__ import annotations

import os
import shutil
import sys

import gdb  # provided by gdb itself

from lab.errors import LabError, UserError
from lab.present.gdbargs import parse_int, parse_range, parse_vector  # noqa: F401  (the commands' parsers)
from lab.machine.relay import SHELL_SOCKET_ENV
from lab.machine.replay import REPLAY_ENV

GPR_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
             "r12", "r13", "r14", "r15", "rip", "eflags", "cs", "ss", "fs_base", "gs_base",
             "k_gs_base", "cr0", "cr2", "cr3", "cr4", "efer")
#: Output that is not a terminal and gdb's `width` unlimited (batch mode): the CLI's piped width.
PIPED_WIDTH = 160


class LiveTarget:
    """The stopped guest, seen through gdb's Python API."""

    def read_memory(self, address: int, length: int) -> bytes:
        return bytes(gdb.selected_inferior().read_memory(address, length))

    def registers(self) -> dict[str, int]:
        frame = gdb.selected_frame()
        out = {}
        for name in GPR_NAMES:
            try:
                out[name] = int(frame.read_register(name)) & (2**64 - 1)
            except (gdb.error, ValueError):
                continue
        return out

    def monitor(self, command: str) -> str:
        return gdb.execute(f"monitor {command}", to_string=True)


_symbols = None


def symbols():
    global _symbols
    if _symbols is None:
        from pathlib import Path

        from lab.target.symbols import Symbols

        # `lab debug --symbols` names its file (an ELF or a System.map) in LAB_SYMBOLS.
        named = os.environ.get("LAB_SYMBOLS")
        path = gdb.current_progspace().filename
        _symbols = (Symbols.load(Path(named)) if named else
                    Symbols.from_elf(Path(path)) if path else Symbols.empty())
    return _symbols


def width() -> int:
    """gdb's `width` when set; else the terminal's columns; else (piped) PIPED_WIDTH."""
    try:
        w = gdb.parameter("width")
    except (gdb.error, RuntimeError):
        w = None
    if w:  # None or 0: unlimited
        return int(w)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((80, 24)).columns
    return PIPED_WIDTH


def console():
    from rich.console import Console

    return Console(width=width(), force_terminal=False, color_system=None, highlight=False)


def view():
    from lab.checks.view import decode
    from lab.target.cpu import read_state

    return decode(read_state(LiveTarget()), symbols())


#: Every lab command class, in the order `help lab` lists them (filled by @command).
REGISTRY: list[type] = []


def command(cls):
    """Registers a LabCommand subclass (its `cmd` is the gdb name, its docstring the help)."""
    REGISTRY.append(cls)
    return cls


def one_line(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, LabError) else str(exc)
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


class LabCommand(gdb.Command):
    """Base: every failure is one gdb error line (gdb.GdbError), never a Python traceback."""

    cmd = ""

    def __init__(self) -> None:
        super().__init__(self.cmd, gdb.COMMAND_USER)

    def invoke(self, arg: str, from_tty: bool) -> None:
        try:
            self.run(arg.strip())
        except gdb.GdbError:
            raise
        except LabError as exc:
            raise gdb.GdbError(f"{self.cmd}: {one_line(exc)}") from None
        except gdb.MemoryError as exc:
            raise gdb.GdbError(f"{self.cmd}: {exc}") from None
        except gdb.error as exc:
            raise gdb.GdbError(f"{self.cmd}: {exc} (is the guest stopped?)") from None
        except KeyboardInterrupt:
            raise gdb.GdbError(f"{self.cmd}: interrupted") from None
        except Exception as exc:  # a bug in the lab: still one line, with its kind
            raise gdb.GdbError(f"{self.cmd}: internal error: {type(exc).__name__}: {exc}") from None

    def run(self, arg: str) -> None:
        raise NotImplementedError


def shell_socket() -> str:
    ctl = os.environ.get(SHELL_SOCKET_ENV)
    if not ctl:
        raise UserError("no shell relay: this works in `lab debug` sessions, which relay the kernel's shell")
    return ctl


def replaying() -> bool:
    return bool(os.environ.get(REPLAY_ENV))
