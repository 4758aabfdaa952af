"""The handler's view of its frame, at a fired exception: which DWARF frame reader
(lab/target/frametypes.py) the handler reaches, and what each of its frame members reads.

At the handler's first instruction (the fire's `entry` stop) the CPU's frame lies at RSP, or
RSP+8 above the error code. A reader at the gate's own address is an interrupt-ABI handler
(Rust `extern "x86-interrupt"`, gcc's `interrupt` attribute): its frame argument is the CPU's
frame. Otherwise the lab steps the stub one instruction at a time, at most MAX_STEPS, until it
enters a reader, and takes the pointer from the parameter's System V register. Each member's
address and value go into the observation; lab/checks/frame_type.py judges them.
"""

from __future__ import annotations

from lab.errors import LabError
from lab.target.frametypes import frame_readers
from lab.x86.frames import QWORD

MAX_STEPS = 256
#: An agnostic fire steps a kernel the lab does not know: fewer, each restored afterwards.
AGNOSTIC_STEPS = 64
STEP_TIMEOUT = 5.0
#: System V AMD64: the registers of the first six integer or pointer parameters.
ARG_REGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")


def probe(firer, regs: dict, error_code: bool, at: dict) -> dict:
    """observe() at a Firer's `entry` stop; `at`: the fire's stops by name, `entry` included."""
    readers = frame_readers(firer.s.kernel)
    if "skip" in readers:
        return {"skip": readers["skip"]}
    return observe(firer.gdb, readers["readers"], regs["pc"], regs["rsp"], error_code,
                   {a for w, a in at.items() if w != "entry" and a is not None})


def injected(session, pc: int, entry_rsp: int, error_code: bool) -> dict:
    """observe() at an agnostic fire's handler entry (lab/experiments/inject.py), from the DWARF
    of the ELF the symbols came from."""
    path = session.symbols.path
    if path is None:
        return {"skip": "no ELF to read DWARF from (no symbols)"}
    readers = frame_readers(path)
    if "skip" in readers:
        return {"skip": readers["skip"]}
    return observe(session.gdb, readers["readers"], pc, entry_rsp, error_code, set(), AGNOSTIC_STEPS)


def observe(gdb, readers: dict, entry_pc: int, entry_rsp: int, error_code: bool,
            stop_at: set[int], max_steps: int = MAX_STEPS) -> dict:
    """{"reader": ..., "pointer", "base", "steps", "members": [...]} or {"skip": why}; "pc" is
    where the CPU was left (the caller's next stop may be there: see `stop_at`)."""
    base = entry_rsp + (QWORD if error_code else 0)
    pc, steps, reader = entry_pc, 0, readers.get(entry_pc)
    while reader is None:
        if steps and pc in stop_at:
            return {"skip": f"the handler reached {pc:#x}, a stop of the fire, before any frame reader",
                    "pc": pc, "steps": steps}
        if steps >= max_steps:
            return {"skip": f"no function that takes a frame struct was entered within {max_steps} "
                            f"instructions of the handler", "pc": pc, "steps": steps}
        gdb.mi("-exec-step-instruction")
        gdb.wait_stopped(STEP_TIMEOUT, "one instruction of the handler")
        pc = gdb.registers(("rip",))["rip"]
        steps += 1
        reader = readers.get(pc)
    if steps == 0:
        pointer = base
    elif reader.index < len(ARG_REGS):
        reg = ARG_REGS[reader.index]
        pointer = gdb.registers((reg,))[reg]
    else:
        return {"skip": f"{reader.function}'s {reader.param} is parameter {reader.index + 1}, passed on "
                        f"the stack", "pc": pc, "steps": steps}
    members = []
    for m in reader.members:
        address = (pointer + m.offset) % 2**64
        try:
            value = int.from_bytes(gdb.read_memory(address, m.size), "little")
        except LabError as exc:  # an unreadable member is the finding itself
            value, error = None, str(exc).splitlines()[0]
        else:
            error = None
        members.append({"path": m.path, "offset": m.offset, "size": m.size, "word": m.word,
                        "address": address, "value": value, "error": error})
    return {"reader": {"function": reader.function, "address": reader.address, "param": reader.param,
                       "type": reader.type_name, "by_value": reader.by_value,
                       "interrupt_abi": steps == 0},
            "pointer": pointer, "base": base, "entry_rsp": entry_rsp, "steps": steps, "pc": pc,
            "members": members}
