"""Every vCPU's raw state: QEMU's gdbstub shows each vCPU as one gdb thread.

The HMP monitor behind gdb's `monitor` does not follow gdb's selected thread (its own CPU is
CPU#0), so the registers of every CPU come from one `info registers -a`, split per `CPU#n`
block; GS_BASE and KERNEL_GS_BASE (which HMP does not print) and the tables in guest memory
are read through each CPU's own thread (`-thread-select`: memory through that CPU's CR3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from lab.errors import GuestError
from lab.target.cpu import (EFER_LMA, MAX_TABLE_BYTES, CpuInfo, TargetState, cached, parse_info_registers,
                            read_state, read_tables, walk_stack_tops)
from lab.target.memory import phys_reader

_BLOCK = re.compile(r"^CPU#(?P<index>\d+)\s*$", re.M)
_DETAILS = re.compile(r"CPU#(?P<index>\d+)")
_HALTED = re.compile(r"\bHLT=(?P<hlt>[01])\b")


@dataclass(frozen=True)
class CpuState:
    """One vCPU at the stop: its `info registers`, the tables its registers point at (read
    through its own thread), and its GS bases."""

    index: int  # QEMU's CPU index (CPU#n); the BSP is 0
    thread: str  # gdb's thread id for it
    state: TargetState
    gs_base: int
    kernel_gs_base: int
    halted: bool = False
    #: the bytes at the kernel's GS base (its per-CPU area), when asked for and non-zero
    percpu: bytes | None = None

    @property
    def cpu(self) -> CpuInfo:
        return self.state.cpu

    @property
    def long_mode(self) -> bool:
        """EFER.LMA: the CPU runs a 64-bit kernel; one outside IA-32e mode (an AP the kernel
        never started, halted in the firmware or waiting for its SIPI) takes no part in it."""
        return bool(self.cpu.values.get("EFER", 0) & EFER_LMA)

    @property
    def cpl(self) -> int:
        cs = self.cpu.segments.get("CS")
        return cs.selector & 3 if cs is not None else 0

    @property
    def kernel_gs(self) -> int:
        """The kernel's GS base on this CPU: GS_BASE in ring 0, KERNEL_GS_BASE (where swapgs
        parked it) in ring 3."""
        return self.gs_base if self.cpl == 0 else self.kernel_gs_base


def split_all_registers(text: str) -> dict[int, str]:
    """HMP `info registers -a` -> {CPU index: its block}."""
    marks = list(_BLOCK.finditer(text))
    if not marks:
        raise GuestError(f"`info registers -a` names no CPU#n block: {text.strip()[:200]!r}")
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return {int(m["index"]): text[m.end():end] for m, end in zip(marks, ends)}


def thread_cpu(details: str, position: int) -> int:
    """The CPU index a gdb thread's details name ("CPU#2 [running]"), else its position."""
    m = _DETAILS.search(details)
    return int(m["index"]) if m else position


def _tables(gdb, cpu: CpuInfo, unread: dict[str, str]) -> tuple[bytes, bytes, bytes]:
    """IDT, GDT and TSS bytes at this CPU's registers, read through the selected thread
    (lab/target/cpu.py read_tables); a CPU outside long mode gets none (its tables are the
    firmware's, or nothing)."""
    if not cpu.values.get("EFER", 0) & EFER_LMA:
        return b"", b"", b""
    for name, reg in (("IDT", cpu.idtr), ("GDT", cpu.gdtr)):
        if reg.size > MAX_TABLE_BYTES:
            raise GuestError(f"{name}R limit {reg.limit:#x} is larger than any valid table")
    return read_tables(gdb, cpu, unread)


def read_cpus(gdb, threads: list[tuple[str, str]] | None = None, sev: str | None = None,
              percpu_size: int = 0) -> list[CpuState]:
    """Every vCPU's state, in CPU order, with the page walks (from its own CR3) of the first
    qword below its RSP0 and IST pointers; gdb's selected thread is put back afterwards.
    `threads`: gdb's (`Gdb.threads()`), when the caller has them; `sev`: QEMU's `info sev`
    line, the machine's; `percpu_size`: bytes to read at each CPU's kernel GS base (0: none)."""
    threads = threads if threads is not None else gdb.threads()
    if not threads:
        raise GuestError("gdb lists no threads: the target has no vCPU to read")
    current = gdb.current_thread()
    blocks = split_all_registers(gdb.monitor("info registers -a"))
    read = cached(phys_reader(gdb.monitor))  # physical: the same for every CPU
    out = []
    try:
        for position, (thread, details) in enumerate(threads):
            index = thread_cpu(details, position)
            if index not in blocks:
                raise GuestError(f"`info registers -a` has no block for CPU#{index} (gdb thread {thread})")
            cpu = parse_info_registers(blocks[index])
            halted = _HALTED.search(blocks[index])
            gdb.select_thread(thread)
            unread: dict[str, str] = {}
            idt, gdt, tss = _tables(gdb, cpu, unread)
            regs = gdb.registers(("gs_base", "k_gs_base"))
            walks = walk_stack_tops(cpu, tss, gdb.monitor, read=read) if tss else {}
            c = CpuState(index, thread, TargetState(cpu, idt, gdt, tss, walks, sev=sev, unread=unread), regs.get("gs_base", 0),
                         regs.get("k_gs_base", 0), bool(halted and halted["hlt"] == "1"))
            if percpu_size and c.long_mode and c.kernel_gs:
                c = replace(c, percpu=gdb.read_memory(c.kernel_gs, percpu_size))
            out.append(c)
    finally:
        if current is not None:
            gdb.select_thread(current)
    return sorted(out, key=lambda c: c.index)


def read_machine(gdb, percpu_size: int = 0) -> tuple[TargetState, list[CpuState]]:
    """The boot CPU's full state (`read_state`: tables, stack and handler walks), read through
    CPU#0's thread, and, when the machine has more than one vCPU, every CPU's (`read_cpus`);
    with one vCPU the list is empty and nothing but `-thread-info` is added to the read."""
    threads = gdb.threads()
    if len(threads) < 2:
        return read_state(gdb), []
    bsp = min(threads, key=lambda t: thread_cpu(t[1], threads.index(t)))
    current = gdb.current_thread()
    gdb.select_thread(bsp[0])
    try:
        state = read_state(gdb)
    finally:
        if current is not None and current != bsp[0]:
            gdb.select_thread(current)
    return state, read_cpus(gdb, threads, state.sev, percpu_size)
