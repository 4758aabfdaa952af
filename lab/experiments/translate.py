"""`lab translate`: walk the live page tables for a virtual address."""

from __future__ import annotations

from lab.target.cpu import parse_info_registers
from lab.target.memory import phys_reader
from lab.x86.paging import Translation, walk


def translate(session, va: int) -> Translation:
    cpu = parse_info_registers(session.qemu.hmp("info registers"))
    return walk(cpu.values["CR3"], va, phys_reader(session.qemu.hmp))
