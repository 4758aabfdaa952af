"""Judges of the seed claims that weigh `lab fire`'s evidence (Evidence.fires) in ways the 33
general claims do not."""

from __future__ import annotations

from lab.checks.claim_evidence import HOLDS, REFUTED, UNMEASURED, _fires, _name
from lab.x86.vectors import pushes_error_code

STACK_ALIGN = 16


def error_code_breaks_alignment(ev):
    """The CPU aligns the frame's base to 16; the 40-byte frame leaves the handler's RSP at 8
    mod 16, where a System V function's entry has it (its return address just pushed); an error
    code moves it to 0 mod 16, which a compiled handler has to correct."""
    fires = [r for r in _fires(ev) if not r.observation.gate["ist"] and not r.scenario.software]
    with_code = [r for r in fires if pushes_error_code(r.observation.vector)]
    without = [r for r in fires if not pushes_error_code(r.observation.vector)]
    if not with_code or not without:
        return UNMEASURED, ["need exceptions with and without an error code"]
    off = lambda rs, want: [r for r in rs if r.observation.entry["rsp"] % STACK_ALIGN != want]
    bad = off(with_code, 0) + off(without, 8)
    e = [f"handler RSP 8 mod 16 (as at a function's entry) in {len(without) - len(off(without, 8))} of {len(without)} "
         f"exceptions without an error code, 0 mod 16 in {len(with_code) - len(off(with_code, 0))} of "
         f"{len(with_code)} with one (e.g. {_name(with_code[0])} {with_code[0].observation.entry['rsp']:#x})"]
    return (REFUTED if bad else HOLDS), e + ([f"otherwise: {', '.join(_name(r) for r in bad[:4])}"] if bad else [])
