"""The lab kernel's side of the contract (kernel/CONTRACT.md), as data.

Names and layouts the lab relies on; values come from the kernel's ELF wherever they can, so
nothing the kernel decides is retyped here.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import UserError
from lab.host.kernelfile import BZIMAGE, ELF32, ELF64, require_kernel
from lab.target.symbols import Symbols
from lab.x86.bits import Struct, StructField
from lab.x86.gdt import encode_selector
from lab.x86.vectors import FIRST_USER_VECTOR

READY_MARKER = "LAB-READY"
READY_SYMBOL = "lab_ready"
PROMPT = "lab> "
TSS_SYMBOL = "TSS"
GDT_SYMBOL = "GDT"
IDT_SYMBOL = "IDT"
IDT_DECL_SYMBOL = "LAB_IDT_DECL"
STACK_SECTION = ".stacks"
HANDLER_PREFIX = "isr_"
# kernel/src/smp: the application processors' TSSs, per-CPU areas and stacks (AP k: slot k - 1).
PERCPU_SYMBOL = "PERCPU"
TASKS_SYMBOL = "TASKS"
AP_TSS_SYMBOL = "AP_TSS"
AP_PERCPU_SYMBOL = "AP_PERCPU"
AP_TASKS_SYMBOL = "AP_TASKS"  # AP k's own task table: AP_TASKS[k - 1] (layouts.AP_TASK_SLOTS tasks)
AP_STACKS_SYMBOL = "LAB_AP_STACKS"  # an ApStacksDecl (lab/labkernel/layouts.py)

# kernel/src/arch/x86_64/idt.rs `vector`: the lab kernel's own vectors (0-31 are the CPU's,
# lab/x86/vectors.py).
PIC1_OFFSET = FIRST_USER_VECTOR  # the 8259's IRQ0-7 are remapped to 32-39
TIMER_VECTOR = PIC1_OFFSET  # IRQ0: the PIT
APIC_TIMER_VECTOR = 0x30  # the local APIC timer
IPI_VECTOR = 0x31  # fixed IPIs between CPUs (kernel/src/smp)
SOFT_INT_VECTOR = 0x80  # the `int` scenario's ring-3-callable trap gate
NOT_PRESENT_GATE = 0x41  # a valid interrupt gate with P=0: `int` to it gives #NP
ZERO_GATE = 0x42  # an all-zero IDT entry (type 0): `int` to it gives #GP

# kernel/src/arch/x86_64/gdt.rs `sel`: the lab kernel's GDT, slot by slot (index, RPL).
KERNEL_CS = encode_selector(1)
KERNEL_DS = encode_selector(2)
USER_SS = encode_selector(3, rpl=3)  # user data; SYSRET loads SS from STAR[63:48] + 8
USER_CS = encode_selector(4, rpl=3)  # 64-bit user code; SYSRET loads CS from STAR[63:48] + 16
TSS_SELECTOR = encode_selector(5)  # a 16-byte system descriptor: slots 5 and 6
NOT_PRESENT_DS = encode_selector(7)  # a data descriptor with P=0, for #NP
assert (KERNEL_CS, KERNEL_DS, USER_SS, USER_CS, TSS_SELECTOR) == (0x08, 0x10, 0x1B, 0x23, 0x28)

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


#: Symbols every lab-kernel command relies on (kernel/CONTRACT.md).
LAB_KERNEL_SYMBOLS = (READY_SYMBOL, IDT_DECL_SYMBOL)

# The kernel's own limits, declared once in limits.py (importable alone, for the CLI's options).
from lab.labkernel.limits import APIC_HZ, MAX_CPUS, PIT_HZ, WINDOW_MS  # noqa: E402,F401


def is_lab_kernel(path: Path) -> bool:
    """Whether `path` is a 64-bit ELF with the lab kernel's symbols (False for anything else,
    a file that cannot be read included: the caller's own checks say why)."""
    try:
        if require_kernel(path) != ELF64:
            return False
        symbols = Symbols.from_elf(path)
        return all(symbols.lookup(n) is not None for n in LAB_KERNEL_SYMBOLS)
    except (OSError, ValueError, UserError):
        return False


def require_lab_kernel(path: Path, command: str) -> None:
    """One clear line, before anything boots, when `path` cannot be the lab kernel: the
    commands that drive the lab kernel's shell need its 64-bit ELF with symbols."""
    kind = require_kernel(path)
    hint = "; `lab fire --agnostic` fires in any kernel" if command == "fire" else ""
    if kind != ELF64:
        what = {ELF32: "a 32-bit ELF", BZIMAGE: "a Linux bzImage"}.get(kind, kind)
        raise UserError(f"{path}: {what}; `lab {command}` needs the 64-bit x86-64 lab kernel{hint}")
    symbols = Symbols.from_elf(path)
    if not len(symbols):
        raise UserError(f"{path}: no symbol table (stripped?); `lab {command}` needs the lab kernel's symbols{hint}")
    missing = [n for n in LAB_KERNEL_SYMBOLS if symbols.lookup(n) is None]
    if missing:
        raise UserError(f"{path}: no {', '.join(missing)} symbol; `lab {command}` needs the lab kernel{hint}")
