"""Kernel-agnostic firing, observed and judged: each injection in turn in one stopped guest."""

from __future__ import annotations

from dataclasses import dataclass

from lab.checks.base import Verdict
from lab.checks.inject import run
from lab.experiments.inject import InjectObservation, inject
from lab.machine.session import Stop
from lab.runs.vm import VmSpec
from lab.scenarios.injections import Injection
from lab.target.cpu import parse_info_registers, require_long_mode


@dataclass
class InjectResult:
    injection: Injection
    observation: InjectObservation
    checks: list

    @property
    def outcome(self) -> str:
        return "FAIL" if any(c.verdict is Verdict.FAIL for c in self.checks) else "PASS"

    def to_json(self) -> dict:
        return {"injection": self.injection.name, "vector": self.injection.vector,
                "description": self.injection.description, "outcome": self.outcome,
                "observation": self.observation.to_json(), "checks": [c.to_json() for c in self.checks]}


def inject_all(session, injections: list[Injection], timeout: float = 5.0) -> list[InjectResult]:
    """Each injection in turn in the same stopped guest; each restores it for the next."""
    out = []
    for inj in injections:
        obs = inject(session, inj, timeout)
        out.append(InjectResult(inj, obs, run(obs, inj)))
    return out


@dataclass
class InjectionsResult:
    stop: str  # where the CPU was stopped
    results: list[InjectResult]

    @property
    def failed(self) -> bool:
        return any(r.outcome == "FAIL" for r in self.results)

    def to_json(self) -> dict:
        return {"stop": self.stop, "results": [r.to_json() for r in self.results]}


def run_injections(vm: VmSpec, injections: list[Injection], stop: Stop, *,
                   timeout: float = 5.0) -> InjectionsResult:
    """Boots `vm`, stops it at `stop` (restored only at the ready point), checks that the CPU is
    in long mode there, and fires each injection in turn."""
    with vm.session(restore=vm.restore and stop.is_ready) as s:
        where = s.boot_to(stop)
        require_long_mode(parse_info_registers(s.gdb.monitor("info registers")), where)
        return InjectionsResult(where, inject_all(s, injections, timeout=timeout))
