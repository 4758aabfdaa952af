"""The lab's gdb commands, loaded into gdb's own Python (`lab debug`, `lab attach`).

Each command is a `gdb.Command` whose docstring is its help (`help lab-idt`). They call the
same readers, decoders, checks and table renderers as the CLI, through `LiveTarget`, which
gives them the interface the lab's MI client has (read_memory, registers, monitor), so the
CLI and gdb print the same tables.
"""

from __future__ import annotations

import os
import socket

import gdb  # provided by gdb itself

from lab.errors import LabError

GPR_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
             "r12", "r13", "r14", "r15", "rip", "eflags", "cs", "ss", "fs_base", "gs_base",
             "k_gs_base", "cr0", "cr2", "cr3", "cr4", "efer")


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


def console():
    from rich.console import Console

    return Console(width=int(os.environ.get("LAB_GDB_WIDTH", "150")), force_terminal=False,
                   color_system=None, highlight=False)


def _view():
    from lab.checks.view import decode
    from lab.target.cpu import read_state

    return decode(read_state(LiveTarget()), symbols())


class LabCommand(gdb.Command):
    """Base: lab errors are printed as one line instead of a Python traceback."""

    def __init__(self, name: str) -> None:
        super().__init__(name, gdb.COMMAND_DATA)

    def invoke(self, arg: str, from_tty: bool) -> None:
        try:
            self.run(arg.strip())
        except LabError as exc:
            print(f"{self.__class__.cmd}: {exc}")
        except gdb.error as exc:
            print(f"{self.__class__.cmd}: {exc} (is the guest stopped?)")

    def run(self, arg: str) -> None:
        raise NotImplementedError


def _range(arg: str) -> tuple[int, int]:
    if not arg:
        return 0, 255
    lo, _, hi = arg.partition("-")
    lo_v = int(lo, 0)
    return lo_v, int(hi, 0) if hi else lo_v


class LabIdt(LabCommand):
    """lab-idt [VECTOR|LO-HI]: the live IDT, decoded and resolved to symbols (as `lab inspect`)."""
    cmd = "lab-idt"

    def run(self, arg):
        from lab.present.render import idt_table
        from lab.present.rows import idt_rows

        lo, hi = _range(arg)
        rows = [r for r in idt_rows(_view(), all_gates=True) if lo <= r["vector"] <= hi]
        console().print(idt_table(rows, title=f"IDT vectors {lo}-{hi}"))


class LabGdt(LabCommand):
    """lab-gdt: the live GDT, decoded (as `lab inspect`)."""
    cmd = "lab-gdt"

    def run(self, arg):
        from lab.present.render import gdt_table
        from lab.present.rows import gdt_rows

        console().print(gdt_table(gdt_rows(_view())))


class LabTss(LabCommand):
    """lab-tss: the TSS that TR selects: RSP0-2, IST1-7 with the stacks they point into."""
    cmd = "lab-tss"

    def run(self, arg):
        from lab.present.render import tss_table
        from lab.present.rows import tss_rows

        console().print(tss_table(tss_rows(_view())))


class LabCheck(LabCommand):
    """lab-check: run every check `lab inspect` runs, now, on the live state."""
    cmd = "lab-check"

    def run(self, arg):
        from lab.checks.inspect import run_all
        from lab.present.render import checks_table

        console().print(checks_table(run_all(_view())))


class LabFrame(LabCommand):
    """lab-frame: decode the interrupt or exception frame at the current stop (the stop must
    be the first instruction of a handler the IDT names)."""
    cmd = "lab-frame"

    def run(self, arg):
        from lab.experiments.frame import decode_at_stop
        from lab.present.render import frame_table

        t = LiveTarget()
        console().print(frame_table(decode_at_stop(t, t.monitor, symbols())))


class LabStack(LabCommand):
    """lab-stack [N]: walk the RBP chain (frame pointers), N frames (default 8), each slot
    labelled and every return address resolved to a symbol."""
    cmd = "lab-stack"

    def run(self, arg):
        from rich.table import Table

        from lab.x86.frames import QWORD, qwords

        t, sym = LiveTarget(), symbols()
        regs = t.registers()
        n = int(arg, 0) if arg else 8
        table = Table(title=f"RBP chain from RIP {regs['rip']:#x} ({sym.describe(regs['rip'])})", title_justify="left")
        for col in ("frame", "address", "slot", "value", "symbol"):
            table.add_column(col)
        rbp = regs["rbp"]
        for i in range(n):
            if rbp == 0:
                break
            try:
                raw = t.read_memory(rbp, 2 * QWORD)  # saved RBP, return address
            except gdb.MemoryError:
                table.add_row(str(i), f"{rbp:#x}", "(unreadable)", "", "")
                break
            saved, ret = qwords(raw)
            table.add_row(str(i), f"{rbp:#x}", "saved rbp", f"{saved:#x}", "")
            # A call may be a function's last instruction (a call to a noreturn function):
            # name the return address by the byte before it, as debuggers do.
            caller = sym.resolve(ret - 1)
            where = f"{caller.symbol.display}+{caller.offset + 1:#x}" if caller else ""
            table.add_row("", f"{rbp + QWORD:#x}", "return address", f"{ret:#x}", where)
            if saved <= rbp:
                break  # the chain must grow toward older (higher) frames
            rbp = saved
        console().print(table)


class LabPcpu(LabCommand):
    """lab-pcpu: the per-CPU area (PERCPU), field by field."""
    cmd = "lab-pcpu"

    def run(self, arg):
        from lab.labkernel.layouts import PERCPU
        from lab.present.render import pcpu_table

        addr = symbols().lookup("PERCPU").address
        fields = PERCPU.decode(LiveTarget().read_memory(addr, PERCPU.size))
        console().print(pcpu_table(addr, fields, LiveTarget().registers().get("gs_base", 0)))


class LabTasks(LabCommand):
    """lab-tasks: the kernel's tasks and each sleeping task's saved switch frame (as `lab tasks`)."""
    cmd = "lab-tasks"

    def run(self, arg):
        from lab.present.render import print_tasks
        from lab.experiments.tasks import TasksObservation, read_tasks

        obs = TasksObservation(profile="live")
        obs.tasks, obs.current = read_tasks(LiveTarget(), symbols())
        print_tasks(obs, console())


class LabTranslate(LabCommand):
    """lab-translate ADDRESS|SYMBOL: walk the 4-level page tables from CR3 (as `lab translate`)."""
    cmd = "lab-translate"

    def run(self, arg):
        from lab.present.render import print_translation
        from lab.target.memory import phys_reader
        from lab.x86.paging import walk

        if not arg:
            raise LabError("usage: lab-translate ADDRESS|SYMBOL")
        va = symbols().require_address(arg)
        t = LiveTarget()
        print_translation(walk(t.registers()["cr3"], va, phys_reader(t.monitor)), console())


class LabFire(LabCommand):
    """lab-fire SCENARIO [STYLE]: fire a catalogued exception and stop at its handler's first
    instruction (then: lab-frame, lab-stack, continue). Needs `lab debug`, which relays the
    kernel's shell."""
    cmd = "lab-fire"

    def run(self, arg):
        from lab.scenarios.exceptions import check_style, get

        words = arg.split()
        if not words:
            raise LabError("usage: lab-fire SCENARIO [x86-interrupt|stub]")
        scenario = get(words[0])
        style = check_style(words[1]) if len(words) > 1 else "x86-interrupt"
        ctl = os.environ.get("LAB_SHELL_SOCKET")
        if not ctl:
            raise LabError("no shell relay: lab-fire works in `lab debug` sessions")
        handler = handler_for(scenario.vector, style)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(ctl)
            s.sendall(f"fire {scenario.name} {style}\n".encode())
        gdb.Breakpoint(f"*{handler:#x}", type=gdb.BP_HARDWARE_BREAKPOINT, internal=True, temporary=True)
        gdb.execute("continue")
        print(f"lab-fire: stopped at the {scenario.name} handler ({symbols().describe(handler)}); "
              f"try lab-frame, lab-stack, continue")


def handler_for(vector: int, style: str) -> int:
    """The handler a fire of `style` will enter for `vector`: the kernel sets the gate's style
    as part of `fire`, so the IDT read beforehand may still name the other one."""
    from lab.scenarios.exceptions import SOFT_INT_VECTOR
    from lab.x86.vectors import mnemonic

    name = f"isr_stub_{vector}" if style == "stub" else (
        "isr_soft_int" if vector == SOFT_INT_VECTOR else f"isr_{mnemonic(vector).lstrip('#').lower()}")
    s = symbols().lookup(name)
    if s is None:
        raise LabError(f"the kernel has no {name} handler")
    return s.address


for _cls in (LabIdt, LabGdt, LabTss, LabCheck, LabFrame, LabStack, LabPcpu, LabTasks, LabTranslate, LabFire):
    _cls(_cls.cmd)
