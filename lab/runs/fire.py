"""Runs fire scenarios and turns observations into reports (used by the CLI and the tests)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from lab.checks.base import Check
from lab.checks.frame import has_error_code, outcome, run
from lab.experiments.fire import FireObservation, Firer, FireTimeout
from lab.machine.session import Session
from lab.host.profiles import Profile
from lab.runs.vm import VmSpec
from lab import scenarios
from lab.scenarios.exceptions import CATALOG, ExceptionScenario, get


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
    scenarios = list(CATALOG) if names == ["all"] else [get(n) for n in names]
    return [(s, st) for s in scenarios for st in styles]


def runnable(plan, profile: Profile):
    """The plan minus what this host's KVM is known not to run (lab/scenarios/exceptions.py)."""
    return scenarios.runnable(plan, profile.accel)


def fire_in_session(session: Session, plan, *, vector: int | None = None, cpu: int = 0,
                    **fire_options) -> list[FireResult]:
    """Fires `plan` in order, on CPU `cpu` (0: the boot CPU; else the kernel's `on <cpu>
    fire`); stops early (returning what it has) after a timeout, because the guest cannot be
    trusted afterwards."""
    firer = Firer(session, cpu)
    results = []
    for scenario, style in plan:
        logging.getLogger("lab").info("fire %s %s", scenario.name, style)
        t0 = time.monotonic()
        try:
            obs = firer.fire(scenario, style, vector, **fire_options)
        except FireTimeout as exc:
            obs = exc.observation
        dt = time.monotonic() - t0
        checks = run(obs, scenario)
        result, note = outcome(obs, scenario, checks)
        results.append(FireResult(scenario, obs, checks, result, note, dt))
        if obs.timeout:
            break
    return results


def fire(kernel: Path, profile: Profile, plan, *, vector: int | None = None,
         log_dir: Path | None = None, ready_timeout: float = 10.0, restore: bool = True,
         cpu: int = 0, **fire_options):
    """Runs `plan` in as few VMs as possible: one, unless a fire times out, after which the
    rest runs in a fresh VM."""
    debug_log = "int" if profile.is_tcg else None
    plan = runnable(plan, profile)
    results: list[FireResult] = []
    symbols = None
    vm = 0
    while len(results) < len(plan):
        # Each VM logs to its own folder: a retry must not overwrite the failed VM's logs.
        vm_logs = None if log_dir is None else (log_dir if vm == 0 else log_dir / f"vm{vm}")
        vm += 1
        with Session(kernel, profile, log_dir=vm_logs, ready_timeout=ready_timeout,
                     debug_log=debug_log, keep_logs=False, restore=restore) as s:
            s.boot_to_ready()
            symbols = s.symbols
            results += fire_in_session(s, plan[len(results):], vector=vector, cpu=cpu, **fire_options)
    return results, symbols


@dataclass
class FiresResult:
    results: list[FireResult]
    symbols: object  # the kernel's Symbols, to name the addresses

    @property
    def failed(self) -> bool:
        return any(r.outcome == "FAIL" for r in self.results)

    def to_json(self) -> list:
        return [r.to_json(self.symbols) for r in self.results]


def run_fires(vm: VmSpec, plan, *, vector: int | None = None, **fire_options) -> FiresResult:
    results, symbols = fire(vm.kernel, vm.profile, plan, vector=vector, log_dir=vm.log_dir,
                            ready_timeout=vm.ready_timeout, restore=vm.restore, **fire_options)
    return FiresResult(results, symbols)
