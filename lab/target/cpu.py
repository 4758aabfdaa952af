"""Raw target state: what the lab reads from a stopped guest, before any decoding.

QEMU's gdbstub exposes no IDTR/GDTR/TR, so those come from the HMP `info registers` text
(through gdb's `monitor`), parsed here; the tables themselves are read from guest memory at the
linear addresses the registers hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lab.errors import GuestError, UserError
from lab.target.memory import phys_reader
from lab.x86.paging import walk
from lab.x86.tss import TSS

_SEGMENT = re.compile(
    r"^(?P<name>ES|CS|SS|DS|FS|GS|LDT|TR) ?=(?P<sel>[0-9a-f]{4}) (?P<base>[0-9a-f]{8,16}) "
    r"(?P<limit>[0-9a-f]{8}) (?P<flags>[0-9a-f]{8})", re.M)
_TABLE = re.compile(r"^(?P<name>GDT|IDT)=\s+(?P<base>[0-9a-f]{8,16}) (?P<limit>[0-9a-f]{8})", re.M)
_VALUE = re.compile(r"\b(?P<name>[A-Z][A-Z0-9]{1,3})=(?P<value>[0-9a-f]{8,16})\b")


@dataclass(frozen=True)
class TableRegister:
    """GDTR or IDTR: linear base and limit (SDM vol. 3A §2.4.1, §2.4.3)."""

    base: int
    limit: int

    @property
    def size(self) -> int:
        return self.limit + 1


@dataclass(frozen=True)
class SegmentRegister:
    """A segment register as QEMU shows it: selector and the hidden (cached) part."""

    selector: int
    base: int
    limit: int
    flags: int


@dataclass(frozen=True)
class CpuInfo:
    """Parsed `info registers`."""

    gdtr: TableRegister
    idtr: TableRegister
    segments: dict[str, SegmentRegister]
    values: dict[str, int] = field(default_factory=dict)  # RAX.., RIP, RFL, CR0-4, EFER, ...

    @property
    def tr(self) -> SegmentRegister:
        return self.segments["TR"]


def parse_info_registers(text: str) -> CpuInfo:
    """Parses QEMU's HMP `info registers` output for one x86-64 CPU."""
    tables = {m["name"]: TableRegister(int(m["base"], 16), int(m["limit"], 16))
              for m in _TABLE.finditer(text)}
    segments = {m["name"]: SegmentRegister(int(m["sel"], 16), int(m["base"], 16),
                                           int(m["limit"], 16), int(m["flags"], 16))
                for m in _SEGMENT.finditer(text)}
    missing = [n for n in ("GDT", "IDT") if n not in tables] + \
              [n for n in ("CS", "TR") if n not in segments]
    if missing:
        raise GuestError(f"`info registers` output lacks {', '.join(missing)}: "
                         f"{text.strip()[:200]!r}")
    values = {}
    for line in text.splitlines():
        if _SEGMENT.match(line) or _TABLE.match(line):
            continue
        for m in _VALUE.finditer(line):
            values[m["name"]] = int(m["value"], 16)
    return CpuInfo(tables["GDT"], tables["IDT"], segments, values)


EFER_LMA = 1 << 10  # IA32_EFER.LMA: IA-32e mode active (SDM vol. 3A §2.2.1, Table 2-1)


def require_long_mode(cpu: CpuInfo, where: str) -> None:
    """The tables the lab decodes are the 64-bit ones: a CPU outside IA-32e mode at the stop
    (a 32-bit kernel, or a stop before the kernel switched) is a clear error, not garbage."""
    efer = cpu.values.get("EFER")
    if efer is None or not efer & EFER_LMA:
        shown = "absent" if efer is None else f"{efer:#x}"
        raise UserError(f"the CPU is not in long mode ({where}; EFER {shown}, LMA clear): the lab "
                        f"checks x86-64 kernels, and this one has not entered IA-32e mode")


@dataclass(frozen=True)
class TargetState:
    """Everything `inspect` needs, as raw bytes and numbers."""

    cpu: CpuInfo
    idt: bytes
    gdt: bytes
    tss: bytes  # TR.limit + 1 bytes at TR.base (empty if TR is null)
    #: {stack pointer: the page walk, from CR3, of the qword just below it (the first slot the
    #: CPU pushes to)} for RSP0 and every non-zero IST slot; None when not read.
    stack_walks: dict | None = None


MAX_TABLE_BYTES = 64 * 1024


def read_state(gdb) -> TargetState:
    """Reads CPU tables from a stopped guest through gdb."""
    cpu = parse_info_registers(gdb.monitor("info registers"))
    for name, reg in (("IDT", cpu.idtr), ("GDT", cpu.gdtr)):
        if reg.size > MAX_TABLE_BYTES:
            raise GuestError(f"{name}R limit {reg.limit:#x} is larger than any valid table")
    idt = gdb.read_memory(cpu.idtr.base, cpu.idtr.size)
    gdt = gdb.read_memory(cpu.gdtr.base, cpu.gdtr.size)
    tr = cpu.tr
    tss = gdb.read_memory(tr.base, min(tr.limit + 1, MAX_TABLE_BYTES)) if tr.selector else b""
    return TargetState(cpu, idt, gdt, tss, walk_stack_tops(cpu, tss, gdb.monitor))


def walk_stack_tops(cpu: CpuInfo, tss: bytes, monitor) -> dict:
    """Walks CR3's page tables (physical reads through QEMU's `xp`) for the qword below RSP0
    and below each non-zero IST slot of `tss`."""
    if len(tss) < TSS.size or "CR3" not in cpu.values:
        return {}
    fields = TSS.decode(tss[:TSS.size])
    pointers = {fields["rsp0"]} | {fields[f"ist{n}"] for n in range(1, 8)}
    read = phys_reader(monitor)
    return {p: walk(cpu.values["CR3"], p - 8, read) for p in sorted(pointers) if p}


def read_tss_rsp0(read_memory, monitor) -> int:
    """TSS.RSP0 of the TSS that TR selects, now: `monitor` runs one HMP command (for TR's base),
    `read_memory(address, length)` reads guest memory."""
    tr = parse_info_registers(monitor("info registers")).tr
    return TSS.read_field(read_memory, tr.base, "rsp0")
