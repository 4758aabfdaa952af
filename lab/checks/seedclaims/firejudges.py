"""Judges of the seed claims that weigh `lab fire`'s evidence (Evidence.fires) in ways the 33
general claims do not."""

from __future__ import annotations

from lab.checks.claim_evidence import HOLDS, REFUTED, UNMEASURED, _fires, _name
from lab.x86.vectors import pushes_error_code

STACK_ALIGN = 16


def error_code_breaks_alignment(ev):
    """The CPU aligns the frame, and an error code leaves the handler's RSP 8 off a 16-byte
    boundary; without one it is aligned (no IST: the frame starts below the aligned RSP)."""
    fires = [r for r in _fires(ev) if not r.observation.gate["ist"] and not r.scenario.software]
    with_code = [r for r in fires if pushes_error_code(r.observation.vector)]
    without = [r for r in fires if not pushes_error_code(r.observation.vector)]
    if not with_code or not without:
        return UNMEASURED, ["need exceptions with and without an error code"]
    off = lambda rs, want: [r for r in rs if r.observation.entry["rsp"] % STACK_ALIGN != want]
    bad = off(with_code, 8) + off(without, 0)
    e = [f"handler RSP 8 mod 16 in {len(with_code) - len(off(with_code, 8))} of {len(with_code)} exceptions with an "
         f"error code (e.g. {_name(with_code[0])} {with_code[0].observation.entry['rsp']:#x}), 0 mod 16 in "
         f"{len(without) - len(off(without, 0))} of {len(without)} without"]
    return (REFUTED if bad else HOLDS), e + ([f"otherwise: {', '.join(_name(r) for r in bad[:4])}"] if bad else [])
