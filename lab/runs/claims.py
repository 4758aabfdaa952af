"""`lab claims`: runs the experiments the claims need, each in its own VM, through the same
runners as the commands that show them, and decides every claim from their evidence
(lab/checks/claims.py)."""

from __future__ import annotations

from dataclasses import dataclass

from lab.checks.claims import UNMEASURED, Evidence, evaluate
from lab.runs import experiments
from lab.runs.fire import fire, runnable
from lab.runs.probe import run_probes
from lab.runs.vm import VmSpec
from lab.scenarios import probes
from lab.scenarios.exceptions import CATALOG, STYLES

#: The probes whose evidence the claims weigh.
PROBES = ("double-fault", "control", "df-no-ist", "df-not-present", "idt-limit0")


def collect(vm: VmSpec) -> Evidence:
    """Runs the experiments the claims need, each in its own VM."""
    ev = Evidence()
    plan = [(s, st) for s in CATALOG for st in STYLES]  # fire() leaves out what cannot run here
    # The gdb observer: its register sentinels decide the iretq claims, and on TCG every fire is
    # also compared with the kernel's own record (fire.observers-agree).
    ev.fires, _ = fire(vm.kernel, vm.profile, plan, ready_timeout=vm.ready_timeout, restore=vm.restore,
                       observer="gdb")
    # What gdb cannot observe on this backend (KVM: its guest debugging) but the host runs,
    # the kernel's own observer judges.
    by_gdb = runnable(plan, vm.profile, vm.kernel, "gdb")
    guest_only = [p for p in runnable(plan, vm.profile, vm.kernel, "guest") if p not in by_gdb]
    if guest_only:
        more, _ = fire(vm.kernel, vm.profile, guest_only, ready_timeout=vm.ready_timeout,
                       restore=vm.restore, observer="guest")
        ev.fires += more
    for r in run_probes(vm, [probes.get(n) for n in PROBES], announce=False).results:
        ev.probes[r.probe.name] = (r.observation, r.checks)
    tasks = experiments.tasks(vm)
    ev.tasks = (tasks.observation, tasks.checks)
    ring3 = experiments.ring3(vm)
    ev.ring3 = (ring3.observation, ring3.checks, ring3.extra["outcomes"])
    timer = experiments.timer(vm, rates=(100,), window_ms=200)
    ev.timer = (timer.observation, timer.checks)
    return ev


@dataclass
class ClaimsResult:
    profile: str
    claims: list[dict]  # lab.checks.claims.evaluate

    accel: str = "tcg"
    measured_on: str = ""  # profile, accelerator, QEMU version, fire observer

    @property
    def failed(self) -> bool:
        """A claim left undecided on TCG (the reference, where every claim can be measured) is
        a failed run. Elsewhere a backend may not run what a claim needs (KVM: no exception log;
        scenarios this host's KVM cannot run, measured): those are reported, not failed."""
        return self.accel == "tcg" and any(c["verdict"] == UNMEASURED for c in self.claims)

    def to_json(self) -> list:
        return self.claims


def backend(vm: VmSpec, ev: Evidence) -> str:
    """What the claims were measured on: profile, accelerator, QEMU, the fire observer."""
    from lab.experiments.kvm_probe import qemu_version

    observers = sorted({r.observation.observer for r in ev.fires}) or ["none"]
    return (f"{vm.profile.name} (accel {vm.profile.accel}, {qemu_version()}, "
            f"fire observer {'/'.join(observers)})")


def run_claims(vm: VmSpec) -> ClaimsResult:
    ev = collect(vm)
    claims = evaluate(ev)
    measured_on = backend(vm, ev)
    for c in claims:
        c["measured_on"] = measured_on
        if c["verdict"] == UNMEASURED and not c["evidence"]:
            c["evidence"] = [f"what it needs did not run on {vm.profile.name} here "
                             f"(`lab fire all --profile {vm.profile.name}` lists what runs)"]
    return ClaimsResult(vm.profile.name, claims, vm.profile.accel, measured_on)
