"""Runs fire scenarios and turns observations into reports (used by the CLI and the tests)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.checks.base import Check
from lab.checks.frame import has_error_code, outcome, run
from lab.errors import UserError
from lab.experiments.fire import FireObservation, Firer, FireTimeout
from lab.experiments.guest_fire import GuestFirer, has_observer
from lab.machine.session import Session
from lab.host.profiles import Profile
from lab.runs.vm import VmSpec
from lab.experiments import kvm_probe
from lab.target.symbols import Symbols
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


def host_exclusions(kernel: Path, profile: Profile) -> dict[str, str]:
    """On KVM: scenario -> why this host's KVM cannot run it, measured (and cached) by the
    probe without gdb (lab/experiments/kvm_probe.py); nothing elsewhere."""
    if profile.accel != "kvm":
        return {}
    result = kvm_probe.probe(kernel, profile)
    return {name: result.reason(name) for name in result.fails}


def runnable(plan, profile: Profile, kernel: Path | None = None, observer: str | None = None):
    """The plan minus what this host's KVM cannot run (measured for `kernel`) and, under the
    gdb observer, what is recorded not to work with gdb attached on KVM."""
    if observer is None and kernel is not None:
        observer = choose_observer(None, Symbols.from_elf(kernel))
    host = host_exclusions(kernel, profile) if kernel is not None else {}
    return scenarios.runnable(plan, profile.accel, host, observer or "gdb")


OBSERVERS = ("guest", "gdb")


def choose_observer(observer: str | None, symbols) -> str:
    """--observer: `guest` (the kernel's own records, no stop) where the kernel has the
    in-guest observer, else `gdb`; an explicit `guest` for a kernel without it is an error."""
    if observer is None:
        return "guest" if has_observer(symbols) else "gdb"
    if observer not in OBSERVERS:
        raise UserError(f"unknown observer {observer!r}; observers: {', '.join(OBSERVERS)}")
    return observer


def fire_in_session(session: Session, plan, *, vector: int | None = None, observer: str | None = None,
                    cpu: int = 0, **fire_options) -> list[FireResult]:
    """Fires `plan` in order, on CPU `cpu` (0: the boot CPU; else the kernel's `on <cpu>
    fire`); stops early (returning what it has) after a timeout, because the guest cannot be
    trusted afterwards."""
    observer = choose_observer(observer, session.symbols)
    if observer == "guest":
        return _guest_fires(GuestFirer(session, cpu), plan, vector, fire_options)
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
            return results  # the guest is abandoned as it is
    firer.close()
    return results


def _guest_fires(firer: GuestFirer, plan, vector, fire_options) -> list[FireResult]:
    """All fires first (no stop), the records read after them; then the checks."""
    fire_options.pop("seed", None)
    times, t0 = [], [time.monotonic()]

    def fired(_obs) -> None:
        now = time.monotonic()
        times.append(now - t0[0])
        t0[0] = now

    observations = firer.fire_all(plan, vector, on_fired=fired, **fire_options)
    if not observations or not observations[-1].timeout:
        firer.close()
    results = []
    for (scenario, _), obs, dt in zip(plan, observations, times):
        checks = run(obs, scenario)
        result, note = outcome(obs, scenario, checks)
        results.append(FireResult(scenario, obs, checks, result, note, dt))
    return results


def fire(kernel: Path, profile: Profile, plan, *, vector: int | None = None,
         log_dir: Path | None = None, ready_timeout: float = 10.0, restore: bool = True,
         cpu: int = 0, **fire_options):
    """Runs `plan` in as few VMs as possible: one, unless a fire times out, after which the
    rest runs in a fresh VM."""
    debug_log = "int" if profile.is_tcg else None
    observer = fire_options.get("observer")
    if profile.accel == "kvm":  # what runs here depends on the observer (gdb's guest debugging)
        observer = fire_options["observer"] = choose_observer(observer, Symbols.from_elf(kernel))
        plan = runnable(plan, profile, kernel, observer)
    # elsewhere the session's symbols (loaded while QEMU starts) decide the observer
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
    not_run: dict[str, str] = field(default_factory=dict)  # scenario -> why it cannot run here

    @property
    def failed(self) -> bool:
        return any(r.outcome == "FAIL" for r in self.results)

    def to_json(self) -> list:
        return [r.to_json(self.symbols) for r in self.results]


def run_fires(vm: VmSpec, plan, *, vector: int | None = None, **fire_options) -> FiresResult:
    results, symbols = fire(vm.kernel, vm.profile, plan, vector=vector, log_dir=vm.log_dir,
                            ready_timeout=vm.ready_timeout, restore=vm.restore, **fire_options)
    not_run = {}
    if vm.profile.accel == "kvm":  # what fire() left out, and why (measured or recorded)
        observer = fire_options.get("observer") or choose_observer(None, Symbols.from_elf(vm.kernel))
        host = host_exclusions(vm.kernel, vm.profile)
        for s, _ in plan:
            why = scenarios.kvm_excluded(s, "kvm", host, observer)
            if why:
                not_run[s.name] = why
    return FiresResult(results, symbols, not_run)


def fire_to_judge(vm: VmSpec, plan, log_dir: Path | None = None) -> tuple[list[FireResult], dict]:
    """Every fire of `plan` this backend can run, observed as fully as it allows (claims and
    the matrix): the gdb observer (register and CR2 sentinels; on TCG every fire also compared
    with the kernel's own record), then the kernel's own observer for what gdb cannot observe
    here but the host runs (KVM's guest debugging). Returns the results and, for the rest,
    (scenario name, style) -> why it did not run."""
    results, _ = fire(vm.kernel, vm.profile, plan, ready_timeout=vm.ready_timeout, restore=vm.restore,
                      log_dir=log_dir, observer="gdb")
    by_gdb = runnable(plan, vm.profile, vm.kernel, "gdb")
    by_guest = runnable(plan, vm.profile, vm.kernel, "guest")
    guest_only = [p for p in by_guest if p not in by_gdb]
    if guest_only:
        more, _ = fire(vm.kernel, vm.profile, guest_only, ready_timeout=vm.ready_timeout,
                       restore=vm.restore, log_dir=None if log_dir is None else log_dir / "guest",
                       observer="guest")
        results += more
    host = host_exclusions(vm.kernel, vm.profile)
    not_run = {(s.name, st): scenarios.kvm_excluded(s, vm.profile.accel, host, "guest")
               or scenarios.kvm_excluded(s, vm.profile.accel, host, "gdb")
               for s, st in plan if (s, st) not in by_gdb and (s, st) not in by_guest}
    return results, not_run
