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


def collect(vm: VmSpec, progress=None) -> Evidence:
    """Runs the experiments the claims need, each in its own VM (logs, if kept, in
    LOG_DIR/<experiment>). `progress(step, done, total)`, if given, is called as each starts."""
    ev = Evidence()
    steps = ("fire", "probe", "tasks", "ring3", "timer")
    step = progress or (lambda name, done, total: None)

    def logs(name):
        return vm.with_logs(vm.log_dir / name if vm.log_dir else None)

    step("fire", 0, len(steps))
    plan = runnable([(s, st) for s in CATALOG for st in STYLES], vm.profile)
    ev.fires, _ = fire(vm.kernel, vm.profile, plan, ready_timeout=vm.ready_timeout, restore=vm.restore,
                       log_dir=logs("fire").log_dir)
    step("probe", 1, len(steps))
    for r in run_probes(logs("probe"), [probes.get(n) for n in PROBES], announce=False).results:
        ev.probes[r.probe.name] = (r.observation, r.checks)
    step("tasks", 2, len(steps))
    tasks = experiments.tasks(logs("tasks"))
    ev.tasks = (tasks.observation, tasks.checks)
    step("ring3", 3, len(steps))
    ring3 = experiments.ring3(logs("ring3"))
    ev.ring3 = (ring3.observation, ring3.checks, ring3.extra["outcomes"])
    step("timer", 4, len(steps))
    timer = experiments.timer(logs("timer"), rates=(100,), window_ms=200)
    ev.timer = (timer.observation, timer.checks)
    step("decide", 5, len(steps))
    return ev


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


def run_claims(vm: VmSpec, progress=None) -> ClaimsResult:
    return ClaimsResult(vm.profile.name, evaluate(collect(vm, progress)))
