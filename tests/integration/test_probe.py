"""`lab probe`: the double fault, the control, and every triple-fault probe, each in a fresh
VM on TCG; and a probe that hangs instead of resetting."""

from __future__ import annotations

import json

import pytest

from lab.host import profiles
from lab.checks.base import Verdict
from lab.checks.probe import run
from lab.experiments.probe import HUNG, run_probe
from lab.scenarios.probes import CATALOG, TRIPLE_FAULT, Probe

from labtest import lab_cli


@pytest.mark.parametrize("probe", CATALOG, ids=[p.name for p in CATALOG])
def test_probe_on_tcg(kernel, tcg, log_dir, probe):
    obs = run_probe(kernel, tcg, probe, log_dir=log_dir)
    checks = run(obs, probe)
    assert not [c for c in checks if c.verdict is Verdict.FAIL], [c.evidence for c in checks if c.verdict is Verdict.FAIL]
    assert obs.outcome == probe.expected
    assert obs.chain == list(probe.chain)


def test_a_probe_that_does_not_reset_is_reported_hung(kernel, tcg, log_dir):
    quiet = Probe("listing", "probes", TRIPLE_FAULT, ("triple fault",), "lists the probes: no reset")
    obs = run_probe(kernel, tcg, quiet, log_dir=log_dir, timeout=0.5)
    assert obs.outcome == HUNG
    assert "timed out after 0.5 s waiting for the QMP event SHUTDOWN" in obs.evidence[0]
    verdicts = {c.id: c.verdict for c in run(obs, quiet)}
    assert verdicts["probe.outcome"] is Verdict.FAIL


def test_cli_probe_all_json(kernel):
    r = lab_cli("probe", "all", "--json", "--kernel", str(kernel))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [o["probe"] for o in out] == [p.name for p in CATALOG]
    assert all(o["verdict"] == "PASS" for o in out)


def test_cli_unknown_probe():
    r = lab_cli("probe", "warp")
    assert r.returncode == 2 and "unknown probe 'warp'; probes: double-fault, control" in r.stderr


from labtest import kvm_usable

KVM_OK, KVM_WHY = kvm_usable()


@pytest.mark.skipif(not KVM_OK, reason=f"KVM not usable here: {KVM_WHY}")
def test_on_kvm_the_verdict_comes_from_qmp_and_the_chain_is_unavailable(kernel, log_dir):
    [probe] = [p for p in CATALOG if p.name == "df-no-ist"]
    obs = run_probe(kernel, profiles.load("kvm"), probe, log_dir=log_dir, timeout=30)
    assert obs.outcome == TRIPLE_FAULT and obs.shutdown == {"guest": True, "reason": "guest-reset"}
    assert obs.chain is None
    verdicts = {c.id: c.verdict for c in run(obs, probe)}
    assert verdicts["probe.outcome"] is Verdict.PASS and verdicts["probe.chain"] is Verdict.SKIP
