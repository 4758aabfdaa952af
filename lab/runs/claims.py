"""`lab claims`: runs the experiments the claims need, each in its own VM, through the same
runners as the commands that show them, and decides every claim from their evidence
(lab/checks/claims.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    plan = runnable([(s, st) for s in CATALOG for st in STYLES], vm.profile)
    ev.fires, _ = fire(vm.kernel, vm.profile, plan, ready_timeout=vm.ready_timeout, restore=vm.restore)
    for r in run_probes(vm, [probes.get(n) for n in PROBES], announce=False).results:
        ev.probes[r.probe.name] = (r.observation, r.checks)
    tasks = experiments.tasks(vm)
    ev.tasks = (tasks.observation, tasks.checks)
    ring3 = experiments.ring3(vm)
    ev.ring3 = (ring3.observation, ring3.checks, ring3.extra["outcomes"])
    timer = experiments.timer(vm, rates=(100,), window_ms=200)
    ev.timer = (timer.observation, timer.checks)
    ev.smp = smp_evidence(vm)
    return ev


#: The machine the per-CPU claims are measured on.
SMP_CPUS = 4


def smp_evidence(vm: VmSpec):
    """The lab kernel on SMP_CPUS CPUs, every CPU read (with its per-CPU area), and a triple
    fault on CPU 1 in another VM of the same kind."""
    from lab.checks.smp import views
    from lab.checks.smp_labkernel import percpu_bytes
    from lab.experiments.smp_probe import ap_triple_fault
    from lab.target.cpus import read_machine

    profile = vm.profile.customized(cpus=SMP_CPUS)
    with replace(vm, profile=profile).session() as s:
        s.boot_to_ready()
        _, cpus = read_machine(s.gdb, percpu_bytes(s.symbols))
        cvs = views(cpus, s.symbols)
    return cvs, ap_triple_fault(vm.kernel, profile, cpu=1)


@dataclass
class ClaimsResult:
    profile: str
    claims: list[dict]  # lab.checks.claims.evaluate

    @property
    def failed(self) -> bool:
        """A claim left undecided is a failed run: every claim must be measured."""
        return any(c["verdict"] == UNMEASURED for c in self.claims)

    def to_json(self) -> list:
        return self.claims


def run_claims(vm: VmSpec) -> ClaimsResult:
    return ClaimsResult(vm.profile.name, evaluate(collect(vm)))
