"""Checks on a fatal-path experiment (lab/experiments/probe.py) against its expected outcome and, for
the double fault, the frame the CPU pushed on the IST stack (SDM vol. 3A §6.15, Interrupt 8:
#DF is an abort with error code 0; §6.14.5 IST)."""

from __future__ import annotations

from lab.checks.base import Check, Checks, Verdict, verdict
from lab.scenarios.probes import DOUBLE_FAULT_HALT, SURVIVES, Probe
from lab.x86.frames import ERROR_FRAME, decode_frame

TIER = "probe"
C = Checks(TIER)
#: How far above the guard page the saved RSP may be: one lab_recurse frame (256-byte buffer
#: plus saved registers); below the guard's top it may be anywhere in the guard page.
RECURSE_FRAME_MAX = 512






def check_outcome(obs, p: Probe) -> Check:
    return C.result("probe.outcome", f"outcome: {p.expected}", obs.outcome == p.expected,
              [f"observed: {obs.outcome}"] + obs.evidence[:3])


def check_chain(obs, p: Probe) -> Check:
    title = f"exception chain: {' -> '.join(p.chain)}"
    if obs.chain is None:
        return C.skip("probe.chain", title, "unavailable: only TCG writes exception logs")
    return C.result("probe.chain", title, obs.chain == list(p.chain),
              [f"observed: {' -> '.join(obs.chain) or '(nothing logged)'}"] + obs.last_state[:1])


def _df(obs) -> dict | None:
    """The #DF frame the CPU pushed (it always has an error code), decoded."""
    return None if obs.df_frame is None else decode_frame(obs.df_frame["stack"], has_error_code=True)


def check_df_error_code(obs, p):
    title = "#DF pushes error code 0"
    st = _df(obs)
    if st is None:
        return C.skip("probe.df-error-code", title, "the #DF handler was not reached")
    return C.result("probe.df-error-code", title, st["error_code"] == 0, [f"error code {st['error_code']:#x}"])


def check_df_ist(obs, p):
    title = "#DF runs on the IST stack the TSS names (RSP = IST top - 48)"
    if obs.df_frame is None or obs.ist_top is None:
        return C.skip("probe.df-ist", title, "the #DF handler was not reached, or its gate has no IST")
    rsp = obs.df_frame["rsp"]
    return C.result("probe.df-ist", title, rsp + ERROR_FRAME.size == obs.ist_top,
              [f"entry RSP {rsp:#x} + {ERROR_FRAME.size} = {rsp + ERROR_FRAME.size:#x}; IST top {obs.ist_top:#x}"])


def check_df_saved_rsp(obs, p):
    title = "saved RSP is at the guard page boundary"
    st = _df(obs)
    if st is None or obs.guard is None:
        return C.skip("probe.df-saved-rsp", title, "the #DF handler was not reached, or no BOOT_STACK symbol")
    lo, hi = obs.guard
    rsp = st["rsp"]
    ok = lo <= rsp <= hi + RECURSE_FRAME_MAX
    return C.result("probe.df-saved-rsp", title, ok,
              [f"saved RSP {rsp:#x}; guard page {lo:#x}..{hi:#x} (allowed up to {hi + RECURSE_FRAME_MAX:#x})"])


def check_df_saved_rip(obs, p):
    title = "saved RIP is inside the recursing function"
    st = _df(obs)
    if st is None or obs.recurse is None:
        return C.skip("probe.df-saved-rip", title, "the #DF handler was not reached, or no lab_recurse symbol")
    lo, hi = obs.recurse
    return C.result("probe.df-saved-rip", title, lo <= st["rip"] < hi,
              [f"saved RIP {st['rip']:#x}; lab_recurse {lo:#x}..{hi:#x}"])


def check_shell_alive(obs, p):
    title = "after the #DF the shell answers"
    if p.expected != SURVIVES:
        return C.skip("probe.shell", title, "not the control")
    return C.result("probe.shell", title, bool(obs.after and obs.after.startswith("info version=")),
              [obs.after or "no answer"])


CHECKS = (check_outcome, check_chain, check_df_error_code, check_df_ist, check_df_saved_rsp,
          check_df_saved_rip, check_shell_alive)


def run(obs, p: Probe) -> list[Check]:
    checks = [c(obs, p) for c in CHECKS]
    if p.expected not in (DOUBLE_FAULT_HALT, SURVIVES):
        checks = [c for c in checks if not c.id.startswith("probe.df-")]
    return checks
