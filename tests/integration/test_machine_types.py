"""The lab on other machine types than `pc`: q35 (ICH9) and microvm (no PCI, no firmware
option ROMs). Each must give the same verdicts as `pc` for what it can run; a recorded TCG
deviation is a deviation of the accelerator, whatever the profile is called."""

from __future__ import annotations

import pytest

from lab.host import profiles
from lab.checks.base import Verdict
from lab.checks.probe import run as probe_checks
from lab.runs.fire import fire_in_session
from lab.runs.inspect import inspect
from lab.machine.session import Session
from lab.experiments.probe import run_probe
from lab.scenarios.exceptions import get
from lab.scenarios.probes import CATALOG as PROBES

MACHINES = ("tcg-q35", "tcg-microvm")


@pytest.mark.parametrize("name", MACHINES)
def test_inspect_passes(kernel, log_dir, name):
    report = inspect(kernel, profiles.load(name), log_dir=log_dir)
    assert report.failed == [] and all(c.verdict is Verdict.PASS for c in report.checks)


@pytest.mark.parametrize("name", MACHINES)
def test_fires_and_deviations_as_on_pc(kernel, log_dir, name):
    """`pf-write` must PASS; `xm` shows TCG's recorded deviation (no #XM), which must be
    reported as DEVIATION on any TCG profile. Several commands in a row also prove the shell
    keeps receiving (microvm needs the kernel to program LINT0 as ExtINT itself)."""
    plan = [(get("pf-write"), "stub"), (get("xm"), "stub"), (get("de"), "x86-interrupt")]
    with Session(kernel, profiles.load(name), log_dir=log_dir, debug_log="int") as s:
        s.boot_to_ready()
        results = fire_in_session(s, plan)
    assert [r.outcome for r in results] == ["PASS", "DEVIATION", "PASS"], \
        [(r.scenario.name, r.outcome, [c.evidence for c in r.checks if c.verdict is Verdict.FAIL]) for r in results]


@pytest.mark.parametrize("name", MACHINES)
def test_a_triple_fault_probe(kernel, log_dir, name):
    probe = next(p for p in PROBES if p.name == "df-no-ist")
    obs = run_probe(kernel, profiles.load(name), probe, log_dir=log_dir)
    assert obs.outcome == probe.expected and obs.chain == list(probe.chain)
    assert not [c for c in probe_checks(obs, probe) if c.verdict is Verdict.FAIL]
