"""Probe checks: each passes on a correct observation and FAILs on a wrong one."""

from __future__ import annotations

import dataclasses

import pytest

from lab.checks.base import Verdict
from lab.checks.probe import run
from lab.experiments.probe import HUNG, ProbeObservation
from lab.scenarios.probes import DOUBLE_FAULT_HALT, SURVIVES, TRIPLE_FAULT, get

GUARD = (0x122000, 0x123000)
RECURSE = (0x105990, 0x105a10)
IST_TOP = 0x137000
# A frame recorded at the #DF handler (values as the kernel printed them in a TCG run).
DF_STACK = [0, 0x1059BD, 0x8, 0x46, 0x122F20, 0x10]


def good(name: str) -> ProbeObservation:
    p = get(name)
    obs = ProbeObservation(name, "tcg", outcome=p.expected, chain=list(p.chain))
    if p.expected in (DOUBLE_FAULT_HALT, SURVIVES):
        obs.df_frame = {"rsp": IST_TOP - 48, "stack": list(DF_STACK)}
        obs.ist_top, obs.guard, obs.recurse = IST_TOP, GUARD, RECURSE
    if p.expected == SURVIVES:
        obs.after = "info version=0.1.0 boot=multiboot"
    return obs


def verdicts(name, **changes):
    obs = good(name)
    for k, v in changes.items():
        setattr(obs, k, v)
    return {c.id: c.verdict for c in run(obs, get(name))}


@pytest.mark.parametrize("name", ["double-fault", "control", "df-no-ist", "idt-limit0"])
def test_good_observations_pass(name):
    assert set(verdicts(name).values()) <= {Verdict.PASS, Verdict.SKIP}


def _frame(**slots):
    stack = list(DF_STACK)
    for i, v in slots.items():
        stack[int(i[1:])] = v
    return {"rsp": IST_TOP - 48, "stack": stack}


WRONG = [
    ("hung", "df-no-ist", dict(outcome=HUNG), "probe.outcome"),
    ("survived-a-triple-fault-probe", "idt-limit0", dict(outcome=SURVIVES), "probe.outcome"),
    ("double-fault-reset-instead", "double-fault", dict(outcome=TRIPLE_FAULT), "probe.outcome"),
    ("other-chain", "df-not-present", dict(chain=["#GP", "#GP", "#DF", "#GP", "triple fault"]), "probe.chain"),
    ("no-chain-logged", "df-no-ist", dict(chain=[]), "probe.chain"),
    ("df-error-code-not-0", "double-fault", dict(df_frame=_frame(s0=1)), "probe.df-error-code"),
    ("df-not-on-ist", "double-fault", dict(df_frame={"rsp": 0x122F00, "stack": list(DF_STACK)}), "probe.df-ist"),
    ("saved-rsp-far-above-guard", "double-fault", dict(df_frame=_frame(s4=0x130000)), "probe.df-saved-rsp"),
    ("saved-rsp-below-guard", "control", dict(df_frame=_frame(s4=GUARD[0] - 8)), "probe.df-saved-rsp"),
    ("saved-rip-elsewhere", "double-fault", dict(df_frame=_frame(s1=0x101000)), "probe.df-saved-rip"),
    ("shell-silent", "control", dict(after=None), "probe.shell"),
]


@pytest.mark.parametrize("case, name, changes, check", WRONG, ids=[w[0] for w in WRONG])
def test_wrong_observation_fails(case, name, changes, check):
    assert verdicts(name, **changes)[check] is Verdict.FAIL


def test_every_probe_check_has_a_failing_case():
    ids = {c.id for c in run(good("control"), get("control"))}
    assert ids == {w[3] for w in WRONG}


def test_chain_unavailable_off_tcg_is_a_skip_not_a_pass():
    obs = dataclasses.replace(good("df-no-ist"), profile="kvm", chain=None)
    assert {c.id: c.verdict for c in run(obs, get("df-no-ist"))}["probe.chain"] is Verdict.SKIP
