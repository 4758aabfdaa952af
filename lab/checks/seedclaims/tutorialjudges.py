"""Judges of seed 002's page-fault stub as the kernel's `trial tutorial` ran it
(kernel/src/trial/tutorial.rs): fifteen registers pushed (RAX last), RSP passed as the
function's frame pointer, `add rsp, 8` and `iretq` on the way out. Run on #PF (vector 14,
error code) and on #UD (vector 6, none)."""

from __future__ import annotations

from lab.checks.claim_evidence import HOLDS, REFUTED, UNMEASURED
from lab.x86.vectors import GP, PF, UD, mnemonic

#: Registers the stub saves (kernel/src/trial/tutorial.rs SAVED).
SAVED = 15
STACK_ALIGN = 16


def _run(obs, vector):
    return next((t for t in obs.tutorial if t["vector"] == vector), None)


def frame_is_cpu_frame(obs):
    """The text: the pointer the function gets is the CPU's frame (its RIP field is the
    interrupted RIP)."""
    t = _run(obs, PF)
    if not t or not t["calls"]:
        return UNMEASURED, ["the stub's function was not called on #PF"]
    real_rip = t["slot16"]
    is_frame = t["read_rip"] == real_rip
    return (HOLDS if is_frame else REFUTED), [
        f"on #PF the function's frame.rip read {t['read_rip']:#x} = saved RAX ({t['saved_rax']:#x}), frame.cs the "
        f"saved RBX; the CPU's RIP {real_rip:#x} is {SAVED + 1} slots up, above the error code {t['slot15']:#x}"]


def call_aligned(obs):
    """The stub calls the function with RSP a multiple of 16 (System V: RSP+8 is one at the
    function's entry)."""
    runs = [t for t in (_run(obs, PF), _run(obs, UD)) if t]
    if len(runs) < 2:
        return UNMEASURED, ["the tutorial trial gave too few lines"]
    off = {t["vector"]: t["call_rsp"] % STACK_ALIGN for t in runs}
    return (HOLDS if not any(off.values()) else REFUTED), [
        ", ".join(f"{mnemonic(v)}: RSP at the call {t['call_rsp']:#x} ({off[v]} mod 16)" for v, t in
                  ((t["vector"], t) for t in runs))
        + "; CPU frame 40 bytes + error code 8 + 15 pushes 120 = 8 mod 16 with an error code"]


def pf_round_trip(obs):
    """On #PF (which pushes the error code that `add rsp, 8` removes) the stub returns to the
    faulting instruction with the registers intact."""
    t = _run(obs, PF)
    if not t:
        return UNMEASURED, []
    ok = t["returned"] == 1 and t["rax_after"] == t["saved_rax"] and t["rbx_after"] == t["saved_rbx"]
    return (HOLDS if ok else REFUTED), [
        f"#PF at {t['fault_at']:#x}: the function mapped the page, iretq retried it, returned={t['returned']}, "
        f"RAX {t['rax_after']:#x} RBX {t['rbx_after']:#x} after"]


def any_vector_returns(obs):
    """The text: the stub resumes the interrupted code as if nothing happened (whatever the
    vector)."""
    t = _run(obs, UD)
    if not t:
        return UNMEASURED, []
    ok = t["returned"] == 1
    e = [f"#UD (no error code): add rsp, 8 dropped RIP {t['slot15']:#x}; iretq took RIP={t['slot16']:#x} "
         f"(the saved CS) and faulted: {mnemonic(t['then_vector']) if t['then_vector'] >= 0 else 'nothing'}"
         f"({t['then_error']:#x}) at {t['then_rip']:#x} (the stub's iretq {t['iretq_at']:#x})"]
    if not ok and not (t["then_vector"] == GP and t["then_rip"] == t["iretq_at"]):
        return REFUTED, e + ["the return failed some other way"]
    return (HOLDS if ok else REFUTED), e
