"""Invariants that hold for any correct x86-64 long-mode kernel (SDM vol. 3A ch. 3, 6, 8)."""

from __future__ import annotations

from lab.checks.base import Check, Checks, Verdict, verdict
from lab.checks.view import View
from lab.x86.addr import is_canonical
from lab.x86.idt import GATE, GATE_TYPE_INTERRUPT, GATE_TYPE_TRAP
from lab.x86.tss import TSS
from lab.x86.vectors import DF, FIRST_USER_VECTOR, mnemonic

TIER = "generic"
C = Checks(TIER)
STACK_ALIGN = 16  # SDM §6.14.2: the CPU aligns RSP to 16 bytes before pushing the frame




def idt_limit(v: View) -> Check:
    idtr = v.state.cpu.idtr
    problems = []
    if idtr.size % GATE.size:
        problems.append(f"IDTR limit {idtr.limit:#x}: size {idtr.size} is not a multiple of {GATE.size}")
    if idtr.size < FIRST_USER_VECTOR * GATE.size:
        problems.append(f"IDTR limit {idtr.limit:#x} does not cover vectors 0-31 "
                        f"(needs >= {FIRST_USER_VECTOR * GATE.size - 1:#x})")
    return C.problems("idt.limit", "IDTR covers the 32 exception vectors in whole gates", problems,
                  f"IDTR base {idtr.base:#x} limit {idtr.limit:#x}: {idtr.size // GATE.size} gates")


def gate_offsets_canonical(v: View) -> Check:
    problems = [f"vector {g.vector} ({g.mnemonic}): offset {g.offset:#x} is not canonical"
                for g in v.present_gates if not is_canonical(g.offset)]
    return C.problems("idt.offset-canonical", "every present gate's handler offset is canonical",
                  problems, f"{len(v.present_gates)} present gates, all canonical")


def gate_handlers_resolve(v: View) -> Check:
    title = "every present gate's handler resolves to a kernel symbol"
    if not len(v.symbols):
        return C.make("idt.handler-symbol", title, Verdict.SKIP, ("no symbols for this kernel",))
    problems = [f"vector {g.vector} ({g.mnemonic}): {g.offset:#x} is inside no symbol"
                for g in v.present_gates if v.symbols.resolve(g.offset) is None]
    return C.problems("idt.handler-symbol", title, problems,
                  f"{len(v.present_gates)} handlers, all inside kernel symbols")


def gate_types(v: View) -> Check:
    problems = []
    for g in v.present_gates:
        if g.type not in (GATE_TYPE_INTERRUPT, GATE_TYPE_TRAP):
            problems.append(f"vector {g.vector}: type {g.type:#x} is not a 64-bit interrupt (0xE) "
                            f"or trap (0xF) gate")
        if not g.reserved_bits_zero:
            problems.append(f"vector {g.vector}: reserved bits set in {g.raw.hex(' ')}")
    return C.problems("idt.gate-type", "present gates are 64-bit interrupt/trap gates with reserved bits clear",
                  problems, f"{len(v.present_gates)} gates well-formed")


def gate_selectors(v: View) -> Check:
    problems = []
    for g in v.present_gates:
        d = v.descriptor(g.selector)
        where = f"vector {g.vector} ({g.mnemonic}) selector {g.selector:#06x}"
        if d is None:
            problems.append(f"{where}: no such GDT entry (GDTR limit {v.state.cpu.gdtr.limit:#x})")
        elif not (d.present and d.is_code64 and d.dpl == 0):
            problems.append(f"{where}: names {d.kind} P={d.present} L={d.l} D={d.db} DPL={d.dpl}, "
                            f"not a present 64-bit ring-0 code segment")
    return C.problems("idt.selector", "gate selectors name a present 64-bit ring-0 code descriptor (L=1, D=0)",
                  problems, f"{len({g.selector for g in v.present_gates})} distinct selector(s), all kernel code64")


def gdt_null(v: View) -> Check:
    first = v.gdt[0] if v.gdt else None
    problems = [] if first is not None and first.kind == "null" else \
        [f"GDT entry 0 is {first.raw.hex(' ') if first else 'missing'}, not the null descriptor"]
    return C.problems("gdt.null", "GDT entry 0 is the null descriptor", problems, "entry 0 is null")


def tr_descriptor(v: View) -> Check:
    tr = v.state.cpu.tr
    d = v.tr_descriptor
    problems = []
    if tr.selector == 0:
        problems.append("TR is the null selector: no TSS loaded")
    elif d is None:
        problems.append(f"TR selector {tr.selector:#06x} names no GDT entry")
    else:
        if d.kind != "tss-busy":
            problems.append(f"TR {tr.selector:#06x} names a {d.kind} descriptor, not a busy 64-bit TSS (type 0xB)")
        if not d.present:
            problems.append(f"TSS descriptor {tr.selector:#06x} is not present")
        if d.limit < TSS.size - 1:
            problems.append(f"TSS limit {d.limit:#x} does not cover the {TSS.size}-byte TSS (needs >= {TSS.size - 1:#x})")
        if d.base != tr.base:
            problems.append(f"descriptor base {d.base:#x} differs from TR's cached base {tr.base:#x}")
    return C.problems("tss.tr-descriptor", "TR selects a present, busy 64-bit TSS covering 104 bytes",
                  problems, f"TR {tr.selector:#06x}: base {tr.base:#x} limit {tr.limit:#x} busy TSS64")


def _used_stacks(v: View) -> list[tuple[str, int]]:
    """RSP0 and each IST slot a present gate uses, as (name, pointer)."""
    assert v.tss is not None
    out = [("RSP0", v.tss.rsp[0])]
    out += [(f"IST{n}", v.tss.ist_slot(n)) for n in v.used_ist_slots()]
    return out


def _no_tss(id: str, title: str) -> Check:
    return C.make(id, title, Verdict.FAIL, ("no readable TSS (TR null or TSS unreadable)",))


def stack_pointers(v: View) -> Check:
    title = "RSP0 and every IST slot in use are non-zero, canonical and 16-byte aligned"
    if v.tss is None:
        return _no_tss("tss.stack-alignment", title)
    problems = []
    for name, ptr in _used_stacks(v):
        if ptr == 0:
            problems.append(f"{name} is 0")
        elif not is_canonical(ptr):
            problems.append(f"{name} {ptr:#x} is not canonical")
        elif ptr % STACK_ALIGN:
            problems.append(f"{name} {ptr:#x} is not {STACK_ALIGN}-byte aligned (off by {ptr % STACK_ALIGN})")
    return C.problems("tss.stack-alignment", title, problems,
                  ", ".join(f"{n}={p:#x}" for n, p in _used_stacks(v)))


def stacks_mapped(v: View) -> Check:
    """The CPU pushes the first frame slot just below RSP0 or the IST pointer; if that page is
    not mapped writable, delivery faults and, for #DF, the CPU shuts down (SDM §6.14.5)."""
    title = "RSP0 and every IST slot in use are mapped writable, walked from CR3"
    if v.tss is None:
        return _no_tss("tss.stacks-mapped", title)
    walks = v.state.stack_walks
    if walks is None:
        return C.make("tss.stacks-mapped", title, Verdict.SKIP, ("the page tables were not read",))
    problems, seen = [], []
    for name, ptr in _used_stacks(v):
        if ptr == 0 or not is_canonical(ptr):
            continue  # tss.stack-alignment reports these
        t = walks.get(ptr)
        users = [g.vector for g in v.present_gates if name == f"IST{g.ist}"]
        who = f"{name} (vector {', '.join(f'{n} {mnemonic(n)}' for n in users)})" if users else name
        if t is None:
            problems.append(f"{who} {ptr:#x}: no page walk")
        elif t.physical is None:
            problems.append(f"{who} {ptr:#x}: {t.va:#x} is not mapped ({t.fault})")
        elif not t.writable:
            problems.append(f"{who} {ptr:#x}: {t.va:#x} is mapped read-only")
        else:
            seen.append(f"{name} -> {t.physical & ~0xFFF:#x}")
    return C.problems("tss.stacks-mapped", title, problems, "top pages mapped writable: " + ", ".join(seen))


def double_fault_ist(v: View) -> Check:
    title = "#DF runs on an IST stack distinct from RSP0's"
    if v.tss is None:
        return _no_tss("idt.df-ist", title)
    gate = v.idt[DF] if len(v.idt) > DF else None
    if gate is None or not gate.present:
        return C.make("idt.df-ist", title, Verdict.FAIL, ("vector 8 (#DF) has no present gate",))
    if gate.ist == 0:
        return C.make("idt.df-ist", title, Verdict.FAIL,
                     ("vector 8 (#DF) gate has IST=0: a #DF from a kernel stack overflow would be "
                      "delivered on the overflowed stack and triple-fault",))
    ptr, rsp0 = v.tss.ist_slot(gate.ist), v.tss.rsp[0]
    problems = []
    if ptr == 0:
        problems.append(f"#DF uses IST{gate.ist}, which is 0")
    elif ptr == rsp0:
        problems.append(f"IST{gate.ist} {ptr:#x} equals RSP0")
    else:
        a, b = v.symbols.stack_ending_at(ptr, None), v.symbols.stack_ending_at(rsp0, None)
        if a is not None and a == b:
            problems.append(f"IST{gate.ist} and RSP0 are both in {a.name}")
    where = v.symbols.describe(ptr - 1) if ptr else ""
    return C.problems("idt.df-ist", title, problems,
                  f"#DF gate IST{gate.ist} -> {ptr:#x}" + (f" (top of {where.split('+')[0]})" if where else "")
                  + f", RSP0 {rsp0:#x}")


def stacks_distinct(v: View) -> Check:
    title = "RSP0 and the IST stacks in use are pairwise distinct"
    if v.tss is None:
        return _no_tss("tss.stacks-distinct", title)
    used = _used_stacks(v)
    problems = []
    for i, (na, pa) in enumerate(used):
        for nb, pb in used[i + 1:]:
            if pa == pb and pa != 0:
                problems.append(f"{na} and {nb} both point to {pa:#x}")
            else:
                sa, sb = v.symbols.stack_ending_at(pa, None), v.symbols.stack_ending_at(pb, None)
                if sa is not None and sb is not None and sa.address < sb.end and sb.address < sa.end:
                    problems.append(f"{na} ({sa.name}) and {nb} ({sb.name}) overlap")
    return C.problems("tss.stacks-distinct", title, problems, f"{len(used)} distinct stacks")


CHECKS = (idt_limit, gate_offsets_canonical, gate_handlers_resolve, gate_types, gate_selectors,
          gdt_null, tr_descriptor, stack_pointers, stacks_mapped, double_fault_ist, stacks_distinct)


def run(v: View) -> list[Check]:
    return [check(v) for check in CHECKS]
