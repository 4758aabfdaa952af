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


# Measured on this lab's KVM host (AMD EPYC, nested; QEMU 7.2.22), plain QEMU, no gdbstub:
# the two probes whose trigger is int3 stop the VM with "KVM internal error. Suberror: 1 /
# emulation failure"; the other triple-fault probes reset the machine.
INT3_PROBES = {"idt-limit0", "gate-bad-selector"}


@pytest.mark.skipif(not KVM_OK, reason=f"KVM not usable here: {KVM_WHY}")
def test_the_kvm_probe_measures_which_triple_fault_probes_this_host_runs(kernel):
    """Re-measured without the cache: each triple-fault probe typed into the shell of plain
    QEMU with KVM either resets the machine or stops it with an emulation failure."""
    from lab.experiments import kvm_probe

    fresh = kvm_probe.measure(kernel, profiles.load("kvm"), scenarios=())
    cpu = kvm_probe.HostCpu(**fresh.cpu).describe()
    triple = {p.name for p in CATALOG if p.expected == TRIPLE_FAULT}
    assert set(fresh.probe_runs) | set(fresh.probe_fails) == triple and not fresh.runs
    assert set(fresh.probe_fails) == INT3_PROBES, (
        f"on {cpu} ({fresh.qemu}) the probes measured failing are {fresh.probe_fails}, "
        f"those that reset {fresh.probe_runs}; recorded for this host: {sorted(INT3_PROBES)} fail")
    assert all(why.startswith(kvm_probe.EMULATION_FAILURE) for why in fresh.probe_fails.values()), \
        (cpu, fresh.probe_fails)


@pytest.mark.skipif(not KVM_OK, reason=f"KVM not usable here: {KVM_WHY}")
def test_on_kvm_a_probe_the_host_cannot_run_is_skipped_with_the_measured_reason(kernel, capsys):
    from lab.experiments import kvm_probe
    from lab.runs.probe import run_probes
    from lab.runs.vm import VmSpec

    kvm = profiles.load("kvm")
    measured = kvm_probe.probe(kernel, kvm)
    [failing] = [p for p in CATALOG if p.name == sorted(measured.probe_fails)[0]]
    assert run_probes(VmSpec(kernel, kvm, ready_timeout=30), [failing]).results == []
    err = capsys.readouterr().err
    assert f"skipping {failing.name} on KVM: this host's KVM ({kvm_probe.HostCpu(**measured.cpu).describe()})" in err
    assert kvm_probe.EMULATION_FAILURE in err
