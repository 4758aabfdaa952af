"""`lab pcpu`: the per-CPU area read through GS_BASE at the stop (kernel mode: GS_BASE is the
kernel's), and the layout the compiler gave `PerCpu`."""

from __future__ import annotations

from dataclasses import dataclass

from lab.labkernel.layouts import PERCPU
from lab.target.dwarf import dwarf_layout

PERCPU_SYMBOL = "PERCPU"


@dataclass
class PcpuObservation:
    gs_base: int
    fields: dict  # PERCPU decoded at GS_BASE
    percpu_symbol: int | None  # the PERCPU symbol's address
    dwarf: tuple | None  # (size, {member: offset}) from the kernel's DWARF


def observe(session) -> PcpuObservation:
    gs = session.gdb.registers()["gs_base"]
    fields = PERCPU.decode(session.gdb.read_memory(gs, PERCPU.size))
    sym = session.symbols.lookup(PERCPU_SYMBOL)
    return PcpuObservation(gs, fields, sym.address if sym else None, dwarf_layout(session.kernel, "PerCpu"))
