"""Checks on injected exceptions (lab/experiments/inject.py), on hand-built observations: a correct one
passes every check, and each doctored one fails the check it should."""

from __future__ import annotations

import dataclasses

import pytest

from lab.checks.base import Verdict
from lab.checks.inject import CHECKS, run
from lab.errors import UserError
from lab.scenarios.injections import INJECTIONS, expected_error_code, get, selected
from lab.experiments.inject import InjectObservation

SITE, RSP, CS, SS, RFLAGS = 0xFFFF_FFFF_8100_0000, 0xFFFF_C900_0001_3E58, 0x10, 0x18, 0x46
IST_TOP = 0xFFFF_FE00_0000_E000


def good(name: str) -> InjectObservation:
    """What the CPU does by the manual for injection `name` at SITE with RSP (8 mod 16)."""
    inj = get(name)
    ist = 2 if name == "nmi" else 0
    code = expected_error_code(inj)
    frame = ([code] if code is not None else []) + [SITE + inj.rip_offset, CS, RFLAGS, RSP, SS]
    base = IST_TOP if ist else RSP & ~0xF
    target = {"gp": 0x8000_0000_0000_0000, "pf": 0x1000}.get(name)
    entry_rsp = base - 8 * len(frame)
    return InjectObservation(
        name, inj.vector, SITE, {"rip": SITE, "rsp": RSP, "eflags": RFLAGS | 0x200, "cs": CS, "ss": SS},
        RFLAGS, {"offset": 0xFFFF_FFFF_8160_0000, "ist": ist, "type": "interrupt"}, IST_TOP if ist else None,
        target=target, stopped_at=0xFFFF_FFFF_8160_0000, entered=inj.vector, entry_rsp=base - 8 * len(frame),
        frame=frame, cr2=target if name == "pf" else 0, frame_type=frame_read(entry_rsp, frame, code is not None))


def frame_read(entry_rsp: int, frame: list[int], error_code: bool, shift: int = 0) -> dict:
    """An interrupt-ABI handler reading InterruptFrame at the CPU's frame (moved by `shift`)."""
    base = entry_rsp + (8 if error_code else 0)
    memory = {entry_rsp + 8 * i: v for i, v in enumerate(frame)}
    members = [{"path": w, "offset": 8 * i, "size": 8, "word": w, "address": base + shift + 8 * i,
                "value": memory.get(base + shift + 8 * i), "error": None}
               for i, w in enumerate(("rip", "cs", "rflags", "rsp", "ss"))]
    return {"reader": {"function": "isr", "address": 0xFFFF_FFFF_8160_0000, "param": "frame",
                       "type": "InterruptFrame", "by_value": True, "interrupt_abi": True},
            "pointer": base + shift, "base": base, "entry_rsp": entry_rsp, "steps": 0, "pc": 0, "members": members}


@pytest.mark.parametrize("name", [i.name for i in INJECTIONS])
def test_the_manual_passes(name):
    checks = run(good(name), get(name))
    assert [c.id for c in checks if c.verdict is not Verdict.PASS] == [], [c.evidence for c in checks]


def _swap(obs, index, value):
    frame = list(obs.frame)
    frame[index] = value
    return dataclasses.replace(obs, frame=frame)


WRONG = [
    ("another-handler", "ud", lambda o: dataclasses.replace(o, entered=13), "inject.vector"),
    ("no-handler", "ud", lambda o: dataclasses.replace(o, entered=None, stopped_at=None, frame=[]), "inject.vector"),
    ("fault-rip-after", "ud", lambda o: _swap(o, 0, SITE + 2), "inject.rip"),
    ("trap-rip-at", "bp", lambda o: _swap(o, 0, SITE), "inject.rip"),
    ("ss-not-pushed-as-is", "de", lambda o: _swap(o, 4, 0), "inject.cs-ss-rsp"),
    ("rsp-pushed-aligned", "de", lambda o: _swap(o, 3, RSP & ~0xF), "inject.cs-ss-rsp"),
    ("if-still-set", "ud", lambda o: _swap(o, 2, RFLAGS | 0x200), "inject.rflags"),
    ("gp-error-code", "gp", lambda o: _swap(o, 0, 0x10), "inject.error-code"),
    ("pf-cr2", "pf", lambda o: dataclasses.replace(o, cr2=0x2000), "inject.error-code"),
    ("no-alignment", "ud", lambda o: dataclasses.replace(o, entry_rsp=RSP - 40), "inject.entry-rsp"),
    ("ist-not-used", "nmi", lambda o: dataclasses.replace(o, entry_rsp=(RSP & ~0xF) - 40), "inject.entry-rsp"),
    ("frame-type-misses-the-error-code", "gp",
     lambda o: dataclasses.replace(o, frame_type=frame_read(o.entry_rsp, o.frame, True, shift=-8)), "inject.frame-type"),
    ("not-restored", "pf", lambda o: dataclasses.replace(o, restored=["rip 0x0 != 0xffffffff81000000"]), "inject.restored"),
]


@pytest.mark.parametrize("case, name, doctor, check", WRONG, ids=[w[0] for w in WRONG])
def test_a_wrong_observation_fails_its_check(case, name, doctor, check):
    checks = {c.id: c for c in run(doctor(good(name)), get(name))}
    assert checks[check].verdict is Verdict.FAIL, (case, checks[check].evidence)


def test_every_check_has_a_failing_case():
    assert {w[3] for w in WRONG} == {c(good("ud"), get("ud")).id for c in CHECKS}


def test_rf_in_the_saved_rflags_is_not_a_failure():
    obs = _swap(good("gp"), 3, RFLAGS | 1 << 16)
    assert {c.id: c.verdict for c in run(obs, get("gp"))}["inject.rflags"] is Verdict.PASS


def test_int_n_pushes_no_error_code_even_for_an_error_code_vector():
    assert expected_error_code(get("nmi")) is None
    assert expected_error_code(get("gp")) == 0


def test_names():
    assert [i.name for i in selected(["all"])] == [i.name for i in INJECTIONS]
    with pytest.raises(UserError, match="unknown injection 'df'"):
        selected(["ud", "df"])
