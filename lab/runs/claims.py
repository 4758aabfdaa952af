"""`lab claims`: runs the experiments the claims need, each in its own VM, through the same
runners as the commands that show them, and decides every claim from their evidence
(lab/checks/claims.py, and lab/checks/seedclaims for the tutorial texts' claims).

`lab claims --seed FILE` decides one text's claims and runs only the experiments they weigh.
The kernel trials (lab/experiments/trial.py) run on the VM's accelerator and, where it is
usable here, on the other one too (TCG and KVM), so each claim names what it was measured on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lab.checks import seedclaims
from lab.checks.claims import UNMEASURED, Evidence, evaluate
from lab.errors import UserError
from lab.experiments import trial as trial_exp
from lab.host import profiles
from lab.runs import experiments
from lab.runs.fire import fire_to_judge
from lab.runs.probe import run_probes
from lab.runs.vm import VmSpec
from lab.scenarios import probes
from lab.scenarios.exceptions import CATALOG, STYLES

#: The probes whose evidence the claims weigh.
PROBES = ("double-fault", "control", "df-no-ist", "df-not-present", "idt-limit0")
#: A KVM boot on a loaded host can take longer than a TCG one's default bound.
OTHER_BACKEND_READY_TIMEOUT = 30.0


def trial_backends(vm: VmSpec) -> list[VmSpec]:
    """The VM itself, then the same VM on the other accelerator where that is usable."""
    other = "kvm" if vm.profile.is_tcg else "tcg"
    try:
        prof = profiles.load(other)
        prof.check_usable()
    except UserError:
        return [vm]
    prof = prof.with_boot(vm.profile.boot)
    return [vm, replace(vm, profile=prof, ready_timeout=max(vm.ready_timeout, OTHER_BACKEND_READY_TIMEOUT))]


def trials(vm: VmSpec) -> dict:
    out = {}
    for spec in trial_backends(vm):
        spec = spec.with_logs(spec.log_dir / spec.profile.name if spec.log_dir else None)
        with spec.session() as s:
            s.boot_to_ready()
            obs = trial_exp.observe(s)
        out[obs.accel] = obs
    return out


#: The machine the per-CPU claims are measured on.
SMP_CPUS = 4


def smp_evidence(vm: VmSpec):
    """The lab kernel on SMP_CPUS CPUs, every CPU read (with its per-CPU area), then two context
    switches on CPU 1 with every CPU read before and after (lab/experiments/cpu_switch.py); and a
    triple fault on CPU 1 in another VM of the same kind. Returns (Evidence.smp,
    Evidence.cpu_switch)."""
    from lab.checks import cpu_switch as cpu_switch_checks
    from lab.checks.smp import views
    from lab.experiments import cpu_switch
    from lab.checks.smp_labkernel import percpu_bytes
    from lab.experiments.smp_probe import ap_triple_fault
    from lab.target.cpus import read_machine

    profile = vm.profile.customized(cpus=SMP_CPUS)
    with replace(vm, profile=profile).session() as s:
        s.boot_to_ready()
        _, cpus = read_machine(s.gdb, percpu_bytes(s.symbols))
        cvs = views(cpus, s.symbols)
        switched = cpu_switch.observe(s, cpu=1)
    return (cvs, ap_triple_fault(vm.kernel, profile, cpu=1, ready_timeout=vm.ready_timeout)), (switched, cpu_switch_checks.run(switched))


#: Every experiment: the tutorial texts' (seedclaims.KINDS) and the per-CPU one.
ALL_KINDS = seedclaims.KINDS | {"smp"}


def collect(vm: VmSpec, kinds=ALL_KINDS, progress=None) -> Evidence:
    """Runs the experiments `kinds` names (fires, probes, tasks, ring3, timer, trials, smp), each in
    its own VM (logs, if kept, in LOG_DIR/<experiment>). `progress(step, done, total)`, if
    given, is called as each starts."""
    ev = Evidence(accel=vm.profile.accel)
    steps = [k for k in ("fires", "probes", "tasks", "ring3", "timer", "trials", "smp") if k in kinds]
    step = (lambda name: progress(name, steps.index(name), len(steps))) if progress else (lambda name: None)

    def logs(name):
        return vm.with_logs(vm.log_dir / name if vm.log_dir else None)

    if "fires" in kinds:
        step("fires")
        plan = [(s, st) for s in CATALOG for st in STYLES]
        ev.fires, _ = fire_to_judge(vm, plan, logs("fire").log_dir)
    if "probes" in kinds:
        step("probes")
        for r in run_probes(logs("probe"), [probes.get(n) for n in PROBES], announce=False).results:
            ev.probes[r.probe.name] = (r.observation, r.checks)
    if "tasks" in kinds:
        step("tasks")
        tasks = experiments.tasks(logs("tasks"))
        ev.tasks = (tasks.observation, tasks.checks)
    if "ring3" in kinds:
        step("ring3")
        ring3 = experiments.ring3(logs("ring3"))
        ev.ring3 = (ring3.observation, ring3.checks, ring3.extra["outcomes"])
    if "timer" in kinds:
        step("timer")
        timer = experiments.timer(logs("timer"), rates=(100,), window_ms=200)
        ev.timer = (timer.observation, timer.checks)
    if "trials" in kinds:
        step("trials")
        ev.trials = trials(logs("trials"))
    if "smp" in kinds:
        step("smp")
        ev.smp, ev.cpu_switch = smp_evidence(logs("smp"))
    return ev


@dataclass
class ClaimsResult:
    profile: str
    claims: list[dict]  # lab.checks.claims.evaluate, then lab.checks.seedclaims.evaluate
    backends: list[str]  # where the kernel trials ran, e.g. "TCG (QEMU 7.2.15)"
    seed: str | None = None

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
    prof = vm.profile
    observers = sorted({r.observation.observer for r in ev.fires}) or ["none"]
    return (f"{prof.name} (accel {prof.accel}, QEMU {prof.qemu_build.version_str}, "
            f"fire observer {'/'.join(observers)})")


def run_claims(vm: VmSpec, seed: str | None = None, progress=None) -> ClaimsResult:
    """Every claim, or (`seed`) one tutorial text's. `progress` as collect's."""
    if seed is not None:
        name = seedclaims.resolve(seed)
        chosen = seedclaims.SEEDS[name][1]
        ev = collect(vm, seedclaims.needs(chosen), progress)
        claims = seedclaims.evaluate(ev, chosen)
    else:
        ev = collect(vm, progress=progress)
        claims = evaluate(ev) + seedclaims.evaluate(ev, seedclaims.ALL)
        name = None
    measured_on = backend(vm, ev)
    for c in claims:
        c["measured_on"] = measured_on
        if c["verdict"] == UNMEASURED and not c["evidence"]:
            c["evidence"] = [f"what it needs did not run on {vm.profile.name} here "
                             f"(`lab fire all --profile {vm.profile.name}` lists what runs)"]
    return ClaimsResult(vm.profile.name, claims, [o.backend for o in ev.trials.values()], name,
                        vm.profile.accel, measured_on)
