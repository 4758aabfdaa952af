"""The per-CPU switch checks (lab/checks/cpu_switch.py) on snapshots shaped as `lab tasks --cpus 4
--cpu 1` reads them: a switch on CPU 1 that changes CPU 1's RSP0 and current only PASSes; a
switch that also changes CPU 0's RSP0 (the boot CPU's globals written, as a rip-relative
`lab_switch_to` would), leaves CPU 1's current unchanged, leaves its RSP0 on the old stack, or
changes a GS base each FAIL the check that names it."""

from __future__ import annotations

import dataclasses

import pytest

from lab.checks import cpu_switch
from lab.checks.base import Verdict
from lab.experiments.cpu_switch import CpuSnap, CpuSwitchObservation, SwitchStep

IDLE1, WORKER1 = 0x137000, 0x137048
BEFORE = [CpuSnap(0, 0x15F040, 0x12C328, 0x181000, 0x133178, "shell", 0x171000),
          CpuSnap(1, 0x12D240, 0x129004, 0x1008000, IDLE1, "idle1", 0x1008000),
          CpuSnap(2, 0x12D280, 0x12906C, 0x101E000, 0x137090, "idle2", 0x101E000),
          CpuSnap(3, 0x12D2C0, 0x1290D4, 0x1034000, 0x137120, "idle3", 0x1034000)]
GOOD_AFTER = {1: {"rsp0": 0x1016000, "current": WORKER1, "task": "worker1", "kstack_top": 0x1016000}}
LINE = {"cpu": "1", "from": "idle1", "to": "worker1", "rsp0": "0x1016000", "current": hex(WORKER1)}


def obs(changes: dict[int, dict], line: dict = LINE) -> CpuSwitchObservation:
    after = [dataclasses.replace(s, **changes.get(s.index, {})) for s in BEFORE]
    return CpuSwitchObservation("tcg", 4, 1, [SwitchStep(1, BEFORE, after, dict(line))])


def verdicts(o) -> dict:
    return {c.id: c for c in cpu_switch.run(o)}


def test_a_switch_on_cpu1_that_changes_cpu1_only_passes():
    found = verdicts(obs(GOOD_AFTER))
    assert set(found) == {"cpu-switch.current", "cpu-switch.rsp0", "cpu-switch.others", "cpu-switch.gs-base"}
    assert all(c.verdict is Verdict.PASS for c in found.values()), {i: c.evidence for i, c in found.items()}
    assert "idle1 -> worker1" in found["cpu-switch.current"].evidence[0]


BROKEN = [
    ("CPU 0's RSP0 changed too", {**GOOD_AFTER, 0: {"rsp0": 0x1016000}}, "cpu-switch.others",
     "CPU 0's RSP0 changed 0x181000 -> 0x1016000"),
    ("CPU 2's current changed too", {**GOOD_AFTER, 2: {"current": WORKER1}}, "cpu-switch.others",
     "CPU 2's current changed 0x137090 -> 0x137048"),
    ("CPU 1's current unchanged", {1: {"rsp0": 0x1016000}}, "cpu-switch.current", "CPU 1's current stayed 0x137000"),
    ("CPU 1's RSP0 left on the old stack", {1: {**GOOD_AFTER[1], "rsp0": 0x1008000}}, "cpu-switch.rsp0",
     "CPU 1's RSP0 0x1008000 is not the new task's (worker1) kstack_top 0x1016000"),
    ("a GS base changed (on the switching CPU)", {1: {**GOOD_AFTER[1], "gs_base": 0x12D280}}, "cpu-switch.gs-base",
     "CPU 1's GS base changed 0x12d240 -> 0x12d280"),
    ("a GS base changed (on another CPU)", {**GOOD_AFTER, 3: {"gs_base": 0x12D240}}, "cpu-switch.gs-base",
     "CPU 3's GS base changed 0x12d2c0 -> 0x12d240"),
]


@pytest.mark.parametrize("what, changes, check_id, evidence", BROKEN, ids=[b[0] for b in BROKEN])
def test_each_wrong_switch_fails(what, changes, check_id, evidence):
    found = verdicts(obs(changes))
    assert found[check_id].verdict is Verdict.FAIL, (what, found[check_id].evidence)
    assert any(evidence in line for line in found[check_id].evidence), found[check_id].evidence


def test_the_shell_and_gdb_disagreeing_on_current_fails():
    found = verdicts(obs(GOOD_AFTER, {**LINE, "current": hex(IDLE1)}))
    assert found["cpu-switch.current"].verdict is Verdict.FAIL
    assert "the shell reported current=0x137000, gdb read 0x137048" in found["cpu-switch.current"].evidence[-1]


def test_a_cpu_missing_after_the_switch_fails():
    o = obs(GOOD_AFTER)
    o.steps[0].after = o.steps[0].after[:3]
    assert verdicts(o)["cpu-switch.others"].verdict is Verdict.FAIL


def test_no_switch_observed_fails():
    assert [c.verdict for c in cpu_switch.run(CpuSwitchObservation("tcg", 4, 1, []))] == [Verdict.FAIL]


# -- the claim (lab/checks/claims.py switch-keeps-gs): change the evidence, the verdict follows

def _claim(o) -> str:
    from lab.checks.claims import CLAIMS, Evidence

    ev = Evidence()
    if o is not None:
        ev.cpu_switch = (o, cpu_switch.run(o))
    return next(c for c in CLAIMS if c.id == "switch-keeps-gs").judge(ev)[0]


def test_the_gs_base_claim_follows_the_measurement():
    from lab.checks.claims import HOLDS, REFUTED, UNMEASURED

    assert _claim(obs(GOOD_AFTER)) == HOLDS
    assert _claim(obs({1: {**GOOD_AFTER[1], "gs_base": 0x12D280}})) == REFUTED  # the "switch" moved GS
    assert _claim(obs({1: {"rsp0": 0x1016000}})) == UNMEASURED  # current never moved: nothing switched
    assert _claim(CpuSwitchObservation("tcg", 4, 1, [])) == UNMEASURED
    assert _claim(None) == UNMEASURED
