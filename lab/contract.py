"""The lab kernel's side of the contract (kernel/CONTRACT.md), as data.

Names and layouts the lab relies on; values come from the kernel's ELF wherever they can, so
nothing the kernel decides is retyped here.
"""

from __future__ import annotations

from lab.x86.bits import Struct, StructField

READY_MARKER = "LAB-READY"
READY_SYMBOL = "lab_ready"
PROMPT = "lab> "
TSS_SYMBOL = "TSS"
GDT_SYMBOL = "GDT"
IDT_SYMBOL = "IDT"
IDT_DECL_SYMBOL = "LAB_IDT_DECL"
STACK_SECTION = ".stacks"
HANDLER_PREFIX = "isr_"

# kernel/src/arch/x86_64/idt.rs `GateDecl`: what the kernel intends each gate to be.
GATE_DECL = Struct("GateDecl", 4, "kernel/src/arch/x86_64/idt.rs", (
    StructField("present", 0, 1),
    StructField("gate_type", 1, 1),
    StructField("dpl", 2, 1),
    StructField("ist", 3, 1),
))
assert GATE_DECL.size == 4


def decode_gate_decls(raw: bytes) -> list[dict[str, int]]:
    size = GATE_DECL.size
    return [GATE_DECL.decode(raw[i:i + size]) for i in range(0, len(raw) - len(raw) % size, size)]
