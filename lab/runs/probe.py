"""The fatal-path probes, each in a fresh VM, observed and judged (the CLI, the soak, `lab
claims` and the tests run them through here)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from lab.checks.base import Check, Verdict
from lab.checks.probe import run as probe_checks
from lab.errors import UserError
from lab.experiments import kvm_probe
from lab.experiments.probe import ProbeObservation, run_probe
from lab.host.profiles import Profile
from lab.experiments.record import record_probe
from lab.machine import replay
from lab.runs.vm import VmSpec
from lab.scenarios import kvm_excluded, probes
from lab.scenarios.probes import TRIPLE_FAULT, Probe


@dataclass
class ProbeResult:
    probe: Probe
    observation: ProbeObservation
    checks: list[Check]

    @property
    def verdict(self) -> Verdict:
        return Verdict.FAIL if any(c.verdict is Verdict.FAIL for c in self.checks) else Verdict.PASS

    def to_json(self) -> dict:
        p = self.probe
        return {"probe": p.name, "expected": p.expected, "expected_chain": list(p.chain),
                "verdict": self.verdict.value, "checks": [c.to_json() for c in self.checks],
                "observation": self.observation.to_json()}


@dataclass
class ProbesResult:
    results: list[ProbeResult]

    @property
    def failed(self) -> bool:
        return any(r.verdict is Verdict.FAIL for r in self.results)

    def to_json(self) -> list:
        return [r.to_json() for r in self.results]


def probe(vm: VmSpec, p: Probe, *, timeout: float = 10.0, record: Path | None = None) -> ProbeResult:
    """One probe in a fresh VM, then its checks; with `record`, recorded there for
    `lab debug --replay` (QEMU's record/replay: TCG, a kernel without a disk)."""
    recording = None
    if record is not None:
        if not vm.profile.is_tcg or vm.image is not None or vm.profile.boot != "multiboot":
            raise UserError("--record needs the TCG accelerator and a kernel booted without a disk "
                            "(record/replay counts instructions; a disk needs blkreplay)")
        if p.expected != TRIPLE_FAULT:
            # Their runs end asleep in `hlt`, stopped through QMP: a replay of such a recording
            # stopped at different places and its reverse-continue hung in about 1 run in 3.
            raise UserError(f"--record records the triple-fault probes (a run that ends in a reset); "
                            f"{p.name} ends with the kernel {p.expected!r}")
        recording = replay.start(record, p.name, vm.profile.name, vm.kernel)
    if recording is None:
        obs = run_probe(vm.kernel, vm.profile, p, log_dir=vm.log_dir, timeout=timeout, restore=vm.restore,
                        ready_timeout=vm.ready_timeout)
    else:
        obs = record_probe(vm.profile, p, recording, timeout=timeout)
        print(f"lab: recorded {p.name} in {recording.path}"
              + (f"; replay it with: lab debug --replay {recording.path}" if recording.end_icount is not None
                 else "; it did not reach its end, so it cannot be replayed"), file=sys.stderr)
    return ProbeResult(p, obs, probe_checks(obs, p))


def host_probe_exclusions(kernel: Path, profile: Profile) -> dict[str, str]:
    """On KVM: probe -> why this host's KVM cannot run it, measured (and cached, with the
    scenarios) by the probe without gdb (lab/experiments/kvm_probe.py); nothing elsewhere."""
    if profile.accel != "kvm":
        return {}
    result = kvm_probe.probe(kernel, profile)
    return {name: result.probe_reason(name) for name in result.probe_fails}


def selected(names: list[str]) -> list[Probe]:
    return list(probes.CATALOG) if names == ["all"] else [probes.get(n) for n in names]


def run_probes(vm: VmSpec, chosen: list[Probe], *, timeout: float = 10.0, announce=True,
               progress=None, record: Path | None = None) -> ProbesResult:
    """Each probe in its own VM (logs, if kept, in LOG_DIR/<probe>; recorded, with `record`, in
    RECORD/<probe>); probes this host's KVM was measured not to run (`host_probe_exclusions`)
    are skipped, with their reason on stderr when `announce`. `progress(name, done, total)`, if given, is called as each starts."""
    results = []
    host = host_probe_exclusions(vm.kernel, vm.profile) if vm.kernel is not None else {}
    for i, p in enumerate(chosen):
        if progress is not None:
            progress(p.name, i, len(chosen))
        why = kvm_excluded(p, vm.profile.accel, host)
        if why:
            if announce:
                print(f"lab: skipping {p.name} on KVM: {why}", file=sys.stderr)
            continue
        logs = vm.log_dir / p.name if vm.log_dir else None
        results.append(probe(vm.with_logs(logs), p, timeout=timeout,
                             record=record / p.name if record is not None else None))
    return ProbesResult(results)
