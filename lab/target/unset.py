"""States the kernel has not set yet, read without an error: an IDTR that names no IDT (limit
0, or the real-mode IVT a loader left), a null TR, and tables gdb cannot read (their address is
not mapped in the CPU's page tables). Each is recorded, with its address and what it means, for
the checks (lab/checks/unset.py) to judge; nothing here raises for them."""

from __future__ import annotations

from lab.errors import LabError
from lab.x86.idt import GATE, REAL_MODE_IVT

RFLAGS_IF = 1 << 9  # RFLAGS.IF: maskable interrupts enabled (SDM vol. 1 §3.4.3.3)


def idt_unloaded(base: int, limit: int) -> str | None:
    """Why an IDTR names no IDT the kernel loaded, or None when it names one."""
    if limit + 1 < GATE.size:
        return (f"IDTR base {base:#x} limit {limit:#x}: no IDT loaded yet (the limit holds no 16-byte "
                f"gate; the kernel has not run lidt, or loaded an empty IDTR on purpose)")
    if (base, limit) == REAL_MODE_IVT:
        return (f"IDTR base {base:#x} limit {limit:#x}: no IDT loaded yet (the real-mode interrupt "
                f"vector table the firmware or loader left; the kernel has not run lidt)")
    return None


def interrupts_enabled(values: dict) -> bool:
    return bool(values.get("RFL", 0) & RFLAGS_IF)


def read_table(gdb, name: str, base: int, length: int, unread: dict[str, str], what: str = "") -> bytes:
    """`length` bytes at `base`, or b"" with `unread[name]` saying why gdb could not read them
    (an address the page tables do not map, usually)."""
    try:
        return gdb.read_memory(base, length)
    except LabError as exc:
        why = exc.message.removeprefix("gdb: ")
        unread[name] = (f"{name} at {base:#x} ({length} bytes{', ' + what if what else ''}) cannot be read: "
                        f"{why} (not mapped in the CPU's page tables at the stop?)")
        return b""
