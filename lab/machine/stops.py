"""Stops for any kernel, found without symbols (`--at idle`, `--at fault`).

No gdb stop fires when a CPU executes `hlt` or a self-loop, and single-stepping a boot under
gdb costs a round trip per instruction, so the lab polls: it lets the guest run for a short
slice (2 ms, growing to 50 ms), interrupts it, and reads QEMU's `info registers` (RIP,
RFLAGS, EFER, and QEMU's own HLT flag, set while the vCPU sits in `hlt`) and the bytes at RIP.

- idle: the first poll that finds the CPU, in long mode, parked: halted with RFLAGS.IF=1 (a
  kernel idling), in a self-loop (`jmp .`: EB FE or E9 FB FF FF FF), or halted with IF=0 (it
  stopped for good: nothing but an NMI wakes it). A poll lands on a moment the kernel is parked,
  the first one the lab sees: a kernel that idles briefly between two polls is found at a later
  idle moment.
- fault: polls until an IDT is loaded (lab/target/unset.py), then puts the lab's hardware
  breakpoints (DR0-DR3, so four handlers) on the handlers of the exceptions a boot most often
  takes (#PF, #GP, #UD, #DF, then #DE, #BP...: the first four distinct addresses) and runs to
  the first. A fault within one poll slice of `lidt` is delivered before the breakpoints are in
  place; the lab then finds the kernel parked and says so.
Every wait is bounded by the caller's timeout (--ready-timeout) and ends in a LabTimeout that
names what was awaited and what the console shows.
"""

from __future__ import annotations

import re
import time

from lab.errors import GuestError, LabError, LabTimeout
from lab.labkernel.contract import READY_MARKER
from lab.target.cpu import EFER_LMA, parse_info_registers
from lab.target.unset import idt_unloaded, interrupts_enabled
from lab.x86.frames import QWORD, decode_frame, explain_error_code, frame_bytes
from lab.x86.idt import read_gate
from lab.x86.vectors import ERROR_CODE_VECTORS, mnemonic

IDLE, FAULT = "idle", "fault"
KINDS = (IDLE, FAULT)
HLT = 0xF4
SELF_LOOPS = (bytes.fromhex("ebfe"), bytes.fromhex("e9fbffffff"))
FIRST_SLICE, LAST_SLICE = 0.002, 0.05
#: the vectors --at fault watches, in this order, up to four distinct handlers
FAULT_ORDER = (14, 13, 6, 8, 0, 3, 1, 4, 5, 7, 10, 11, 12, 16, 17, 18, 19, 20, 21, 29, 30)
_HALTED = re.compile(r"\bHLT=1\b")
#: what on a console says the kernel took an exception or panicked
_TROUBLE = re.compile(r"(?im)^.*\b(panic|exception|fault|triple|#(?:DE|UD|GP|PF|DF|BP|NP|SS|TS|AC)\b|"
                      r"page fault|general protection|double fault|invalid opcode|oops)\b.*$")
#: the stop that catches each kind of trouble
STOP_FOR = {"fault": "--at fault (the first exception the kernel's IDT delivers)",
            "parked": "--at idle (the kernel halted after it)"}


def console_hint(tail: str) -> str:
    """'' or a sentence: the console shows an exception or a panic, and which stop catches it."""
    m = None
    for m in _TROUBLE.finditer(tail):
        pass
    if m is None:
        return ""
    line = m.group(0).strip()[:160]
    return (f"; the console shows an exception or panic ({line!r}): {STOP_FOR['fault']} stops at it, "
            f"{STOP_FOR['parked']} where it ends")


def park(gdb) -> str | None:
    """Why the stopped CPU is parked (a sentence with its RIP), or None when it is not."""
    text = gdb.monitor("info registers")
    cpu = parse_info_registers(text)
    if not cpu.values.get("EFER", 0) & EFER_LMA:
        return None  # firmware or a loader, before the kernel's long mode
    rip = cpu.values.get("RIP", 0)
    intr = interrupts_enabled(cpu.values)
    if _HALTED.search(text):
        try:
            after = gdb.read_memory(rip - 1, 1) == bytes([HLT])
        except LabError:
            after = False
        where = f"the hlt at {rip - 1:#x}" if after else f"a hlt (RIP {rip:#x})"
        if intr:
            return f"halted in {where} with RFLAGS.IF=1 (the kernel idles)"
        return f"halted in {where} with RFLAGS.IF=0 (it stopped for good: only an NMI wakes it)"
    try:
        code = gdb.read_memory(rip, 5)
    except LabError:
        return None
    for loop in SELF_LOOPS:
        if code.startswith(loop):
            return f"spinning in a self-loop (jmp . : {loop.hex(' ')}) at {rip:#x}, RFLAGS.IF={int(intr)}"
    return None


class Poll:
    """The guest run in slices, each ended by an interrupt, until `timeout` expires."""

    def __init__(self, session, timeout: float, what: str) -> None:
        self.s, self.what, self.timeout = session, what, timeout
        self.deadline = time.monotonic() + timeout
        self.slice = FIRST_SLICE

    def step(self) -> None:
        """Runs one slice and returns with the CPU stopped; LabTimeout when time is up."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            tail = self.s.serial.tail().strip()
            raise LabTimeout(f"timed out after {self.timeout:g} s waiting for {self.what}"
                             f"{console_hint(tail)}; serial tail:\n{tail or '(nothing)'}", logs=self.s.logs)
        self.s.gdb.cont()
        self.s.serial.run_for(min(self.slice, left), self.what)
        self.s.gdb.interrupt()
        self.slice = min(self.slice * 1.5, LAST_SLICE)


def run_to_idle(session, timeout: float, marker: bool = False) -> str:
    """The first poll that finds the kernel parked; with `marker`, or the first after the lab
    kernel's ready marker shows on the console (a kernel that prints it without `lab_ready` in
    its symbols: a disk image, a stripped ELF), whichever comes first."""
    also = f" or the ready marker {READY_MARKER!r}" if marker else ""
    poll = Poll(session, timeout, f"the kernel to idle (hlt with RFLAGS.IF=1, or a self-loop){also}")
    while True:
        poll.step()
        if marker:
            lines = [x for x in session.serial.tail(1 << 20).splitlines() if READY_MARKER in x]
            if len(lines) > 1:
                raise GuestError(f"the kernel printed the ready marker twice (it restarted, or it is not the "
                                 f"kernel the lab expects); serial tail:\n{session.serial.tail().strip()}",
                                 logs=session.logs)
            if lines:
                return lines[0][lines[0].index(READY_MARKER):].strip()
        why = park(session.gdb)
        if why is not None:
            return f"stopped at idle: {why}"


def _handlers(gdb, base: int, limit: int) -> dict[int, list[int]]:
    """{handler address: vectors} for the first four distinct handlers of FAULT_ORDER."""
    out: dict[int, list[int]] = {}
    for v in FAULT_ORDER:
        if (v + 1) * 16 - 1 > limit:
            continue
        try:
            gate = read_gate(gdb.read_memory, base, v)
        except LabError:
            continue
        if not gate.present:
            continue
        if gate.offset in out:
            out[gate.offset].append(v)
        elif len(out) < 4:
            out[gate.offset] = [v]
    return out


def _vectors(vs: list[int]) -> str:
    return ", ".join(f"{v} ({mnemonic(v)})" for v in vs)


def run_to_fault(session, timeout: float) -> str:
    gdb = session.gdb
    poll = Poll(session, timeout, "the kernel to load an IDT (for --at fault)")
    while True:
        poll.step()
        cpu = parse_info_registers(gdb.monitor("info registers"))
        if cpu.values.get("EFER", 0) & EFER_LMA and idt_unloaded(cpu.idtr.base, cpu.idtr.limit) is None:
            break
        why = park(gdb)
        if why is not None:
            raise GuestError(f"--at fault: the kernel parked before it loaded an IDT ({why}); no exception "
                             f"can be delivered without one: inspect it with --at idle", logs=session.logs)
    parked = park(gdb)
    if parked is not None:
        raise GuestError(f"--at fault: when the lab first saw an IDT loaded the kernel was already parked "
                         f"({parked}): an exception within one poll slice of lidt is missed; inspect the "
                         f"kernel where it is with --at idle", logs=session.logs)
    handlers = _handlers(gdb, cpu.idtr.base, cpu.idtr.limit)
    if not handlers:
        raise GuestError(f"--at fault: the IDT at {cpu.idtr.base:#x} has no present exception gate to "
                         f"watch", logs=session.logs)
    bps = [gdb.hbreak(f"*{a:#x}") for a in handlers]
    watched = "; ".join(f"{_vectors(vs)} at {a:#x}" for a, vs in handlers.items())
    gdb.cont()
    left = max(poll.deadline - time.monotonic(), 0.001)
    try:
        stop = gdb.wait_stopped(left, f"an exception at a watched handler ({watched})")
    except LabTimeout:
        gdb.interrupt()
        tail = session.serial.tail().strip()
        why = park(gdb)
        raise LabTimeout(f"timed out after {timeout:g} s waiting for the first exception at a watched handler "
                         f"({watched}){'; the kernel is ' + why if why else ''}"
                         f"{console_hint(tail)}; serial tail:\n{tail or '(nothing)'}", logs=session.logs) from None
    for bp in bps:
        gdb.delete_breakpoint(bp)
    pc = int(stop.get("frame", {}).get("addr", "0"), 16)
    if pc not in handlers:
        raise GuestError(f"--at fault: the guest stopped at {pc:#x} ({stop.get('reason')}), at no watched "
                         f"handler ({watched})", logs=session.logs)
    vectors = handlers[pc]
    return (f"stopped at fault: vector {_vectors(vectors)} delivered, at its handler {pc:#x}; "
            f"{frame_line(gdb, vectors)}")


def frame_line(gdb, vectors: list[int]) -> str:
    """The frame the CPU pushed, decoded from RSP at the handler's first instruction (SDM
    §6.14.2): with an error code when every vector sharing the handler pushes one."""
    codes = {v in ERROR_CODE_VECTORS for v in vectors}
    if len(codes) > 1:
        return "frame not decoded: the handler serves vectors with and without an error code"
    has_code = codes.pop()
    rsp = gdb.registers(("rsp",))["rsp"]
    try:
        raw = gdb.read_memory(rsp, frame_bytes(has_code))
    except LabError as exc:
        return f"the frame at RSP {rsp:#x} cannot be read ({exc.message})"
    f = decode_frame([int.from_bytes(raw[i:i + QWORD], "little") for i in range(0, len(raw), QWORD)], has_code)
    line = (f"frame at RSP {rsp:#x}: RIP {f['rip']:#x} CS {f['cs']:#x} RFLAGS {f['rflags']:#x} "
            f"RSP {f['rsp']:#x} SS {f['ss']:#x}")
    if f["error_code"] is not None:
        meaning = explain_error_code(vectors[0], f["error_code"])
        line += f", error code {f['error_code']:#x}" + (f" ({meaning})" if meaning else "")
    return line


def run_to(session, kind: str | None, timeout: float) -> str:
    """Runs the booted guest of `session` to the stop `kind` (idle or fault; None: the default
    stop of a kernel without `lab_ready`, idle or the ready marker) and returns the line that
    says where it stopped."""
    if kind == FAULT:
        return run_to_fault(session, timeout)
    return run_to_idle(session, timeout, marker=kind is None)


def expect(serial, pattern: str, timeout: float):
    """--when: the console's match of `pattern`; its timeout says when the console shows an
    exception or a panic, and which stop catches it."""
    try:
        return serial.expect(pattern.encode(), timeout, f"the serial pattern {pattern!r}")
    except LabTimeout as exc:
        hint = console_hint(serial.tail())
        if not hint:
            raise
        head, _, tail = exc.message.partition("; serial tail:")
        raise LabTimeout(f"{head}{hint}; serial tail:{tail}", logs=exc.logs) from None
