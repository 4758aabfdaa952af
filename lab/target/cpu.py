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
from lab.x86.addr import is_canonical
from lab.x86.idt import GATE, decode_idt
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
    #: {stack pointer: the page walk, from CR3, of the first qword the CPU pushes to (the
    #: pointer aligned down to 16, minus 8)} for RSP0 and every non-zero IST slot; None when
    #: not read.
    stack_walks: dict | None = None
    #: {handler address: its page walk from CR3} for every present gate's canonical handler
    #: offset; None when not read.
    handler_walks: dict | None = None
    #: QEMU's own word on SEV for this VM: the first line of HMP `info sev` ("SEV is not
    #: enabled" on TCG and on KVM without SEV); None when not read.
    sev: str | None = None
    #: {structure: why it could not be read, with its address} (lab/target/unset.py read_table)
    unread: dict = field(default_factory=dict)


MAX_TABLE_BYTES = 64 * 1024
#: SDM §6.14.2: in 64-bit mode the CPU aligns the new RSP down to 16 bytes before it pushes.
STACK_ALIGN = 16
U64 = (1 << 64) - 1


def read_state(gdb) -> TargetState:
    """Reads CPU tables from a stopped guest through gdb."""
    cpu = parse_info_registers(gdb.monitor("info registers"))
    for name, reg in (("IDT", cpu.idtr), ("GDT", cpu.gdtr)):
        if reg.size > MAX_TABLE_BYTES:
            raise GuestError(f"{name}R limit {reg.limit:#x} is larger than any valid table")
    unread: dict[str, str] = {}
    idt, gdt, tss = read_tables(gdb, cpu, unread)
    read = cached(phys_reader(gdb.monitor))  # the stacks and handlers share the upper levels
    return TargetState(cpu, idt, gdt, tss, walk_stack_tops(cpu, tss, gdb.monitor, read=read),
                       walk_handlers(cpu, idt, read), info_sev(gdb.monitor), unread)


def read_tables(gdb, cpu: CpuInfo, unread: dict[str, str]) -> tuple[bytes, bytes, bytes]:
    """The IDT, GDT and TSS bytes the registers name: none for an IDTR that names no IDT
    (lab/target/unset.py) or a null TR; a table gdb cannot read is empty, and `unread` says why."""
    from lab.target.unset import idt_unloaded, read_table

    idt = b""
    if idt_unloaded(cpu.idtr.base, cpu.idtr.limit) is None:
        idt = read_table(gdb, "IDT", cpu.idtr.base, cpu.idtr.size, unread, f"IDTR limit {cpu.idtr.limit:#x}")
    gdt = read_table(gdb, "GDT", cpu.gdtr.base, cpu.gdtr.size, unread, f"GDTR limit {cpu.gdtr.limit:#x}")
    tr = cpu.tr
    tss = (read_table(gdb, "TSS", tr.base, min(tr.limit + 1, MAX_TABLE_BYTES), unread, f"TR {tr.selector:#06x}")
           if tr.selector else b"")
    return idt, gdt, tss


def cached(read_phys):
    """`read_phys` remembering what it read: one stopped CPU's page tables do not change."""
    seen: dict[tuple[int, int], bytes] = {}

    def read(address: int, length: int) -> bytes:
        key = (address, length)
        if key not in seen:
            seen[key] = read_phys(address, length)
        return seen[key]
    return read


def first_push(pointer: int) -> int:
    """The address of the first qword the CPU writes when it switches to the stack whose
    top is `pointer`: the pointer aligned down to 16, minus 8 (SDM §6.14.2)."""
    return ((pointer & ~(STACK_ALIGN - 1)) - 8) & U64


def walk_stack_tops(cpu: CpuInfo, tss: bytes, monitor, read=None) -> dict:
    """Walks CR3's page tables (physical reads through QEMU's `xp`, or `read`) for the first
    qword the CPU pushes below RSP0 and below each non-zero IST slot of `tss`."""
    if len(tss) < TSS.size or "CR3" not in cpu.values:
        return {}
    fields = TSS.decode(tss[:TSS.size])
    pointers = {fields["rsp0"]} | {fields[f"ist{n}"] for n in range(1, 8)}
    read = read or phys_reader(monitor)
    return {p: walk(cpu.values["CR3"], first_push(p), read) for p in sorted(pointers) if p}


def walk_handlers(cpu: CpuInfo, idt: bytes, read) -> dict:
    """Walks CR3's page tables for the first byte of every present gate's handler (canonical
    offsets only: the others cannot be walked)."""
    if "CR3" not in cpu.values:
        return {}
    gates = decode_idt(idt[: len(idt) // GATE.size * GATE.size])
    offsets = sorted({g.offset for g in gates if g.present and is_canonical(g.offset)})
    return {o: walk(cpu.values["CR3"], o, read) for o in offsets}


def info_sev(monitor) -> str:
    """The first line of QEMU's HMP `info sev`."""
    lines = monitor("info sev").strip().splitlines()
    return lines[0].strip() if lines else ""


def read_tss_rsp0(read_memory, monitor) -> int:
    """TSS.RSP0 of the TSS that TR selects, now: `monitor` runs one HMP command (for TR's base),
    `read_memory(address, length)` reads guest memory."""
    tr = parse_info_registers(monitor("info registers")).tr
    return TSS.read_field(read_memory, tr.base, "rsp0")
