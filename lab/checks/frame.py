"""Checks on one fired exception (a `FireObservation`) against the manuals.

SDM vol. 3A §6.14.2 (64-bit frame, RSP alignment, SS:RSP always pushed), §6.13 and Table 6-1
(error codes), §6.12.1.3 (IF in interrupt vs trap gates), §6.15 (fault vs trap saved RIP, CR2),
§6.14.5 (IST). Each check returns PASS, FAIL, or SKIP when the observation lacks what it needs
(e.g. no exception was delivered at all).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.checks import fire_cpu, frame_type
from lab.checks.base import Check, Checks, Verdict, verdict
# A fire's outcome (PASS, STALE, DEVIATION, FAIL) against its QEMU version's record; re-exported.
from lab.checks.deviation import (OUTCOME_DEVIATION, OUTCOME_FAIL, OUTCOME_PASS,  # noqa: F401
                                  OUTCOME_STALE, outcome)
from lab.scenarios.exceptions import RIP_CR2, RIP_FAULT, RIP_LOOP, RIP_NEXT, ExceptionScenario
from lab.x86.frames import (ARITHMETIC_FLAGS, INTERRUPT_FRAME, QWORD, RFLAGS, RFLAGS_IF, RFLAGS_RF,
                            TRAP_FRAME_GPRS,
                            describe_pf_error, frame_bytes)
from lab.x86.vectors import PF, mnemonic, pushes_error_code

TIER = "frame"
C = Checks(TIER)
STACK_ALIGN = 16


def _vec(v: int | None) -> str:
    return "none" if v is None else f"{mnemonic(v)} ({v})"


def _flags(value: int) -> str:
    d = RFLAGS.decode_int(value)
    return f"{value:#x} [" + " ".join(k.upper() for k, bit in d.items() if bit and k != "iopl") + "]"


@dataclass(frozen=True)
class SavedFrame:
    error_code: int | None
    rip: int
    cs: int
    rflags: int
    rsp: int
    ss: int


def has_error_code(s: ExceptionScenario, vector: int) -> bool:
    return pushes_error_code(vector) and not s.software


def saved_frame(obs, s: ExceptionScenario) -> SavedFrame | None:
    """The frame as the CPU pushed it, read at the handler's first instruction."""
    if obs.entry is None:
        return None
    stack = obs.entry["stack"]
    ec = has_error_code(s, obs.vector)
    f = INTERRUPT_FRAME.decode(b"".join(v.to_bytes(8, "little") for v in stack[int(ec):int(ec) + 5]))
    return SavedFrame(stack[0] if ec else None, f["rip"], f["cs"], f["rflags"], f["rsp"], f["ss"])






def check_vector(obs, s) -> Check:
    title = f"the CPU delivers {_vec(obs.vector)}"
    if obs.timeout:
        return C.result("fire.vector", title, False, [obs.timeout] + obs.qemu_log[-3:])
    got = obs.delivered["vector"] if obs.delivered else None
    how = f" via {obs.gate['symbol']}" if got == obs.vector else ""
    ev = [f"delivered: {_vec(got)}{how}"] if got is not None else \
        ["no exception was delivered: the instruction completed"]
    return C.result("fire.vector", title, got == obs.vector, ev)


NO_ENTRY = "the handler for the expected vector was not entered"
GUEST_NO_SENTINELS = "the in-guest observer plants no register sentinels (use --observer gdb)"


def check_layout(obs, s) -> Check:
    ec = has_error_code(s, obs.vector)
    title = f"the frame is RIP, CS, RFLAGS, RSP, SS{' under an error code' if ec else ' (no error code)'}"
    f = saved_frame(obs, s)
    if f is None:
        return C.skip("fire.frame-layout", title, NO_ENTRY)
    stack = obs.entry["stack"]
    names = (["error code"] if ec else []) + [fl.name.upper() for fl in INTERRUPT_FRAME.fields]
    ev = [f"[rsp+{i * QWORD:#04x}] {stack[i]:#018x}  {n}" for i, n in enumerate(names)]
    ok = f.cs == obs.before["cs"] and f.ss == obs.before["ss"] and f.rsp == obs.before["rsp"]
    if not ok:
        ev.append(f"CS/RSP/SS are not at the offsets the manual gives (expected CS {obs.before['cs']:#x}, "
                  f"RSP {obs.before['rsp']:#x}, SS {obs.before['ss']:#x})")
    return C.result("fire.frame-layout", title, ok, ev)


def check_alignment(obs, s) -> Check:
    ec = has_error_code(s, obs.vector)
    size = frame_bytes(ec)
    title = ("RSP at entry = IST top - frame" if obs.gate["ist"] else
             "RSP at entry = (interrupted RSP aligned down to 16) - frame")
    if obs.entry is None:
        return C.skip("fire.alignment", title, NO_ENTRY)
    rsp = obs.entry["rsp"]
    top = obs.ist_top if obs.gate["ist"] else obs.before["rsp"] & ~(STACK_ALIGN - 1)
    base = rsp + size
    ev = [f"entry RSP {rsp:#x} + {size} frame bytes = {base:#x}",
          (f"IST{obs.gate['ist']} top {top:#x}" if obs.gate["ist"] else
           f"interrupted RSP {obs.before['rsp']:#x} aligned down to 16 = {top:#x}")]
    return C.result("fire.alignment", title, base == top and top % STACK_ALIGN == 0, ev)


def check_rip(obs, s) -> Check:
    labels = obs.labels
    want = {RIP_FAULT: ("the faulting instruction", labels["fault"]),
            RIP_NEXT: ("the instruction after the trap", labels["fault_end"]),
            RIP_CR2: ("the fetch address (CR2)", obs.expected_cr2),
            RIP_LOOP: ("an instruction of the wait loop", None)}[s.rip]
    title = f"saved RIP is {want[0]}"
    f = saved_frame(obs, s)
    if f is None:
        return C.skip("fire.rip", title, NO_ENTRY)
    if s.rip == RIP_LOOP:
        ok = labels["plant"] <= f.rip <= labels["resume"]
        return C.result("fire.rip", title, ok, [f"saved RIP {f.rip:#x}, loop {labels['plant']:#x}..{labels['resume']:#x}"])
    return C.result("fire.rip", title, f.rip == want[1], [f"saved RIP {f.rip:#x}, expected {want[1]:#x}"])


def check_selectors(obs, s) -> Check:
    title = "saved CS and SS are the interrupted (kernel) selectors"
    f = saved_frame(obs, s)
    if f is None:
        return C.skip("fire.cs-ss", title, NO_ENTRY)
    ok = f.cs == obs.before["cs"] and f.ss == obs.before["ss"]
    return C.result("fire.cs-ss", title, ok, [f"saved CS {f.cs:#x} SS {f.ss:#x}; interrupted CS "
                                             f"{obs.before['cs']:#x} SS {obs.before['ss']:#x}"])


def check_rsp(obs, s) -> Check:
    title = "saved RSP is the interrupted RSP (pushed even without a privilege change)"
    f = saved_frame(obs, s)
    if f is None:
        return C.skip("fire.rsp", title, NO_ENTRY)
    return C.result("fire.rsp", title, f.rsp == obs.before["rsp"],
                   [f"saved RSP {f.rsp:#x}, interrupted RSP {obs.before['rsp']:#x}"])


def check_rflags(obs, s) -> Check:
    title = "saved RFLAGS is the interrupted RFLAGS"
    f = saved_frame(obs, s)
    if f is None:
        return C.skip("fire.rflags", title, NO_ENTRY)
    want = obs.before["rflags"] | s.rflags_set
    ignore = RFLAGS_RF
    note = "compared without RF"
    if s.rip == RIP_LOOP:
        # An asynchronous event may land after the loop's `cmp`: only system flags are known.
        ignore |= ARITHMETIC_FLAGS
        note = "compared without RF and the arithmetic flags (the event is asynchronous)"
    ok = (f.rflags & ~ignore) == (want & ~ignore)
    ev = [f"saved {_flags(f.rflags)}", f"interrupted {_flags(want)}",
          f"RF in the saved image: {int(bool(f.rflags & RFLAGS_RF))} ({note})"]
    return C.result("fire.rflags", title, ok, ev)


def check_if(obs, s) -> Check:
    gate = obs.gate["type"]
    title = f"RFLAGS.IF in the handler follows the {gate} gate"
    if obs.entry is None:
        return C.skip("fire.if", title, NO_ENTRY)
    inside = bool(obs.entry["rflags"] & RFLAGS_IF)
    before = bool(obs.before["rflags"] & RFLAGS_IF)
    want = False if gate == "interrupt" else before
    return C.result("fire.if", title, inside == want,
                   [f"IF before {int(before)}, in the handler {int(inside)}, expected {int(want)}"])


def check_error_code(obs, s) -> Check:
    ec = has_error_code(s, obs.vector)
    title = (f"error code is {s.error_code:#x}" if ec and s.error_code is not None
             else "no error code is pushed")
    f = saved_frame(obs, s)
    if not ec:
        got = obs.delivered["error_code"] if obs.delivered else None
        return C.result("fire.error-code", title, got is None or s.software,
                       [f"vector {obs.vector} pushes no error code (SDM Table 6-1)"])
    if f is None:
        return C.skip("fire.error-code", title, NO_ENTRY)
    ev = [f"pushed {f.error_code:#x}"]
    if obs.vector == PF:
        ev.append(f"bits: {describe_pf_error(f.error_code)}; expected {describe_pf_error(s.error_code)}")
    return C.result("fire.error-code", title, f.error_code == s.error_code, ev)


def check_cr2(obs, s) -> Check:
    """#PF: CR2 holds the faulting linear address. Every other exception leaves CR2 as it was
    (SDM vol. 3A §6.15, Interrupt 14: only a page fault loads CR2)."""
    # At the gate's handler; else (the vector's gate was not the scenario's) at lab_on_exception,
    # where every handler reports before it can fault.
    source = obs.entry or obs.delivered
    if source is None or source.get("cr2") is None:
        return C.skip("fire.cr2", "CR2", NO_ENTRY)
    got = source["cr2"]
    if obs.expected_cr2 is not None:
        return C.result("fire.cr2", "CR2 holds the faulting linear address", got == obs.expected_cr2,
                        [f"CR2 {got:#x}, expected {obs.expected_cr2:#x}"])
    title = "CR2 unchanged: only a page fault writes CR2"
    before = obs.before.get("cr2")
    if before is None:
        return C.skip("fire.cr2", title, "CR2 was not read before the event")
    return C.result("fire.cr2", title, got == before,
                    [f"CR2 {got:#x} at the handler, {before:#x} before the event"])


def check_trap_frame(obs, s) -> Check:
    title = "the stub's TrapFrame holds the interrupted registers, vector and error code"
    if obs.style != "stub":
        return C.skip("fire.trap-frame", title, "x86-interrupt style: no TrapFrame")
    if obs.observer == "guest":
        return C.skip("fire.trap-frame", title, GUEST_NO_SENTINELS)
    if obs.trap_frame is None:
        return C.skip("fire.trap-frame", title, "no exception reached the stub")
    tf, problems = obs.trap_frame, []
    for reg in TRAP_FRAME_GPRS:
        if reg in obs.sentinels and tf[reg] != obs.sentinels[reg]:
            problems.append(f"{reg} {tf[reg]:#x} != sentinel {obs.sentinels[reg]:#x}")
    delivered = obs.delivered["vector"]
    if tf["vector"] != delivered:
        problems.append(f"vector field {tf['vector']} != {delivered}")
    want_ec = obs.delivered["error_code"] if obs.delivered["error_code"] is not None else 0
    if tf["error_code"] != want_ec:
        problems.append(f"error_code field {tf['error_code']:#x} != {want_ec:#x} (dummy 0 when the CPU pushes none)")
    f = saved_frame(obs, s)
    if f is not None and (tf["rip"], tf["rsp"], tf["rflags"]) != (f.rip, f.rsp, f.rflags):
        problems.append("the iret part differs from the frame seen at entry")
    ev = problems or [f"{len([r for r in TRAP_FRAME_GPRS if r in obs.sentinels])} GPRs equal their sentinels; "
                      f"vector {tf['vector']}, error_code {tf['error_code']:#x}; at {tf['address']:#x}"]
    return C.result("fire.trap-frame", title, not problems, ev)


def check_frame_type(obs, s) -> Check:
    return frame_type.check(obs, has_error_code(s, obs.vector))


def check_resume(obs, s) -> Check:
    title = "after iretq every planted register still holds its sentinel"
    if obs.observer == "guest":
        return C.skip("fire.resume", title, GUEST_NO_SENTINELS)
    if obs.after is None:
        return C.skip("fire.resume", title, "the resume point was not reached")
    bad = [f"{r} {obs.after[r]:#x} != {v:#x}" for r, v in obs.sentinels.items() if obs.after[r] != v]
    if obs.after["rsp"] != obs.before["rsp"]:
        bad.append(f"rsp {obs.after['rsp']:#x} != {obs.before['rsp']:#x}")
    return C.result("fire.resume", title, not bad,
                   bad or [f"{len(obs.sentinels)} registers and RSP intact at the resume point"])


def check_qemu_log(obs, s) -> Check:
    title = "QEMU's -d int log shows the same event"
    if obs.accel != "tcg":
        return C.skip("fire.qemu-log", title, "exception logs exist on TCG only")
    from lab.target import qemu_log

    got = obs.delivered["vector"] if obs.delivered else None
    events = [e for e in qemu_log.parse("\n".join(obs.qemu_log)) if isinstance(e, qemu_log.LogEvent)]
    match = [e for e in events if e.vector == got]
    if got is None:
        return C.result("fire.qemu-log", title, not [e for e in events if e.vector < 32],
                       ["no exception in the log either"] + [e.line for e in events][:3])
    f = saved_frame(obs, s)
    # QEMU logs a software interrupt (i=1) at the `int` instruction; the CPU pushes the next one.
    ok = bool(match) and (f is None or any(
        e.rip == (obs.labels["fault"] if e.software else f.rip) for e in match))
    return C.result("fire.qemu-log", title, ok, [e.line for e in match][:2] or ["no line for this vector"])


def check_observers_agree(obs, s) -> Check:
    """The gdb view and the in-guest record of the same fire (TCG: both are available)."""
    title = "gdb's view and the kernel's own record of the exception agree"
    if obs.observer != "gdb":
        return C.skip("fire.observers-agree", title, "observed by the kernel alone (--observer guest)")
    if obs.guest is None:
        return C.skip("fire.observers-agree", title, "the kernel has no in-guest observer")
    problems = observer_differences(obs)
    ev = problems or ([f"{len(obs.guest)} record(s): vector, error code, entry RSP, the frame's words, "
                       f"RFLAGS (system flags) and CR2 in the handler and the interrupted context are the same"]
                      if obs.guest else ["neither saw an exception"])
    return C.result("fire.observers-agree", title, not problems, ev)


#: RFLAGS bits the handler's own code changes between its first instruction (gdb) and the
#: kernel's hook: the arithmetic flags (its compares), and RF.
HANDLER_VOLATILE = ARITHMETIC_FLAGS | RFLAGS_RF


def observer_differences(obs) -> list[str]:
    """What gdb saw and the kernel recorded differently; [] when they agree."""
    recs = obs.guest
    got = obs.delivered["vector"] if obs.delivered else None
    if not recs:
        return [] if got is None else [f"gdb saw {_vec(got)} delivered, the kernel recorded nothing"]
    first, out = recs[0], []
    if got != first["vector"] or (obs.delivered or {}).get("error_code") != first["error_code"]:
        out.append(f"delivered: gdb {_vec(got)} error code {(obs.delivered or {}).get('error_code')}, "
                   f"kernel {_vec(first['vector'])} error code {first['error_code']}")
    for name in ("rsp", "rflags", "cs", "ss"):
        if obs.before.get(name) != first["plant"][name]:
            out.append(f"interrupted {name}: gdb {obs.before.get(name):#x}, kernel {first['plant'][name]:#x}")
    entry = next((r for r in recs if r["vector"] == obs.vector), None)
    if (obs.entry is None) != (entry is None):
        out.append(f"the {_vec(obs.vector)} handler was entered: gdb {obs.entry is not None}, kernel {entry is not None}")
    elif entry is not None:
        pairs = [("entry RSP", obs.entry["rsp"], entry["entry_rsp"]),
                 ("RFLAGS in the handler (system flags)", obs.entry["rflags"] & ~HANDLER_VOLATILE,
                  entry["rflags"] & ~HANDLER_VOLATILE),
                 ("CR2", obs.entry["cr2"], entry["cr2"])]
        pairs += [(f"[rsp+{i * QWORD:#04x}]", a, b) for i, (a, b) in enumerate(zip(obs.entry["stack"], entry["words"]))]
        out += [f"{what}: gdb {a:#x}, kernel {b:#x}" for what, a, b in pairs if a != b]
    return out


CHECKS = (check_vector, check_layout, check_alignment, check_rip, check_selectors, check_rsp,
          check_rflags, check_if, check_error_code, check_cr2, check_trap_frame, check_frame_type, check_resume,
          check_qemu_log, check_observers_agree)


def run(obs, s: ExceptionScenario) -> list[Check]:
    """Every check above; for a fire on an AP also the per-CPU ones (lab/checks/fire_cpu.py)."""
    return [c(obs, s) for c in CHECKS + (fire_cpu.CHECKS if getattr(obs, "cpu", 0) else ())]
