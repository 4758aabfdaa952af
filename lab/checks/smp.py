"""Invariants across CPUs, for any SMP x86-64 kernel (generic tier): each CPU's TR selects a
TSS of its own, no two CPUs share an interrupt stack, the CPUs share one IDT (or copies of
it), and each CPU's GS base is its own.

Why each is a FAIL (SDM vol. 3A §6.14.4-6.14.5, §8.7): every CPU loads RSP0 and the IST
pointers from the TSS its own TR selects, so two CPUs with one TSS, or with TSSs naming one
stack, push their frames onto the same memory when both take an event (an NMI broadcast, a
timer tick on each); and LTR marks the descriptor busy, so the second CPU's LTR of a shared
descriptor faults. A kernel's per-CPU area is found through GS: two CPUs with one GS base
both find the same current task and kernel stack.

A CPU outside long mode (an AP the kernel never started: halted in the firmware, or waiting
for its SIPI, with TR 0) takes no interrupt and runs none of the kernel: it is listed, not
checked. A started CPU with TR 0 is graded as `tss.tr-descriptor` grades the boot CPU: FAIL
when an IST gate or ring 3 needs a TSS.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.checks import generic
from lab.checks.base import Check, Checks, Verdict
from lab.checks.view import View, decode
from lab.target.cpus import CpuState
from lab.x86.vectors import mnemonic

TIER = "generic"
C = Checks(TIER)


@dataclass(frozen=True)
class CpuView:
    """One CPU's raw state and its tables decoded (the input of the per-CPU checks)."""

    cpu: CpuState
    view: View

    @property
    def name(self) -> str:
        return f"CPU {self.cpu.index}"


def views(cpus: list[CpuState], symbols) -> list[CpuView]:
    return [CpuView(c, decode(c.state, symbols)) for c in cpus]


def _started(cvs: list[CpuView]) -> list[CpuView]:
    return [c for c in cvs if c.cpu.long_mode]


def _only_one(id: str, title: str, started: list[CpuView]) -> Check | None:
    if len(started) < 2:
        who = started[0].name if started else "no CPU"
        return C.skip(id, title, f"only {who} runs the kernel (in long mode): nothing to compare")
    return None


def started(cvs: list[CpuView]) -> Check:
    title = "every CPU runs the kernel (is in long mode)"
    idle = [c for c in cvs if not c.cpu.long_mode]
    if not idle:
        return C.make("smp.started", title, Verdict.PASS, (f"{len(cvs)} CPUs in long mode",))
    lines = [f"{c.name}: not in long mode (CR0 {c.cpu.cpu.values.get('CR0', 0):#x}, EFER "
             f"{c.cpu.cpu.values.get('EFER', 0):#x}, TR {c.cpu.cpu.tr.selector:#06x}"
             f"{', halted' if c.cpu.halted else ''}): not started by the kernel; it takes no "
             f"interrupt until it is, so its tables are not checked" for c in idle]
    return C.info("smp.started", title, lines)


def _each(run: list[CpuView], check) -> tuple[list[str], list[str], list[str]]:
    """A one-CPU check (lab/checks/generic.py) run on each CPU's view: its FAIL, WARN and
    INFO evidence, each line naming the CPU."""
    graded = {Verdict.FAIL: [], Verdict.WARN: [], Verdict.INFO: []}
    for c in run:
        own = check(c.view)
        if own.verdict in graded:
            graded[own.verdict].extend(f"{c.name}: {line}" for line in own.evidence)
    return graded[Verdict.FAIL], graded[Verdict.WARN], graded[Verdict.INFO]


def tr_own_tss(cvs: list[CpuView]) -> Check:
    """Each started CPU's TR passes `tss.tr-descriptor`, and no two select one TSS."""
    title = "each CPU's TR selects a present, busy 64-bit TSS of its own"
    run = _started(cvs)
    fail, warn, info = _each(run, generic.tr_descriptor)
    by_base: dict[int, list[CpuView]] = {}
    for c in run:
        if c.cpu.cpu.tr.selector:
            by_base.setdefault(c.cpu.cpu.tr.base, []).append(c)
    for base, group in sorted(by_base.items()):
        if len(group) > 1:
            fail.append(f"{', '.join(c.name for c in group)} all load the TSS at {base:#x}: they take "
                        f"RSP0 and the IST stacks from one TSS, so their frames land on the same stacks")
    ok = ", ".join(f"{c.name} TR {c.cpu.cpu.tr.selector:#06x} -> {c.cpu.cpu.tr.base:#x}" for c in run)
    return C.findings("smp.tr-own-tss", title, ok or "no CPU in long mode", fail=fail, warn=warn, info=info)


def _names(cvs: list[CpuView]) -> str:
    """"CPU 1" or "CPUs 1, 2, 3"."""
    return cvs[0].name if len(cvs) == 1 else "CPUs " + ", ".join(str(c.cpu.index) for c in cvs)


def stacks_mapped(cvs: list[CpuView]) -> Check:
    """`tss.stacks-mapped` on every CPU, each walked from its own CR3. One fact, one finding:
    the boot CPU (CPU 0) is `tss.stacks-mapped`'s and is not graded again here, and an AP's
    WARN or INFO that repeats one the boot CPU has (the same slot, the same problem, the same
    severity: Linux's unmapped #VC stack on every CPU) is one INFO line naming the CPUs, since
    `tss.stacks-mapped` already graded it. A FAIL is never folded: each CPU's own."""
    title = "each CPU's RSP0 and IST slots in use are mapped writable, walked from its CR3"
    run = [c for c in _started(cvs) if c.view.tss is not None and c.view.state.stack_walks is not None]
    boot = next((c for c in run if c.cpu.index == 0), None)
    aps = [c for c in run if c is not boot]
    if not aps:
        return C.skip("smp.stacks-mapped", title, "no AP's stacks to walk (CPU 0's: tss.stacks-mapped)")
    already = {(sev, slot, problem) for sev, slot, problem, _ in generic.stack_findings(boot.view)[0]} if boot else set()
    graded: dict[str, list[str]] = {"fail": [], "warn": [], "info": []}
    folded: dict[tuple[str, str, str], list[CpuView]] = {}
    for c in aps:
        for sev, slot, problem, line in generic.stack_findings(c.view)[0]:
            if sev != "fail" and (sev, slot, problem) in already:
                folded.setdefault((sev, slot, problem), []).append(c)
            else:
                graded[sev].append(f"{c.name}: {line}")
    for (sev, slot, problem), group in folded.items():
        graded["info"].append(f"{_names(group)}: {slot} {problem}, as on CPU 0: graded once, by "
                              f"tss.stacks-mapped ({sev.upper()})")
    ok = f"the stacks in use on {_names(aps)} are mapped writable" + (" (CPU 0's: tss.stacks-mapped)" if boot else "")
    return C.findings("smp.stacks-mapped", title, ok, **graded)


def _used_stacks(c: CpuView) -> list[tuple[str, int, bool]]:
    """(name, pointer, live) of RSP0 (when ring 3 exists) and every IST slot a present gate
    uses; `live`: an event at the stop can use it (an IST always; RSP0 when the CPU is in ring 3)."""
    v = c.view
    if v.tss is None:
        return []
    out = [("RSP0", v.tss.rsp[0], bool(v.ring3_now()))] if v.rsp0_used else []
    for n in v.used_ist_slots():
        users = ", ".join(f"{x} {mnemonic(x)}" for x in v.ist_users(n))
        out.append((f"IST{n} (vector {users})", v.tss.ist_slot(n), True))
    return out


def stacks_distinct(cvs: list[CpuView]) -> Check:
    """Two CPUs whose stacks in use coincide FAIL when both can take an event on it now; when
    one of them is an RSP0 of a CPU in ring 0 at the stop, it is a WARN: it collides only once
    that CPU runs ring 3."""
    title = "RSP0 and the IST stacks in use are pairwise distinct across CPUs"
    run = _started(cvs)
    early = _only_one("smp.stacks-distinct", title, run)
    if early:
        return early
    seen: dict[int, list[tuple[str, str, bool]]] = {}
    for c in run:
        for name, ptr, live in _used_stacks(c):
            if ptr:
                seen.setdefault(ptr, []).append((c.name, name, live))
    fail, warn = [], []
    for ptr, users in sorted(seen.items()):
        cpus = {cpu for cpu, _, _ in users}
        if len(cpus) < 2:
            continue
        shared = f"{' and '.join(f'{cpu} {n}' for cpu, n, _ in users)} all point to {ptr:#x}"
        if len({cpu for cpu, _, live in users if live}) > 1:
            fail.append(f"{shared}: two CPUs taking those events at once push their frames onto one stack")
        else:
            idle = ", ".join(cpu for cpu, n, live in users if not live)
            warn.append(f"{shared}: the first interrupt in ring 3 on {idle} would push onto a stack another CPU "
                        f"uses; {idle} at CPL 0 at the stop, so no event now loads its RSP0")
    count = sum(len(u) for u in seen.values())
    return C.findings("smp.stacks-distinct", title,
                      f"{count} stack pointer{'s' if count != 1 else ''} in use on {len(run)} CPUs, "
                      f"no two CPUs sharing one", fail=fail, warn=warn)


def _gate_key(g) -> tuple:
    return (g.present, g.offset, g.selector, g.type, g.dpl, g.ist)


def idt_shared(cvs: list[CpuView]) -> Check:
    """One IDT for all: PASS. A CPU with its own IDT holding the same gates: PASS (a per-CPU
    copy). Different gates: legal (a kernel may declare per-CPU IDTs; a waiver says so),
    but every CPU then handles some vector its own way: WARN naming them."""
    title = "every CPU has the same IDT (or a copy with the same gates)"
    run = _started(cvs)
    early = _only_one("smp.idt-shared", title, run)
    if early:
        return early
    first = run[0]
    base = first.cpu.cpu.idtr
    if all(c.cpu.cpu.idtr == base for c in run):
        return C.make("smp.idt-shared", title, Verdict.PASS,
                      (f"one IDT at {base.base:#x} (limit {base.limit:#x}) on all {len(run)} CPUs",))
    warn, copies = [], []
    ref = [_gate_key(g) for g in first.view.idt]
    for c in run[1:]:
        if c.cpu.cpu.idtr == base:
            continue
        mine = [_gate_key(g) for g in c.view.idt]
        differ = [n for n in range(max(len(ref), len(mine)))
                  if (ref[n] if n < len(ref) else None) != (mine[n] if n < len(mine) else None)]
        where = f"{c.name}'s IDT at {c.cpu.cpu.idtr.base:#x} (limit {c.cpu.cpu.idtr.limit:#x})"
        if differ:
            shown = ", ".join(str(n) for n in differ[:8]) + (" ..." if len(differ) > 8 else "")
            warn.append(f"{where} differs from {first.name}'s at {base.base:#x} in {len(differ)} "
                        f"vector(s): {shown}; legal for a kernel with per-CPU IDTs (waive "
                        f"smp.idt-shared to declare it), but those events are handled differently per CPU")
        else:
            copies.append(where)
    return C.findings("smp.idt-shared", title, "per-CPU copies with the same gates: " + "; ".join(copies),
                      warn=warn)


def gs_distinct(cvs: list[CpuView]) -> Check:
    """The kernel's GS base (GS_BASE in ring 0, KERNEL_GS_BASE in ring 3) is distinct per CPU.
    Equal non-zero bases: FAIL. A zero on some CPUs: WARN (a CPU that has not set its GS
    base yet, legal only before it runs code that reads GS). All zero: INFO (no GS-based
    per-CPU data). A base swapped between two CPUs is the same set of values: only a kernel
    that says which CPU an area belongs to can tell (the lab-kernel tier)."""
    title = "each CPU's kernel GS base (its per-CPU area) is its own"
    run = _started(cvs)
    early = _only_one("smp.gs-distinct", title, run)
    if early:
        return early

    def shown(c: CpuView) -> str:
        reg = "GS_BASE" if c.cpu.cpl == 0 else "KERNEL_GS_BASE (ring 3)"
        return f"{c.name} {reg} {c.cpu.kernel_gs:#x}"
    zero = [c for c in run if c.cpu.kernel_gs == 0]
    if len(zero) == len(run):
        return C.info("smp.gs-distinct", title, ("no CPU has a GS base (GS_BASE and KERNEL_GS_BASE 0 "
                                                 "on all): the kernel keeps no per-CPU area in GS",))
    fail, warn = [], []
    by: dict[int, list[CpuView]] = {}
    for c in run:
        if c.cpu.kernel_gs:
            by.setdefault(c.cpu.kernel_gs, []).append(c)
    for base, group in sorted(by.items()):
        if len(group) > 1:
            fail.append(f"{', '.join(c.name for c in group)} share the GS base {base:#x}: each finds the "
                        f"same per-CPU area (current task, kernel stack, scratch slots)")
    for c in zero:
        warn.append(f"{c.name}: kernel GS base 0 (GS_BASE {c.cpu.gs_base:#x}, KERNEL_GS_BASE "
                    f"{c.cpu.kernel_gs_base:#x}) while other CPUs have one: legal before this CPU sets "
                    f"it, but a GS-relative access now reads address {0:#x} onwards")
    return C.findings("smp.gs-distinct", title, ", ".join(shown(c) for c in run), fail=fail, warn=warn)


CHECKS = (started, tr_own_tss, stacks_distinct, stacks_mapped, idt_shared, gs_distinct)


def run(cvs: list[CpuView]) -> list[Check]:
    """The cross-CPU checks; none for a single CPU (its checks are the boot CPU's own)."""
    if len(cvs) < 2:
        return []
    return [check(cvs) for check in CHECKS]
