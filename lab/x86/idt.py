"""64-bit IDT gate descriptors.

Intel SDM vol. 3A §6.14.1 "64-Bit Mode IDT", Figure 6-8 "64-Bit IDT Gate
Descriptors" (Dec 2023 numbering); AMD APM vol. 2 §4.8.4 "Gate Descriptors".
Each gate is 16 bytes::

    bits   0..15   offset 15:0
    bits  16..31   segment selector
    bits  32..34   IST
    bits  35..39   0 (reserved)
    bits  40..43   type: 0xE 64-bit interrupt gate, 0xF 64-bit trap gate
                   (every other type is invalid in an IA-32e IDT)
    bit   44       0 (the S bit: a gate is a system descriptor)
    bits  45..46   DPL
    bit   47       P
    bits  48..63   offset 31:16
    bits  64..95   offset 63:32
    bits  96..127  reserved

IST quirk: the gate's IST field is 1-based.  IST = n in 1..7 makes the CPU
switch to the stack in TSS.ISTn; IST = 0 means "no IST switch".  The rust
x86_64 crate's ``set_stack_index(i)`` counts from 0 and stores ``i + 1``, so
its index 0 is hardware IST1.  ``Gate.ist`` is always the hardware value.

``Gate.reserved_bits_zero`` covers bits 35-39, bit 44 and bits 96-127.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bits import BitField, Composite, Layout
from .vectors import mnemonic as _vector_mnemonic

GATE = Layout(
    "64-bit IDT gate descriptor",
    16,
    "Intel SDM vol. 3A §6.14.1 Figure 6-8; AMD APM vol. 2 §4.8.4",
    (
        BitField("offset_15_0", 0, 16),
        BitField("selector", 16, 16),
        BitField("ist", 32, 3),
        BitField("reserved_35_39", 35, 5, reserved=True),
        BitField("type", 40, 4),
        BitField("s", 44, 1, reserved=True),  # must be 0 for a gate
        BitField("dpl", 45, 2),
        BitField("p", 47, 1),
        BitField("offset_31_16", 48, 16),
        BitField("offset_63_32", 64, 32),
        BitField("reserved_96_127", 96, 32, reserved=True),
    ),
    (Composite("offset", ("offset_15_0", "offset_31_16", "offset_63_32")),),
)
assert GATE.size == 16

GATE_TYPE_INTERRUPT = 0xE  # SDM §3.5 Table 3-2, IA-32e mode column
GATE_TYPE_TRAP = 0xF
GATE_TYPE_NAMES: dict[int, str] = {GATE_TYPE_INTERRUPT: "interrupt", GATE_TYPE_TRAP: "trap"}
IST_NONE = 0  # gate IST field value meaning "no stack switch via the IST"


@dataclass(frozen=True)
class Gate:
    vector: int
    raw: bytes
    offset: int
    selector: int
    ist: int          # hardware numbering: 0 = none, 1..7 = TSS.IST1..IST7
    type: int
    dpl: int
    present: bool
    reserved_bits_zero: bool

    @property
    def type_name(self) -> str:
        return GATE_TYPE_NAMES.get(self.type, f"invalid(0x{self.type:x})")

    @property
    def mnemonic(self) -> str:
        return _vector_mnemonic(self.vector)


def decode_gate(raw: bytes, vector: int) -> Gate:
    f = GATE.decode(bytes(raw))
    return Gate(
        vector=vector,
        raw=bytes(raw),
        offset=f["offset"],
        selector=f["selector"],
        ist=f["ist"],
        type=f["type"],
        dpl=f["dpl"],
        present=bool(f["p"]),
        reserved_bits_zero=GATE.reserved_zero(f),
    )


def read_gate(read_memory, idt_base: int, vector: int) -> Gate:
    """The gate for ``vector`` of the IDT at linear address ``idt_base``, read through
    ``read_memory(address, size)`` (e.g. ``Gdb.read_memory``)."""
    return decode_gate(read_memory(idt_base + vector * GATE.size, GATE.size), vector)


def decode_idt(table: bytes) -> list[Gate]:
    """Split a raw IDT into gates; vector i is at byte i * 16."""
    if len(table) % GATE.size:
        raise ValueError(
            f"IDT length {len(table)} is not a multiple of the {GATE.size}-byte gate size"
        )
    return [
        decode_gate(table[i : i + GATE.size], i // GATE.size)
        for i in range(0, len(table), GATE.size)
    ]


def encode_gate(
    offset: int,
    selector: int,
    ist: int = IST_NONE,
    type: int = GATE_TYPE_INTERRUPT,
    dpl: int = 0,
    present: bool = True,
) -> bytes:
    """Build a 16-byte gate (reserved bits zero); ``ValueError`` if a value is too wide."""
    return GATE.encode(
        offset=offset, selector=selector, ist=ist, type=type, dpl=dpl, p=int(present)
    )

#: The IDTR after reset and in real mode: the interrupt vector table, 256 4-byte entries at 0
#: (SDM vol. 3A §20.1.4, Table 10-1 "IDTR: base 0, limit FFFFH" after reset; firmware and
#: loaders running in real mode leave limit 0x3FF). In IA-32e mode it is no IDT the kernel made.
REAL_MODE_IVT = (0x0, 0x3FF)
