"""Per-CPU checks against what the lab kernel declares (kernel/src/smp, lab-kernel tier): each
CPU's GS base is *its own* per-CPU area (the boot CPU's `PERCPU`, AP k's `AP_PERCPU[k - 1]`)
and the area's self pointer says so; each CPU's current task is an entry of its own task table
(the boot CPU's `TASKS`, AP k's `AP_TASKS[k - 1]`) and no two CPUs run one task; AP k's TR is
`AP_TSS[k - 1]` and its IST pointers are the tops of the stacks `LAB_AP_STACKS` declares for it,
its RSP0 the top of its declared RSP0 stack or (while its worker runs) of its worker's stack.

These catch what the generic tier cannot: GS bases swapped between two CPUs are still
distinct, but each CPU then finds the other's current task and kernel stack."""

from __future__ import annotations

from lab.checks.base import Check, Checks
from lab.labkernel import contract
from lab.labkernel.layouts import AP_STACK_SLOTS, AP_STACKS_DECL, AP_TASK_SLOTS, PERCPU, TASK
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


def task_table(symbols, k: int) -> tuple[str, int, int] | None:
    """CPU k's own task table: (its name, address, end); the boot CPU's `TASKS`, AP k's
    `AP_TASKS[k - 1]` (None: the kernel has no such table)."""
    if k == 0:
        s = symbols.lookup(contract.TASKS_SYMBOL)
        return (contract.TASKS_SYMBOL, s.address, s.end) if s else None
    s = symbols.lookup(contract.AP_TASKS_SYMBOL)
    if s is None:
        return None
    start = s.address + (k - 1) * AP_TASK_SLOTS * TASK.size
    return f"{contract.AP_TASKS_SYMBOL}[{k - 1}]", start, start + AP_TASK_SLOTS * TASK.size


def _task_of(symbols, address: int, n: int) -> str:
    for k in range(n):
        t = task_table(symbols, k)
        if t and t[1] <= address < t[2]:
            return f"CPU {k}'s ({t[0]})"
    return "no CPU's"


def percpu_own(cvs, symbols) -> Check:
    title = ("each CPU's GS base is its own per-CPU area, whose self pointer agrees and whose current task "
             "is one of its own table")
    run = [c for c in cvs if c.cpu.long_mode]
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
        cur, table = area["current"], task_table(symbols, k)
        own = table is not None and table[1] <= cur < table[2] and (cur - table[1]) % TASK.size == 0
        if cur:
            if not own:
                where = table[0] if table else f"CPU {k}'s task table (none in the ELF)"
                problems.append(f"{c.name}: current {cur:#x} is no {where} entry: it is in "
                                f"{_task_of(symbols, cur, len(cvs))} task table")
            currents.setdefault(cur, []).append(c.name)
        ok.append(f"{c.name} {gs:#x} current " +
                  (f"{table[0]} task {(cur - table[1]) // TASK.size}" if cur and own else "none"))
    for cur, who in currents.items():
        if len(who) > 1:
            problems.append(f"{' and '.join(who)} both run the task at {cur:#x}")
    return C.problems("smp.percpu-own", title, problems, "; ".join(ok))


def stacks_declared(cvs, symbols) -> Check:
    title = (f"AP k's TR is {contract.AP_TSS_SYMBOL}[k-1] and its RSP0/IST1-3 are the tops of its declared "
             "stacks (RSP0: its RSP0 stack, or its worker's while the worker runs)")
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
            if slot == "rsp0" and live[slot] == block + decl["worker_top"]:
                continue  # the switch put its worker in: RSP0 is that task's kernel stack
            if live[slot] != want:
                problems.append(f"{c.name}: {slot.upper()} {live[slot]:#x} is not the top of its declared "
                                f"{field.removesuffix('_top')} stack ({want:#x})")
    return C.problems("smp.stacks-declared", title, problems,
                      f"{n} APs: TSS and RSP0/IST1-3 as {contract.AP_STACKS_SYMBOL} declares")


def run(cvs, symbols) -> list[Check]:
    if len(cvs) < 2 or not applies(symbols):
        return []
    return [percpu_own(cvs, symbols), stacks_declared(cvs, symbols)]
