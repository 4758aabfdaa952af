"""Kernel-agnostic exception firing: any x86-64 kernel, stopped in ring 0, no cooperation.

At a stop the lab saves the registers and the bytes at RIP, writes one faulting instruction
there (the gdbstub writes physical memory, so read-only kernel text is no obstacle), sets the
registers that instruction needs, clears RFLAGS.IF and TF so no interrupt comes first, and
puts hardware breakpoints on the handler the live IDT names for the vector (plus #GP, #PF and
#DF, to see a wrong delivery). It continues, stops at the handler's first instruction, reads
the frame the CPU pushed (and, with DWARF, steps a stub into the function that reads it:
lab/experiments/frame_type.py), then writes back the original bytes and every register. The
kernel resumes exactly where it stopped, none the wiser.

The CPU pushes (SDM vol. 3A §6.14.2, Figure 6-9; §6.13 for which vectors push an error code):
with no stack switch it aligns RSP down to 16 bytes, with an IST gate it loads the IST slot
(§6.14.5); then SS, RSP, RFLAGS, CS, RIP and, for some vectors, an error code.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from lab.errors import GuestError, UserError
from lab.experiments import frame_type
from lab.scenarios.injections import Injection, expected_error_code
from lab.target.cpu import parse_info_registers
from lab.target.memory import phys_reader
from lab.x86.frames import GPRS, QWORD, RFLAGS_IF, RFLAGS_TF, qwords
from lab.x86.idt import read_gate
from lab.x86.paging import walk
from lab.x86.tss import TSS
from lab.x86.vectors import DF, GP, PF, mnemonic

NON_CANONICAL = 0x8000_0000_0000_0000  # bits 63:47 differ: #GP(0) on access (SDM §3.3.7.1)
#: Candidates for an address no page maps, tried in order by walking CR3.
UNMAPPED_CANDIDATES = (0x0, 0x1000, 0x7FFF_FFFF_F000, 0xFFFF_8000_0000_0000, 0x0000_4000_0000_0000)
WATCHED = (GP, PF, DF)  # #GP, #PF, #DF: where a wrong delivery would most likely go


class NoGate(GuestError):
    """The kernel has no present gate for the vector: there is nothing to fire at."""


@dataclass
class InjectObservation:
    name: str
    vector: int
    site: int  # RIP at the stop, where the instruction was written
    before: dict  # rip, rsp, eflags, cs, ss at the stop
    run_rflags: int  # RFLAGS the instruction ran with (IF and TF cleared)
    gate: dict  # the live gate: offset, ist, type
    ist_top: int | None  # the TSS slot the gate's IST names
    target: int | None = None  # RAX for gp/pf
    stopped_at: int | None = None
    entered: int | None = None  # the vector whose handler was entered (None: none within the bound)
    entry_rsp: int | None = None
    frame: list[int] = field(default_factory=list)  # the frame's 5 or 6 qwords at the entry RSP
    cr2: int | None = None
    frame_type: dict | None = None  # the DWARF type the handler reads its frame through (frame_type.py)
    registers: dict = field(default_factory=dict)  # the GPRs the instruction ran with
    restored: list[str] = field(default_factory=list)  # what differs after the restore
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def _unmapped(gdb, cr3: int) -> int:
    read = phys_reader(gdb.monitor)
    for va in UNMAPPED_CANDIDATES:
        if walk(cr3, va, read).physical is None:
            return va
    raise GuestError("found no unmapped page among the candidates for #PF: "
                     + ", ".join(f"{a:#x}" for a in UNMAPPED_CANDIDATES))


def inject(session, injection: Injection, timeout: float = 5.0) -> InjectObservation:
    """Fires `injection` in the stopped guest of `session` and restores it."""
    gdb = session.gdb
    t0 = time.monotonic()
    saved = gdb.registers()
    if saved["cs"] & 3:
        raise UserError(f"the CPU is in ring {saved['cs'] & 3} at this stop; injection needs ring 0 "
                        f"(stop with --at a kernel function, or --when a kernel message)")
    cpu = parse_info_registers(gdb.monitor("info registers"))
    gate = read_gate(gdb.read_memory, cpu.idtr.base, injection.vector)
    if not gate.present:
        raise NoGate(f"vector {injection.vector} ({mnemonic(injection.vector)}) has no present gate "
                     f"in this kernel's IDT")
    ist_top = None
    if gate.ist:
        tss = TSS.decode(gdb.read_memory(cpu.tr.base, TSS.size))
        ist_top = tss[f"ist{gate.ist}"]
    regs = dict(injection.regs)
    target = None
    if regs.get("rax") == "unmapped":
        regs["rax"] = target = _unmapped(gdb, saved["cr3"])
    elif regs.get("rax") == "non-canonical":
        regs["rax"] = target = NON_CANONICAL
    site = saved["rip"]
    run_rflags = saved["eflags"] & ~(RFLAGS_IF | RFLAGS_TF)
    obs = InjectObservation(injection.name, injection.vector, site,
                            {k: saved[k] for k in ("rip", "rsp", "eflags", "cs", "ss")}, run_rflags,
                            {"offset": gate.offset, "ist": gate.ist, "type": gate.type_name}, ist_top, target)
    original = gdb.read_memory(site, len(injection.code))
    handlers = {injection.vector: gate.offset}
    for v in WATCHED:
        g = read_gate(gdb.read_memory, cpu.idtr.base, v)
        if g.present and g.offset not in handlers.values():
            handlers[v] = g.offset
    breakpoints = []
    try:
        breakpoints = [gdb.hbreak(f"*{address:#x}") for address in handlers.values()]
        gdb.write_memory(site, injection.code)
        gdb.write_registers({**regs, "eflags": run_rflags})
        gdb.cont()
        try:
            stop = gdb.wait_stopped(timeout, f"the handler of {mnemonic(injection.vector)}")
        except Exception:
            gdb.interrupt()
            raise
        obs.stopped_at = pc = int(stop.get("frame", {}).get("addr", "0"), 16)
        obs.entered = next((v for v, a in handlers.items() if a == pc), None)
        if obs.entered is not None:
            now = gdb.registers(("rsp", "cr2"))
            obs.entry_rsp, obs.cr2 = now["rsp"], now.get("cr2")
            # Exactly the frame: an IST stack's top is often a page boundary with a guard above.
            words = 6 if expected_error_code(injection) is not None else 5
            obs.frame = qwords(gdb.read_memory(obs.entry_rsp, words * QWORD))
            obs.registers = {r: v for r, v in {**saved, **regs}.items() if r in GPRS}
            obs.frame_type = frame_type.injected(session, pc, obs.entry_rsp, words == 6)
    finally:
        gdb.write_memory(site, original)
        gdb.write_registers({k: v for k, v in saved.items() if k in RESTORED})
        for bp in breakpoints:
            gdb.delete_breakpoint(bp)
    after = gdb.registers()
    obs.restored = [f"{k} {after.get(k, 0):#x} != {saved[k]:#x}" for k in RESTORED if after.get(k) != saved[k]]
    if gdb.read_memory(site, len(original)) != original:
        obs.restored.append(f"the bytes at {site:#x} differ from the original")
    obs.seconds = time.monotonic() - t0
    return obs


#: Registers written back after an injection (segment and control registers are never changed).
RESTORED = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15", "rip", "eflags", "cr2")
