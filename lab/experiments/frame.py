"""`lab frame`: decode the interrupt or exception frame at a stop.

The stop must be the first instruction of a handler the live IDT names: only there does RSP
point at the frame the CPU pushed. The vector (from the IDT) says whether an error code sits
below RIP (SDM vol. 3A Table 6-1)."""

from __future__ import annotations

from lab.errors import UserError
from lab.target.cpu import parse_info_registers
from lab.x86.frames import INTERRUPT_FRAME, QWORD, explain_error_code, qwords
from lab.x86.idt import decode_idt
from lab.x86.tss import TSS
from lab.x86.vectors import mnemonic, pushes_error_code


def decode_at_stop(gdb, hmp, symbols) -> dict:
    cpu = parse_info_registers(hmp("info registers"))
    regs = gdb.registers()
    pc, rsp = regs["rip"], regs["rsp"]
    gates = decode_idt(gdb.read_memory(cpu.idtr.base, cpu.idtr.size))
    vectors = [g.vector for g in gates if g.present and g.offset == pc]
    if not vectors:
        inside = handler_containing(gates, pc, symbols)
        if inside is not None:
            vector, entry = inside
            raise UserError(
                f"the CPU is at {symbols.describe(pc)} ({pc:#x}), past the entry of the {mnemonic(vector)} "
                f"handler (vector {vector}) at {entry:#x}: its prologue has moved RSP off the frame the CPU "
                f"pushed. Stop at the entry instead: `lab-break {vector}` (gdb's `hbreak *{entry:#x}`; "
                f"`hbreak {symbols.describe(entry) or 'NAME'}` skips the prologue), then `continue`.")
        raise UserError(f"the CPU is stopped at {pc:#x} ({symbols.describe(pc) or 'no symbol'}), which no "
                        f"present IDT gate names: RSP does not point at an interrupt frame here. Stop at a "
                        f"handler's first instruction (e.g. --at isr_gp).")
    vector = vectors[0]
    ec = pushes_error_code(vector)
    raw = gdb.read_memory(rsp, INTERRUPT_FRAME.size + (QWORD if ec else 0))
    slots = qwords(raw)
    names = (["error code"] if ec else []) + [f.name.upper() for f in INTERRUPT_FRAME.fields]
    rows = [{"address": rsp + 8 * i, "slot": n, "value": v,
             "note": symbols.describe(v) if n == "RIP" else
                     ("ring 3" if n == "CS" and v & 3 == 3 else "")}
            for i, (n, v) in enumerate(zip(names, slots))]
    if ec:
        rows[0]["note"] = explain_error_code(vector, slots[0])
    return {"pc": pc, "symbol": symbols.describe(pc), "vectors": vectors, "mnemonic": mnemonic(vector),
            "error_code": slots[0] if ec else None, "rsp": rsp, "cr2": regs.get("cr2"), "slots": rows,
            "stack_switch": stack_switch(gdb.read_memory, cpu.tr.base, next(g for g in gates if g.vector == vector),
                                         slots[-4]),
            "note": "a software `int n` to this vector would push no error code" if ec else ""}


def handler_containing(gates, pc: int, symbols) -> tuple[int, int] | None:
    """(vector, entry) of a present gate whose handler (the sized symbol at its offset) holds
    `pc` past its first instruction, or None."""
    for g in gates:
        if not g.present or g.offset >= pc:
            continue
        loc = symbols.resolve(g.offset)
        if loc is not None and loc.offset == 0 and loc.symbol.address < pc < loc.symbol.end:
            return g.vector, g.offset
    return None


def stack_switch(read_memory, tss_base: int, gate, saved_cs: int) -> dict | None:
    """Where the CPU took its new RSP from, read from the TSS now: the gate's IST slot, else
    RSP0 when the interrupted code ran in ring 3 (a privilege change, SDM vol. 3A §6.14.4);
    None when the frame was pushed on the interrupted stack."""
    if gate.ist:
        field = f"ist{gate.ist}"
    elif saved_cs & 3:
        field = "rsp0"
    else:
        return None
    return {"field": field, "rsp": TSS.read_field(read_memory, tss_base, field)}


def stop_at_handler(session, at: int, shell_line: str, timeout: float, what: str) -> dict:
    """Puts a hardware breakpoint at `at`, types `shell_line` into the kernel's shell, runs
    to the breakpoint and decodes the frame there."""
    session.gdb.hbreak(f"*{at:#x}")
    session.serial.send_line(shell_line)
    session.gdb.cont()
    session.gdb.wait_stopped(timeout, f"the CPU to reach {what}")
    return decode_at_stop(session.gdb, session.qemu.hmp, session.symbols)
