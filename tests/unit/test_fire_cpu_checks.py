"""The per-CPU checks of a fire on an AP (lab/checks/fire_cpu.py), on observations recorded
from real fires (`lab fire nmi --cpus 3 --cpu 2 --style both`, gdb and guest observers, QEMU
7.2, TCG): each passes on the recording and FAILs when one fact in it is made wrong (an RSP on
another CPU's NMI stack, two CPUs sharing one, another CPU's NMI count moving, another CPU
stopping in the handler or recording the NMI). The guest recordings' IST top is the one the
kernel read through CPU 2's own TR (kernel/src/observer.rs), so fire.alignment passes on them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lab.checks import fire_cpu
from lab.checks.base import Verdict
from lab.checks.frame import OUTCOME_PASS, outcome, run
from lab.experiments.fire import FireObservation
from lab.scenarios.exceptions import get

RECORDED = json.loads((Path(__file__).parent / "data" / "fire_observations_ap_nmi_tcg.json").read_text())
BOOT_CPU = json.loads((Path(__file__).parent / "data" / "fire_observations_tcg.json").read_text())
FRAME = 40  # SS, RSP, RFLAGS, CS, RIP


def observation(key: str, mutate=None, recorded=RECORDED) -> tuple[FireObservation, object]:
    data = copy.deepcopy(recorded[key])
    if mutate:
        mutate(data)
    return FireObservation(**data), get(data["scenario"])


def checks(key: str, mutate=None) -> dict:
    obs, s = observation(key, mutate)
    return {c.id: c for c in run(obs, s)}


@pytest.mark.parametrize("key", list(RECORDED))
def test_recorded_ap_nmi_fires_pass(key):
    obs, s = observation(key)
    assert obs.cpu == 2 and obs.nmi_source == "ipi"
    got = run(obs, s)
    assert not [c for c in got if c.verdict is Verdict.FAIL], [(c.id, c.evidence) for c in got if c.verdict is Verdict.FAIL]
    assert {c.id: c.verdict for c in got}["fire.own-ist"] is Verdict.PASS
    assert {c.id: c.verdict for c in got}["fire.nmi-target-only"] is Verdict.PASS
    assert outcome(obs, s, got)[0] == OUTCOME_PASS


def _on_cpu_1s_stack(d):
    """The handler ran on CPU 1's NMI stack: entry RSP (and the frame address) CPU 1's top - 40."""
    d["entry"]["rsp"] = d["ist_tops"][1] - FRAME


def _shared_with_cpu_1(d):
    d["ist_tops"][1] = d["ist_tops"][2]


def _cpu_1_took_one(d):
    d["nmis_after"][1] += 1


def _boot_cpu_stopped(d):
    d["elsewhere"] = [{"cpu": 0, "what": "stopped at the entry breakpoint"}]


WRONG = [
    ("rsp-on-cpu-1s-nmi-stack", _on_cpu_1s_stack, "fire.own-ist", "CPU 1's stack"),
    ("ist-shared-with-cpu-1", _shared_with_cpu_1, "fire.own-ist", "share the stack"),
    ("no-tss-on-cpu-2", lambda d: d["ist_tops"].__setitem__(2, None), "fire.own-ist", "no TSS"),
    ("cpu-1-took-an-nmi", _cpu_1_took_one, "fire.nmi-target-only", "CPU 1 took 1 NMI"),
    ("boot-cpu-in-the-handler", _boot_cpu_stopped, "fire.nmi-target-only", "CPU 0 stopped at the entry"),
    ("boot-cpu-recorded-an-nmi", lambda d: d.update(elsewhere=[{"cpu": 0, "what": "recorded vector 2"}]),
     "fire.nmi-target-only", "CPU 0 recorded vector 2"),
]


@pytest.mark.parametrize("case, mutate, check, says", WRONG, ids=[w[0] for w in WRONG])
@pytest.mark.parametrize("key", list(RECORDED))
def test_wrong_observation_fails_its_check(key, case, mutate, check, says):
    c = checks(key, mutate)[check]
    assert c.verdict is Verdict.FAIL and any(says in e for e in c.evidence), (c.verdict, c.evidence)


def test_the_frame_alignment_check_alone_does_not_name_whose_stack():
    """fire.alignment FAILs too (it compares with CPU 2's IST top), but only fire.own-ist says
    whose stack the handler ran on."""
    got = checks("nmi/x86-interrupt", _on_cpu_1s_stack)
    assert got["fire.alignment"].verdict is Verdict.FAIL
    assert not any("CPU 1" in e for e in got["fire.alignment"].evidence)


def test_every_per_cpu_check_has_a_failing_case():
    assert {c.__name__.replace("check_", "fire.").replace("_", "-") for c in fire_cpu.CHECKS} == {w[2] for w in WRONG}


def test_boot_cpu_fires_run_no_per_cpu_checks():
    obs, s = observation("nmi/stub", recorded=BOOT_CPU)
    assert obs.cpu == 0 and not any(c.id in ("fire.own-ist", "fire.nmi-target-only") for c in run(obs, s))


def test_an_injected_nmi_skips_the_target_only_check():
    got = checks("nmi/stub", lambda d: d.update(nmi_source="inject-nmi", nmis_before=None, nmis_after=None))
    assert got["fire.nmi-target-only"].verdict is Verdict.SKIP
    assert "every CPU" in got["fire.nmi-target-only"].evidence[0]
