"""Per-CPU checks against what the lab kernel declares (kernel/src/smp, lab-kernel tier): each
CPU's GS base is *its own* per-CPU area (the boot CPU's `PERCPU`, AP k's `AP_PERCPU[k - 1]`)
and the area's self pointer says so; no two CPUs run one task; AP k's TR is `AP_TSS[k - 1]`
and its RSP0 and IST pointers are the tops of the stacks `LAB_AP_STACKS` declares for it.

These catch what the generic tier cannot: GS bases swapped between two CPUs are still
distinct, but each CPU then finds the other's current task and kernel stack."""

from __future__ import annotations

from lab.checks.base import Check, Checks
from lab.labkernel import contract
from lab.labkernel.layouts import AP_STACK_SLOTS, AP_STACKS_DECL, PERCPU, TASK
from lab.x86.tss import TSS

TIER = "lab-kernel"
C = Checks(TIER)


def applies(symbols) -> bool:
    return symbols.lookup(contract.AP_PERCPU_SYMBOL) is not None


def percpu_bytes(symbols) -> int:
    """How much to read at each CPU's GS base: a lab kernel's `PerCpu`, else nothing."""
    return PERCPU.size if applies(symbols) else 0


def _area(symbols, k: int) -> int | None:
    if k == 0:
        s = symbols.lookup(contract.PERCPU_SYMBOL)
        return s.address if s else None
    s = symbols.lookup(contract.AP_PERCPU_SYMBOL)
    return s.address + (k - 1) * PERCPU.size if s else None


def _whose(symbols, address: int, n: int) -> str:
    for k in range(n):
        if _area(symbols, k) == address:
            return f"CPU {k}'s area ({contract.PERCPU_SYMBOL if k == 0 else f'{contract.AP_PERCPU_SYMBOL}[{k - 1}]'})"
    return "no CPU's area"


def percpu_own(cvs, symbols) -> Check:
    title = "each CPU's GS base is its own per-CPU area, whose self pointer and current task agree"
    run = [c for c in cvs if c.cpu.long_mode]
    tasks = symbols.lookup(contract.TASKS_SYMBOL)
    problems, ok, currents = [], [], {}
    for c in run:
        k, gs = c.cpu.index, c.cpu.kernel_gs
        want = _area(symbols, k)
        if gs != want:
            problems.append(f"{c.name}: GS base {gs:#x} is {_whose(symbols, gs, len(cvs))}, not its own "
                            f"({want:#x}): it finds another CPU's current task and kernel stack")
            continue
        if c.cpu.percpu is None or len(c.cpu.percpu) < PERCPU.size:
            problems.append(f"{c.name}: the per-CPU area at {gs:#x} was not read")
            continue
        area = PERCPU.decode(c.cpu.percpu[:PERCPU.size])
        if area["self_ptr"] != gs:
            problems.append(f"{c.name}: the area's self pointer is {area['self_ptr']:#x}, not its address {gs:#x}")
        cur = area["current"]
        if cur:
            if tasks is None or not (tasks.address <= cur < tasks.end and (cur - tasks.address) % TASK.size == 0):
                problems.append(f"{c.name}: current {cur:#x} is no {contract.TASKS_SYMBOL} entry")
            currents.setdefault(cur, []).append(c.name)
        ok.append(f"{c.name} {gs:#x} current {'task ' + str((cur - tasks.address) // TASK.size) if cur and tasks else 'none'}")
    for cur, who in currents.items():
        if len(who) > 1:
            problems.append(f"{' and '.join(who)} both run the task at {cur:#x}")
    return C.problems("smp.percpu-own", title, problems, "; ".join(ok))


def stacks_declared(cvs, symbols) -> Check:
    title = f"AP k's TR is {contract.AP_TSS_SYMBOL}[k-1] and its RSP0/IST1-3 are the tops of its declared stacks"
    raw = symbols.read(contract.AP_STACKS_SYMBOL)
    tss_sym = symbols.lookup(contract.AP_TSS_SYMBOL)
    if raw is None or len(raw) < AP_STACKS_DECL.size or tss_sym is None:
        return C.skip("smp.stacks-declared", title, f"no {contract.AP_STACKS_SYMBOL} or {contract.AP_TSS_SYMBOL} in the ELF")
    decl = AP_STACKS_DECL.decode(raw[:AP_STACKS_DECL.size])
    problems, n = [], 0
    for c in cvs:
        k = c.cpu.index
        if k == 0 or not c.cpu.long_mode:
            continue
        n += 1
        want_tss = tss_sym.address + (k - 1) * TSS.size
        if c.cpu.cpu.tr.base != want_tss:
            problems.append(f"{c.name}: TR base {c.cpu.cpu.tr.base:#x} is not {contract.AP_TSS_SYMBOL}[{k - 1}] ({want_tss:#x})")
        if c.view.tss is None:
            continue
        block = decl["base"] + (k - 1) * decl["stride"]
        live = {"rsp0": c.view.tss.rsp[0], **{f"ist{i}": c.view.tss.ist_slot(i) for i in (1, 2, 3)}}
        for slot, field in AP_STACK_SLOTS.items():
            want = block + decl[field]
            if live[slot] != want:
                problems.append(f"{c.name}: {slot.upper()} {live[slot]:#x} is not the top of its declared "
                                f"{field.removesuffix('_top')} stack ({want:#x})")
    return C.problems("smp.stacks-declared", title, problems,
                      f"{n} APs: TSS and RSP0/IST1-3 as {contract.AP_STACKS_SYMBOL} declares")


def run(cvs, symbols) -> list[Check]:
    if len(cvs) < 2 or not applies(symbols):
        return []
    return [percpu_own(cvs, symbols), stacks_declared(cvs, symbols)]
