"""The experiments that run in one VM stopped at the lab kernel's ready point: boot (or
restore), observe, check. Used by the CLI, `lab claims` and the tests alike."""

from __future__ import annotations

from dataclasses import dataclass, replace

from lab.checks import cpu_switch as cpu_switch_checks
from lab.checks import pcpu as pcpu_checks
from lab.checks import ring3 as ring3_checks
from lab.checks import tasks as tasks_checks
from lab.checks import timer as timer_checks
from lab.experiments import cpu_switch as cpu_switch_exp
from lab.experiments import frame as frame_exp
from lab.experiments import pcpu as pcpu_exp
from lab.experiments import ring3 as ring3_exp
from lab.experiments import tasks as tasks_exp
from lab.experiments import timer as timer_exp
from lab.experiments import timer_smp
from lab.experiments.translate import translate as translate_va
from lab.runs.result import RunResult
from lab.runs.vm import VmSpec
from lab.x86.paging import Translation


def _observe(vm: VmSpec, observe, **options):
    with vm.session() as s:
        s.boot_to_ready()
        return observe(s, **options)


def timer(vm: VmSpec, *, rates=(100, 250), window_ms: int = 500, cpus=()) -> RunResult:
    """On TCG, under icount (lab/experiments/timer.py says why). With `cpus`: those
    application processors' own local APIC timers, all at once (lab/experiments/timer_smp.py)."""
    timer_exp.validate(rates, window_ms, apic_only=bool(cpus))
    vm = replace(vm, profile=timer_exp.profile_for(vm.profile))
    if cpus:
        timer_smp.validate(cpus, window_ms, vm.profile.cpus)
        reference = timer_exp.ICOUNT_TSC_HZ if timer_exp.uses_icount(vm.profile) else None
        obs = _observe(vm, timer_smp.observe, cpus=list(cpus), rates=tuple(rates), window_ms=window_ms,
                       tsc_reference_hz=reference)
        return RunResult("timer", vm.profile.name, obs, timer_checks.run_smp(obs))
    obs = _observe(vm, timer_exp.observe, rates=tuple(rates), window_ms=window_ms)
    return RunResult("timer", vm.profile.name, obs, timer_checks.run(obs))


def tasks(vm: VmSpec) -> RunResult:
    obs = _observe(vm, tasks_exp.observe)
    return RunResult("tasks", vm.profile.name, obs, tasks_checks.run(obs))


def cpu_switch(vm: VmSpec, cpu: int) -> RunResult:
    """`lab tasks --cpus N --cpu K`: two context switches on AP K, every CPU read before and after."""
    obs = _observe(vm, cpu_switch_exp.observe, cpu=cpu)
    return RunResult("tasks", vm.profile.name, obs, cpu_switch_checks.run(obs))


def ring3(vm: VmSpec) -> RunResult:
    obs = _observe(vm, ring3_exp.observe)
    checks, outcomes = ring3_checks.run(obs)
    # A recorded deviation (e.g. TCG's missing #AC) is reported, not failed.
    tolerated = frozenset(f"ring3.fault-{p}" for p, o in outcomes.items() if o == "DEVIATION")
    return RunResult("ring3", vm.profile.name, obs, checks, tolerated, extra={"outcomes": outcomes})


@dataclass
class PcpuResult(RunResult):
    def to_json(self) -> dict:
        o = self.observation
        return {"address": o.gs_base, "fields": o.fields, "checks": [c.to_json() for c in self.checks]}


def pcpu(vm: VmSpec) -> PcpuResult:
    o = _observe(vm, pcpu_exp.observe)
    return PcpuResult("pcpu", vm.profile.name, o, pcpu_checks.run(o.gs_base, o.fields, o.percpu_symbol, o.dwarf))


@dataclass
class FrameResult:
    frame: dict  # lab.experiments.frame.decode_at_stop
    failed = False

    def to_json(self) -> dict:
        return self.frame


def frame(vm: VmSpec, at: str, shell_line: str, *, timeout: float = 10.0) -> FrameResult:
    """Stops at `at` (a handler's entry: a symbol or an address) after typing `shell_line`
    into the kernel's shell, and decodes the frame the CPU pushed."""
    with vm.session() as s:
        s.boot_to_ready()
        address = s.symbols.require_code_address(at)
        return FrameResult(frame_exp.stop_at_handler(s, address, shell_line, timeout, at))


@dataclass
class TranslateResult:
    translations: list[Translation]
    failed = False

    def to_json(self) -> list:
        return [t.to_json() for t in self.translations]


def translate(vm: VmSpec, addresses: list[str]) -> TranslateResult:
    """Walks the page tables at the ready point for each address or symbol."""
    with vm.session() as s:
        s.boot_to_ready()
        vas = [s.symbols.require_address(a) for a in addresses]
        return TranslateResult([translate_va(s, va) for va in vas])
