"""Frame checks on observations recorded from real fires (QEMU 7.2, TCG): each passes on the
recording and FAILs when one fact in it is made wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lab.checks.base import Verdict
from lab.checks.frame import OUTCOME_DEVIATION, OUTCOME_FAIL, OUTCOME_PASS, outcome, run
from lab.experiments.fire import FireObservation
from lab.scenarios.exceptions import get
from lab.x86.frames import RFLAGS_CF, RFLAGS_IF

RECORDED = json.loads((Path(__file__).parent / "data" / "fire_observations_tcg.json").read_text())


def observation(key: str, mutate=None) -> tuple[FireObservation, object]:
    data = copy.deepcopy(RECORDED[key])
    if mutate:
        mutate(data)
    return FireObservation(**data), get(data["scenario"])


def verdicts(key: str, mutate=None) -> dict[str, Verdict]:
    obs, s = observation(key, mutate)
    return {c.id: c.verdict for c in run(obs, s)}


@pytest.mark.parametrize("key", [k for k in RECORDED if not k.startswith("ss-noncanonical")])
def test_recorded_fires_pass(key):
    obs, s = observation(key)
    checks = run(obs, s)
    assert not [c for c in checks if c.verdict is Verdict.FAIL], [c for c in checks if c.verdict is Verdict.FAIL]
    assert outcome(obs, s, checks)[0] == OUTCOME_PASS


def _slot(name):
    """Index of a frame slot in the recorded pf-write/stub stack (error code first)."""
    return {"error": 0, "rip": 1, "cs": 2, "rflags": 3, "rsp": 4, "ss": 5}[name]


def _set(path, fn):
    def mutate(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = fn(target[path[-1]])
    return mutate


def _guest_records(d: dict) -> list[dict]:
    """The kernel's record of the recorded fire, as the in-guest observer would make it."""
    e, dv = d["entry"], d["delivered"]
    return [{"seq": 1, "vector": dv["vector"], "style": dv["style"], "error_code": dv["error_code"],
             "entry_rsp": e["rsp"], "words": list(e["stack"]), "rflags": e["rflags"], "cr2": e["cr2"],
             "plant": {**{k: d["before"][k] for k in ("rsp", "rflags", "cs", "ss")}, "fire": 1}}]


def _guest_word_altered(d: dict) -> None:
    d["guest"] = _guest_records(d)
    d["guest"][0]["words"][_slot("rip")] ^= 0x10


def test_agreeing_guest_records_pass():
    assert verdicts(PF, lambda d: d.update(guest=_guest_records(d)))["fire.observers-agree"] is Verdict.PASS


def _trap_frame_read(shift: int = 0):
    """The recorded pf-write/stub fire as trap_dispatch reads it (TrapFrame: error code at 128,
    the CPU's frame from 136), its pointer moved by `shift` bytes: a stub that pushed one word
    more or fewer than the type says."""
    def mutate(d):
        rsp, stack = d["entry"]["rsp"], d["entry"]["stack"]
        pointer = rsp - 128 + shift
        words = ("error_code", "rip", "cs", "rflags", "rsp", "ss")
        memory = {rsp + 8 * i: v for i, v in enumerate(stack)}
        d["frame_type"] = {
            "reader": {"function": "trap_dispatch", "address": 0x10F5F0, "param": "frame", "type": "TrapFrame",
                       "by_value": False, "interrupt_abi": False},
            "pointer": pointer, "base": rsp + 8, "entry_rsp": rsp, "steps": 20, "pc": 0x10F5F0,
            "members": [{"path": ("" if w == "error_code" else "iret.") + w, "offset": 128 + 8 * i, "size": 8,
                         "word": w, "address": pointer + 128 + 8 * i, "value": memory.get(pointer + 128 + 8 * i, 0),
                         "error": None} for i, w in enumerate(words)]}
    return mutate


def test_a_trap_frame_read_where_the_cpu_pushed_passes():
    assert verdicts(PF, _trap_frame_read())["fire.frame-type"] is Verdict.PASS


PF = "pf-write/stub"
WRONG = [
    ("frame-type-one-word-low", PF, _trap_frame_read(-8), "fire.frame-type"),
    ("guest-record-disagrees", PF, _guest_word_altered, "fire.observers-agree"),
    ("other-vector-delivered", PF, _set(("delivered", "vector"), lambda v: 13), "fire.vector"),
    ("nothing-delivered", PF, lambda d: d.update(delivered=None, entry=None, trap_frame=None), "fire.vector"),
    ("cs-slot-shifted", PF, _set(("entry", "stack", _slot("cs")), lambda v: 0x18), "fire.frame-layout"),
    ("entry-rsp-off-by-8", PF, _set(("entry", "rsp"), lambda v: v + 8), "fire.alignment"),
    ("ist-top-wrong", "nmi/stub", _set(("ist_top",), lambda v: v - 16), "fire.alignment"),
    ("rip-is-next-instruction", PF, _set(("entry", "stack", _slot("rip")), lambda v: v + 1), "fire.rip"),
    ("trap-rip-is-the-int3", "bp/x86-interrupt", _set(("entry", "stack", 0), lambda v: v - 1), "fire.rip"),
    ("nmi-rip-outside-loop", "nmi/stub", _set(("entry", "stack", 0), lambda v: 0x1000), "fire.rip"),
    ("ss-slot-wrong", PF, _set(("entry", "stack", _slot("ss")), lambda v: 0x18), "fire.cs-ss"),
    ("saved-rsp-aligned", PF, _set(("entry", "stack", _slot("rsp")), lambda v: v & ~0xF), "fire.rsp"),
    ("rflags-cf-flipped", PF, _set(("entry", "stack", _slot("rflags")), lambda v: v ^ RFLAGS_CF), "fire.rflags"),
    ("tf-missing-after-popf", "db-tf/stub", _set(("entry", "stack", 2), lambda v: v & ~0x100), "fire.rflags"),
    ("if-set-in-interrupt-gate", PF, _set(("entry", "rflags"), lambda v: v | RFLAGS_IF), "fire.if"),
    ("if-cleared-in-trap-gate", "bp/x86-interrupt", _set(("entry", "rflags"), lambda v: v & ~RFLAGS_IF), "fire.if"),
    ("error-code-missing-w", PF, _set(("entry", "stack", _slot("error")), lambda v: v & ~2), "fire.error-code"),
    ("error-code-pushed-for-de", "de/x86-interrupt", _set(("delivered", "error_code"), lambda v: 0), "fire.error-code"),
    ("cr2-other-page", PF, _set(("entry", "cr2"), lambda v: v + 0x1000), "fire.cr2"),
    # CR2 of a fire that is not a #PF: written by it (QEMU 10.0.2's non-canonical #GP) is a FAIL.
    ("cr2-written-by-de", "de/x86-interrupt",
     lambda d: (d["before"].update(cr2=0xC2_1234_5000), d["entry"].update(cr2=0x8000_0000_0000_0000)), "fire.cr2"),
    ("trap-frame-rbx-clobbered", PF, _set(("trap_frame", "rbx"), lambda v: v ^ 1), "fire.trap-frame"),
    ("no-dummy-error-code", "nmi/stub", _set(("trap_frame", "error_code"), lambda v: 0xDEAD), "fire.trap-frame"),
    ("resume-r12-clobbered", PF, _set(("after", "r12"), lambda v: v + 1), "fire.resume"),
    ("resume-rsp-moved", "de/x86-interrupt", _set(("after", "rsp"), lambda v: v - 8), "fire.resume"),
    ("no-log-line", PF, lambda d: d.update(qemu_log=[]), "fire.qemu-log"),
]


@pytest.mark.parametrize("case, key, mutate, check", WRONG, ids=[w[0] for w in WRONG])
def test_wrong_observation_fails_its_check(case, key, mutate, check):
    assert verdicts(key, mutate)[check] is Verdict.FAIL


def test_every_frame_check_has_a_failing_case():
    obs, s = observation(PF)
    assert {c.id for c in run(obs, s)} == {w[3] for w in WRONG}


def test_recorded_deviation_is_reported_as_deviation():
    obs, s = observation("ss-noncanonical/x86-interrupt")
    checks = run(obs, s)
    assert {c.id for c in checks if c.verdict is Verdict.FAIL} == {"fire.vector"}
    result, note = outcome(obs, s, checks)
    assert result == OUTCOME_DEVIATION and "QEMU 7.2.22 TCG" in note and "get_physical_address" in note


def test_a_deviation_on_another_accelerator_is_a_failure():
    obs, s = observation("ss-noncanonical/x86-interrupt", _set(("accel",), lambda v: "kvm"))
    assert outcome(obs, s, run(obs, s))[0] == OUTCOME_FAIL


def test_a_different_wrong_vector_is_a_failure_not_a_deviation():
    obs, s = observation("ss-noncanonical/x86-interrupt", _set(("delivered", "vector"), lambda v: 14))
    assert outcome(obs, s, run(obs, s))[0] == OUTCOME_FAIL
