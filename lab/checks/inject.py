"""Checks on an injected exception (lab/experiments/inject.py): what the CPU pushed, against the manual.

Each takes the observation and the injection; the frame is the 5 or 6 qwords at the handler's
entry RSP (SDM vol. 3A §6.14.2, Figure 6-9).
"""

from __future__ import annotations

from lab.checks import frame_type
from lab.checks.base import Check, Checks, Verdict, verdict
from lab.scenarios.injections import Injection, expected_error_code
from lab.experiments.inject import InjectObservation
from lab.x86.frames import INTERRUPT_FRAME, QWORD, RFLAGS_RF
from lab.x86.vectors import PF, mnemonic

TIER = "inject"
C = Checks(TIER)
STACK_ALIGN = 16


def _frame(obs: InjectObservation, inj: Injection) -> dict | None:
    has_code = expected_error_code(inj) is not None
    if obs.entered != inj.vector or len(obs.frame) != (6 if has_code else 5):
        return None
    words = obs.frame if has_code else [None, *obs.frame]
    return {"error_code": words[0], "rip": words[1], "cs": words[2], "rflags": words[3],
            "rsp": words[4], "ss": words[5]}


def _not_entered(id: str, title: str, obs: InjectObservation, inj: Injection) -> Check:
    if obs.entered is None:
        why = (f"no handler entered within the bound (stopped at {obs.stopped_at:#x})"
               if obs.stopped_at is not None else "no handler entered within the bound")
    else:
        why = f"{mnemonic(obs.entered)}'s handler was entered, not {mnemonic(inj.vector)}'s"
    return C.make(id, title, Verdict.FAIL if id == "inject.vector" else Verdict.SKIP, (why,))


def vector(obs, inj) -> Check:
    title = f"{inj.description}: the CPU enters the handler the IDT names for vector {inj.vector}"
    if obs.entered != inj.vector:
        return _not_entered("inject.vector", title, obs, inj)
    return C.make("inject.vector", title, Verdict.PASS,
                 (f"stopped at {obs.stopped_at:#x} = IDT[{inj.vector}].offset ({obs.gate['type']} gate, "
                  f"IST{obs.gate['ist']})" if obs.gate["ist"] else
                  f"stopped at {obs.stopped_at:#x} = IDT[{inj.vector}].offset ({obs.gate['type']} gate)",))


def saved_rip(obs, inj) -> Check:
    title = ("the saved RIP names the faulting instruction" if inj.rip_offset == 0
             else "the saved RIP is the instruction after the trap")
    f = _frame(obs, inj)
    if f is None:
        return _not_entered("inject.rip", title, obs, inj)
    want = obs.site + inj.rip_offset
    return C.make("inject.rip", title, verdict(f["rip"] == want),
                 (f"saved RIP {f['rip']:#x}, expected {want:#x} (site {obs.site:#x} + {inj.rip_offset})",))


def saved_segments_and_stack(obs, inj) -> Check:
    title = "CS, SS and RSP as at the stop: same privilege level, so the old RSP and SS are pushed too"
    f = _frame(obs, inj)
    if f is None:
        return _not_entered("inject.cs-ss-rsp", title, obs, inj)
    b = obs.before
    problems = [f"{n} {f[n]:#x} != {b[n]:#x}" for n in ("cs", "ss", "rsp") if f[n] != b[n]]
    return C.make("inject.cs-ss-rsp", title, verdict(not problems),
                 tuple(problems) or (f"CS {f['cs']:#x}, SS {f['ss']:#x}, RSP {f['rsp']:#x}",))


def saved_rflags(obs, inj) -> Check:
    title = "the saved RFLAGS are those the instruction ran with (RF aside)"
    f = _frame(obs, inj)
    if f is None:
        return _not_entered("inject.rflags", title, obs, inj)
    got, want = f["rflags"] & ~RFLAGS_RF, obs.run_rflags & ~RFLAGS_RF
    return C.make("inject.rflags", title, verdict(got == want),
                 (f"saved {f['rflags']:#x}, ran with {obs.run_rflags:#x}"
                  + (" (RF set)" if f["rflags"] & RFLAGS_RF else ""),))


def error_code(obs, inj) -> Check:
    want = expected_error_code(inj)
    title = (f"{mnemonic(inj.vector)} pushes no error code" if want is None
             else f"{mnemonic(inj.vector)} pushes error code {want:#x}")
    f = _frame(obs, inj)
    if f is None:
        return _not_entered("inject.error-code", title, obs, inj)
    if want is None:
        # Without an error code the first qword is RIP: it must be the expected RIP, which
        # saved_rip already asserts; here the slot above SS must not look like a frame shift.
        return C.make("inject.error-code", title, verdict(f["rip"] == obs.site + inj.rip_offset),
                     (f"frame starts with RIP {f['rip']:#x}",))
    problems = [] if f["error_code"] == want else [f"pushed {f['error_code']:#x}"]
    if inj.vector == PF and obs.cr2 != obs.target:
        problems.append(f"CR2 {obs.cr2:#x} != the address read {obs.target:#x}" if obs.cr2 is not None
                        else "CR2 not read")
    evidence = f"pushed {f['error_code']:#x}" + (f", CR2 {obs.cr2:#x}" if inj.vector == PF and obs.cr2 is not None else "")
    return C.make("inject.error-code", title, verdict(not problems), tuple(problems) or (evidence,))


def entry_rsp(obs, inj) -> Check:
    size = INTERRUPT_FRAME.size + (QWORD if expected_error_code(inj) is not None else 0)
    if obs.gate["ist"]:
        title = f"RSP at entry = IST{obs.gate['ist']} top - {size}: the CPU switched to the IST stack"
    else:
        title = f"RSP at entry = the old RSP aligned down to 16 - {size}"
    if obs.entered != inj.vector or obs.entry_rsp is None:
        return _not_entered("inject.entry-rsp", title, obs, inj)
    base = obs.ist_top if obs.gate["ist"] else obs.before["rsp"] & ~(STACK_ALIGN - 1)
    want = base - size
    return C.make("inject.entry-rsp", title, verdict(obs.entry_rsp == want),
                 (f"entry RSP {obs.entry_rsp:#x}, expected {want:#x} (base {base:#x})",))


def restored(obs, inj) -> Check:
    title = "afterwards the original bytes and every register are back: the kernel never noticed"
    return C.make("inject.restored", title, verdict(not obs.restored),
                 tuple(obs.restored) or ("registers and code as at the stop",))


def frame_type_read(obs, inj) -> Check:
    return frame_type.check_injected(obs, expected_error_code(inj) is not None)


CHECKS = (vector, saved_rip, saved_segments_and_stack, saved_rflags, error_code, entry_rsp, frame_type_read,
          restored)


def run(obs: InjectObservation, inj: Injection) -> list[Check]:
    return [c(obs, inj) for c in CHECKS]
