"""Kernel-agnostic firing, observed and judged: each injection in turn in one stopped guest."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lab.checks.base import Verdict
from lab.checks.inject import run
from lab.experiments.inject import InjectObservation, NoGate, inject
from lab.machine.session import Stop
from lab.runs.vm import VmSpec
from lab.scenarios.injections import Injection
from lab.errors import UserError
from lab.target.cpu import parse_info_registers, require_long_mode
from lab.target.unset import idt_unloaded


@dataclass
class InjectResult:
    injection: Injection
    observation: InjectObservation | None  # None: skipped, `skipped` says why
    checks: list
    skipped: str | None = None

    @property
    def outcome(self) -> str:
        if self.skipped is not None:
            return "SKIP"
        return "FAIL" if any(c.verdict is Verdict.FAIL for c in self.checks) else "PASS"

    def to_json(self) -> dict:
        out = {"injection": self.injection.name, "vector": self.injection.vector,
               "description": self.injection.description, "outcome": self.outcome,
               "observation": self.observation.to_json() if self.observation else None,
               "checks": [c.to_json() for c in self.checks]}
        if self.skipped is not None:
            out["skipped"] = self.skipped
        return out


def inject_all(session, injections: list[Injection], timeout: float = 5.0) -> list[InjectResult]:
    """Each injection in turn in the same stopped guest; each restores it for the next."""
    out = []
    for inj in injections:
        try:
            obs = inject(session, inj, timeout)
        except NoGate as exc:  # nothing to fire at: this scenario is skipped, the others run
            out.append(InjectResult(inj, None, [], skipped=exc.message))
            continue
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
        text = s.gdb.monitor("info registers")
        cpu = parse_info_registers(text)
        require_long_mode(cpu, where)
        unloaded = idt_unloaded(cpu.idtr.base, cpu.idtr.limit)
        if unloaded is not None:
            raise UserError(f"cannot fire at this stop ({where}): {unloaded}, so an exception fired now "
                            f"would triple-fault; stop after the kernel's lidt (--at idle, or --at a later point)")
        if re.search(r"\bHLT=1\b", text):
            raise UserError(f"cannot fire at this stop ({where}): the CPU sits in hlt, and an instruction "
                            f"written at RIP runs only once an interrupt wakes it; stop with --at an address "
                            f"the kernel executes")
        return InjectionsResult(where, inject_all(s, injections, timeout=timeout))
