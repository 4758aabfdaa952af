"""Claims are decided by the evidence, not stored: from observations recorded on the real
kernel each claim gets a verdict, and altering the evidence changes it."""

from __future__ import annotations

import copy

import pytest

from lab.checks.ring3 import run as ring3_checks
from lab.checks.tasks import run as tasks_checks
from lab.checks.claims import CLAIMS, HOLDS, REFUTED, UNMEASURED, Evidence, evaluate
from lab.experiments.ring3 import Ring3Interrupt, Ring3Observation, SyscallObservation, UserFault
from lab.experiments.tasks import SwitchTrace, TasksObservation, TaskView
from recorded import RING3, TASKS, fires


def tasks(mutate=None):
    d = copy.deepcopy(TASKS)
    if mutate:
        mutate(d)
    o = TasksObservation(d["profile"], d["layouts"], [TaskView(**t) for t in d["tasks"]], d["current"], d["rsp0"],
                         [SwitchTrace(**{**t, "steps": [tuple(x) for x in t["steps"]]}) for t in d["traces"]], d["rates"])
    return o, tasks_checks(o)


def ring3(mutate=None):
    d = copy.deepcopy(RING3)
    if mutate:
        mutate(d)
    o = Ring3Observation(d["accel"], SyscallObservation(**d["syscall"]), Ring3Interrupt(**d["interrupt"]),
                         [UserFault(**f) for f in d["faults"]], d["bench"], d["seconds"])
    return (o, *ring3_checks(o))


def verdict(claim_id, ev):
    return next(r for r in evaluate(ev) if r["id"] == claim_id)["verdict"]


def test_there_are_at_least_25_claims_with_unique_ids():
    assert len(CLAIMS) >= 25 and len({c.id for c in CLAIMS}) == len(CLAIMS)


def test_without_evidence_nothing_is_decided():
    assert {r["verdict"] for r in evaluate(Evidence())} == {UNMEASURED}


@pytest.mark.parametrize("claim, expected, mutate, flipped", [
    # SS/RSP pushed at the same privilege level refutes "only on a privilege change"...
    ("frame-ss-rsp", REFUTED,
     lambda k, d: d["entry"] and d["entry"]["stack"].__setitem__(4 if d["entry"]["stack"][0] < 0x100 else 3, 0),
     HOLDS),
    # ... iretq restoring the unaligned RSP refutes "pops RSP only on a privilege change" ...
    ("iretq-rsp", REFUTED, lambda k, d: d["after"] and d["after"].update(rsp=d["before"]["rsp"] // 16 * 16), HOLDS),
    # ... and a frame big enough for the GPRs would mean the CPU saved them.
    ("gprs-saved", REFUTED, lambda k, d: d["entry"] and d["entry"].update(rsp=d["entry"]["rsp"] - 120), HOLDS),
    ("trap-rip", HOLDS, lambda k, d: k.startswith("bp") and d["entry"]["stack"].__setitem__(0, d["entry"]["stack"][0] - 1),
     REFUTED),
    ("gate-if", HOLDS, lambda k, d: k.startswith("bp") and d["entry"].update(rflags=d["entry"]["rflags"] & ~0x200),
     REFUTED),
])
def test_fire_claims_follow_the_evidence(claim, expected, mutate, flipped):
    assert verdict(claim, Evidence(fires=fires())) == expected
    assert verdict(claim, Evidence(fires=fires(mutate))) == flipped


def test_switch_claim_follows_the_evidence():
    assert verdict("one-rsp-change", Evidence(tasks=tasks())) == HOLDS

    def second_jump(d):
        t = d["traces"][0]
        i = next(i for i, (pc, _) in enumerate(t["steps"]) if pc == t["stack_pc"])
        t["steps"][i + 3][1] += 0x40
    assert verdict("one-rsp-change", Evidence(tasks=tasks(second_jump))) == REFUTED


def test_cr3_claim_follows_the_evidence():
    assert verdict("cr3-switch", Evidence(tasks=tasks())) == HOLDS
    assert verdict("cr3-switch", Evidence(tasks=tasks(lambda d: d["traces"][0].update(cr3_after=0x1000)))) == REFUTED


def test_syscall_claims_follow_the_evidence():
    assert verdict("swapgs", Evidence(ring3=ring3())) == HOLDS
    no_swap = lambda d: d["syscall"]["steps"]["lab_syscall_after_swapgs"].update(gs_base=0)
    assert verdict("swapgs", Evidence(ring3=ring3(no_swap))) == REFUTED
    assert verdict("syscall-rcx-r11", Evidence(ring3=ring3())) == HOLDS
    stack_switched = lambda d: d["syscall"]["steps"]["lab_syscall_entry"].update(rsp=0x165000)
    assert verdict("syscall-rcx-r11", Evidence(ring3=ring3(stack_switched))) == REFUTED


def test_error_code_vectors_names_the_vectors_not_raised_ts_among_them():
    ev = Evidence()
    ev.fires = fires()
    claim = next(r for r in evaluate(ev) if r["id"] == "error-code-vectors")
    unraised = claim["evidence"][-1]
    assert "10" in unraised.split("(")[1] and "17" in unraised  # #TS and #AC: no fire raises them
    ev.fires = fires(lambda key, raw: raw["delivered"].update(vector=10) if key.startswith("pf-write") else None)
    claim = next(r for r in evaluate(ev) if r["id"] == "error-code-vectors")
    assert "(10," not in claim["evidence"][-1]  # measured now: no longer listed as not raised


def test_a_judge_that_raises_is_a_lab_error_naming_its_claim_and_empty_evidence_is_dropped():
    """Both claim tables (the general claims and the tutorial texts') decide through `judged`."""
    from types import SimpleNamespace

    from lab.checks.claim_evidence import judged
    from lab.errors import LabError

    def broken(ev):
        return ev.fires[0]  # no fires: IndexError, a bug in the judge, not missing evidence

    with pytest.raises(LabError, match=r"claim c1: its judge failed: IndexError"):
        judged(SimpleNamespace(id="c1", judge=broken), Evidence())
    ok = SimpleNamespace(id="c2", judge=lambda ev: (HOLDS, ["seen", "", None]))
    assert judged(ok, Evidence()) == (HOLDS, ["seen"])
