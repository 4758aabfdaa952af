"""The per-CPU claims' judges (lab/checks/claims.py): decided on `Evidence.smp`, the lab
kernel inspected on several CPUs (lab/checks/smp.py CpuViews), a triple fault on one AP
(lab/experiments/smp_probe.py ApTripleFault), and context switches on one AP with every CPU
read before and after (`Evidence.cpu_switch`: lab/experiments/cpu_switch.py and its checks)."""

from __future__ import annotations

from lab.checks.base import Verdict
from lab.checks.claim_evidence import HOLDS, REFUTED, UNMEASURED, Evidence
from lab.labkernel.layouts import PERCPU


def _cpus(ev: Evidence):
    if not ev.smp or not ev.smp[0]:
        return None
    started = [c for c in ev.smp[0] if c.cpu.long_mode]
    return started if len(started) >= 2 else None


def own_gs_area(ev: Evidence) -> tuple[str, list[str]]:
    """Each CPU's kernel GS base differs, and the area there names itself (its self pointer)."""
    cpus = _cpus(ev)
    if cpus is None:
        return UNMEASURED, ["no machine with two CPUs in long mode was inspected"]
    lines, bad = [], []
    for c in cpus:
        area = PERCPU.decode(c.cpu.percpu[:PERCPU.size]) if c.cpu.percpu else None
        own = area is not None and area["self_ptr"] == c.cpu.kernel_gs
        lines.append(f"{c.name}: GS base {c.cpu.kernel_gs:#x}, self pointer "
                     f"{area['self_ptr']:#x}" if area else f"{c.name}: GS base {c.cpu.kernel_gs:#x}, area not read")
        if not own:
            bad.append(c.name)
    distinct = len({c.cpu.kernel_gs for c in cpus}) == len(cpus)
    if not distinct or bad:
        return REFUTED, lines + ([f"{', '.join(bad)}: the area does not name itself"] if bad else [])
    return HOLDS, [f"{len(cpus)} CPUs, {len(cpus)} distinct GS bases, each area's self pointer its own"] + lines


def own_tss_and_stacks(ev: Evidence) -> tuple[str, list[str]]:
    """Each CPU's TR names a TSS of its own, and no stack pointer in use is another CPU's."""
    cpus = _cpus(ev)
    if cpus is None:
        return UNMEASURED, ["no machine with two CPUs in long mode was inspected"]
    bases = [c.cpu.cpu.tr.base for c in cpus]
    pointers = []
    for c in cpus:
        t = c.view.tss
        if t is None:
            return REFUTED, [f"{c.name}: no TSS loaded"]
        pointers += [(c.name, p) for p in (t.rsp[0], *(t.ist_slot(n) for n in c.view.used_ist_slots())) if p]
    shared = sorted({p for _, p in pointers if len({n for n, q in pointers if q == p}) > 1})
    lines = [f"{c.name}: TSS {c.cpu.cpu.tr.base:#x}, RSP0 {c.view.tss.rsp[0]:#x}" for c in cpus]
    if len(set(bases)) != len(bases) or shared:
        return REFUTED, lines + [f"shared stack tops: {', '.join(f'{p:#x}' for p in shared)}"] if shared else lines
    return HOLDS, [f"{len(cpus)} TSSs and {len(pointers)} stack pointers, none shared between CPUs"] + lines


def triple_fault_local(ev: Evidence) -> tuple[str, list[str]]:
    """"A triple fault on one CPU resets only that CPU": QEMU's answer, measured."""
    obs = ev.smp[1] if ev.smp else None
    if obs is None or obs.whole_machine_down is None:
        return UNMEASURED, ["no AP was made to triple-fault"] + (list(obs.evidence) if obs else [])
    if obs.whole_machine_down:
        return REFUTED, [f"CPU {obs.cpu} of {obs.cpus} triple-faulted; QEMU ended the whole machine"] + list(obs.evidence)
    return HOLDS, [f"CPU {obs.cpu} triple-faulted and the boot CPU still answered"] + list(obs.evidence)


def switch_keeps_gs_base(ev: Evidence) -> tuple[str, list[str]]:
    """"The scheduler changes the data in the per-CPU area, not the GS base": at each switch on
    CPU K, CPU K's `current` (the area's data) changed and no CPU's GS base did."""
    if ev.cpu_switch is None or not ev.cpu_switch[0].steps:
        return UNMEASURED, ["no context switch on an AP was observed"]
    obs, checks = ev.cpu_switch
    by_id = {c.id: c for c in checks}
    gs, current = by_id.get("cpu-switch.gs-base"), by_id.get("cpu-switch.current")
    if gs is None or current is None:
        return UNMEASURED, ["the switch's checks did not run"]
    lines = [f"{len(obs.steps)} switches on CPU {obs.cpu} of {obs.cpus}"] + list(current.evidence) + list(gs.evidence)
    if gs.verdict is Verdict.FAIL:
        return REFUTED, lines
    if current.verdict is Verdict.FAIL:
        return UNMEASURED, lines + ["the area's current did not follow the switch: nothing shows where the data went"]
    return HOLDS, lines
