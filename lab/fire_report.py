"""Runs fire scenarios and turns observations into reports (used by the CLI and the tests)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.checks import Check, Verdict
from lab.checks.frame import outcome, run, saved_frame, has_error_code
from lab.fire import FireObservation, Firer
from lab.machine.session import Session
from lab.profiles import Profile
from lab.scenarios.exceptions import CATALOG, STYLES, ExceptionScenario


@dataclass
class FireResult:
    scenario: ExceptionScenario
    observation: FireObservation
    checks: list[Check]
    outcome: str
    note: str
    seconds: float

    def stack_rows(self, symbols) -> list[dict]:
        obs = self.observation
        if obs.entry is None:
            return []
        ec = has_error_code(self.scenario, obs.vector)
        names = (["error code"] if ec else []) + ["RIP", "CS", "RFLAGS", "RSP", "SS"]
        rows = []
        for i, name in enumerate(names):
            value = obs.entry["stack"][i]
            note = symbols.describe(value) if name == "RIP" else ""
            rows.append({"address": obs.entry["rsp"] + 8 * i, "value": value, "slot": name, "note": note})
        return rows

    def to_json(self, symbols=None) -> dict:
        return {"scenario": self.scenario.name, "style": self.observation.style,
                "vector": self.observation.vector, "outcome": self.outcome, "note": self.note,
                "seconds": self.seconds,
                "stack": self.stack_rows(symbols) if symbols is not None else [],
                "checks": [c.to_json() for c in self.checks],
                "observation": self.observation.to_json()}


def selected(names: list[str], styles: list[str]) -> list[tuple[ExceptionScenario, str]]:
    from lab.scenarios.exceptions import get

    scenarios = list(CATALOG) if names == ["all"] else [get(n) for n in names]
    return [(s, st) for s in scenarios for st in styles]


def fire_in_session(session: Session, plan, *, vector: int | None = None,
                    skip_kvm_unsupported: bool = True) -> list[FireResult]:
    firer = Firer(session)
    results = []
    for scenario, style in plan:
        if skip_kvm_unsupported and session.profile.accel == "kvm" and scenario.kvm_unsupported:
            continue
        t0 = time.monotonic()
        obs = firer.fire(scenario, style, vector)
        dt = time.monotonic() - t0
        checks = run(obs, scenario)
        result, note = outcome(obs, scenario, checks)
        results.append(FireResult(scenario, obs, checks, result, note, dt))
    return results


def fire(kernel: Path, profile: Profile, plan, *, vector: int | None = None,
         log_dir: Path | None = None, ready_timeout: float = 10.0):
    debug_log = "int" if profile.is_tcg else None
    with Session(kernel, profile, log_dir=log_dir, ready_timeout=ready_timeout,
                 debug_log=debug_log) as s:
        s.boot_to_ready()
        results = fire_in_session(s, plan, vector=vector)
        return results, s.symbols
