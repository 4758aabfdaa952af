"""Invariants that hold for any correct x86-64 long-mode kernel (SDM vol. 3A ch. 3, 5, 6, 8).

Severities (docs/checks.md): FAIL only where the CPU will misbehave when that path is
taken; WARN for what is legal but risky or unusual, with the reason; INFO for what is noted.
"""

from __future__ import annotations

from lab.checks.base import Check, Checks, Verdict
from lab.checks.view import View
from lab.checks.wording import by_handler as _by_handler, grouped as _grouped
from lab.checks.wording import handlers_line as _handlers_line, ranges as _ranges
from lab.target.cpu import first_push
from lab.x86.addr import is_canonical
from lab.x86.idt import GATE, GATE_TYPE_INTERRUPT, GATE_TYPE_TRAP
from lab.x86.tss import TSS
from lab.x86.vectors import DF, FIRST_USER_VECTOR, VC, mnemonic

TIER = "generic"
C = Checks(TIER)
STACK_ALIGN = 16  # SDM §6.14.2: the CPU aligns RSP to 16 bytes before pushing the frame
EFER_NXE = 1 << 11  # IA32_EFER.NXE (SDM vol. 3A §2.2.1): XD honoured; reserved when clear
CR4_SMEP = 1 << 20  # CR4.SMEP (SDM vol. 3A §2.5): no supervisor fetch from user pages


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


def _fetch_problem(v: View, t) -> str | None:
    """Why the CPU cannot fetch a handler's first instruction at CPL 0, or None if it can."""
    efer, cr4 = v.state.cpu.values.get("EFER", 0), v.state.cpu.values.get("CR4", 0)
    if t is None:
        return "not walked"
    if t.physical is None:
        return f"not mapped ({t.fault})"
    if not t.executable:
        return ("in a no-execute page (XD set)" if efer & EFER_NXE else
                "under an entry with XD set while EFER.NXE=0, a reserved bit")
    if cr4 & CR4_SMEP and t.user:
        return "in a user page while CR4.SMEP=1 (no supervisor fetch from user pages)"
    return None


def gate_handlers_resolve(v: View) -> Check:
    """A handler outside every symbol is not wrong by itself: kernels build IRQ stubs and
    trampolines at run time. What the CPU needs is code it can fetch there."""
    title = "every present gate's handler resolves to a kernel symbol"
    if not len(v.symbols):
        return C.skip("idt.handler-symbol", title, "no symbols for this kernel")
    stub = v.symbol_table_stub()
    if stub:
        return C.skip("idt.handler-symbol", title, stub)
    outside = [g for g in v.present_gates if v.symbols.resolve(g.offset) is None and is_canonical(g.offset)]
    walks = v.state.handler_walks
    fail, warn, info = [], [], []
    if walks is None and outside:
        warn.append(_handlers_line(list(_by_handler(outside).items()),
                                   "inside no symbol, and the page tables were not read, so whether "
                                   "code is there is unknown"))
    elif outside:
        found = [(o, vs, _fetch_problem(v, walks.get(o))) for o, vs in _by_handler(outside).items()]
        fail = _grouped([(o, vs, "inside no symbol and " + p) for o, vs, p in found if p],
                        ": no code is there (idt.handler-mapped)")
        runtime = [(o, vs) for o, vs, p in found if not p]
        if runtime:
            info.append(_handlers_line(runtime, "inside no symbol, in mapped executable memory: code made "
                                                "at run time (IRQ stubs, trampolines)"))
    named = sum(1 for g in v.present_gates if v.symbols.resolve(g.offset) is not None)
    odd = len(v.present_gates) - named - len(outside)
    ok = f"{named} handlers, all inside kernel symbols" + (
        f" ({odd} non-canonical: idt.offset-canonical)" if odd else "")
    return C.findings("idt.handler-symbol", title, ok, fail=fail, warn=warn, info=info,
                      context=f"{named} handler(s) inside kernel symbols")


def gate_handlers_mapped(v: View) -> Check:
    """Delivery ends with a fetch from the handler: a handler the CPU cannot fetch at CPL 0
    faults (#PF) during delivery, which escalates to #DF, and a #DF handler to a shutdown."""
    title = "every present gate's handler is mapped and executable at CPL 0, walked from CR3"
    walks = v.state.handler_walks
    if walks is None or (v.present_gates and not walks):
        return C.skip("idt.handler-mapped", title, "the page tables were not read")
    gates = [g for g in v.present_gates if is_canonical(g.offset)]  # idt.offset-canonical: the rest
    found = [(o, vs, _fetch_problem(v, walks.get(o))) for o, vs in _by_handler(gates).items()]
    fail = _grouped([x for x in found if x[2]], ": delivery faults (#PF) fetching the first instruction")
    pages = {walks[o].physical & ~0xFFF for o, _, p in found if not p}
    return C.findings("idt.handler-mapped", title,
                      f"{len(gates)} handlers in {len(pages)} page(s), all mapped executable", fail=fail)


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


def _tss_needed(v: View) -> list[str]:
    """What makes the CPU read the TSS: an IST gate, or code outside ring 0 (RSP0)."""
    return ([f"IST{n} ({_ranges(v.ist_users(n))})" for n in v.used_ist_slots()]
            + v.outer_rings())


def tr_descriptor(v: View) -> Check:
    title = "TR selects a present, busy 64-bit TSS covering 104 bytes"
    tr = v.state.cpu.tr
    d = v.tr_descriptor
    problems = []
    if tr.selector == 0:
        needs = _tss_needed(v)
        if not needs:
            return C.info("tss.tr-descriptor", title, (
                "TR is null: no TSS loaded, and nothing needs one: no gate uses an IST, and "
                + v.ring0_only(),))
        ists = [n for n in needs if n.startswith("IST")]
        line = "TR is the null selector: no TSS loaded, but " + "; ".join(needs) + " need one"
        if not ists and not v.ring3_now():  # only ring 3 needs it, and ring 3 is not running
            return C.warn("tss.tr-descriptor", title, (
                f"TR is the null selector: the first interrupt or exception in ring 3 would find no "
                f"TSS to load RSP0 from (#TS); {v.ring3_later()}",))
        problems.append(line)
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
    return C.problems("tss.tr-descriptor", title, problems,
                      f"TR {tr.selector:#06x}: base {tr.base:#x} limit {tr.limit:#x} busy TSS64")


def _stacks(v: View) -> list[tuple[str, int, bool]]:
    """RSP0 and each IST slot a present gate uses, as (name, pointer, used): RSP0 is used only
    when code can run outside ring 0 (View.outer_rings)."""
    assert v.tss is not None
    out = [("RSP0", v.tss.rsp[0], v.rsp0_used)]
    out += [(f"IST{n}", v.tss.ist_slot(n), True) for n in v.used_ist_slots()]
    return out


def _who(v: View, name: str) -> str:
    users = v.ist_users(int(name[3:])) if name.startswith("IST") else []
    return f"{name} (vector {', '.join(f'{n} {mnemonic(n)}' for n in users)})" if users else name


def _rsp0_finding(v: View, now: str, later: str, used_sev: str = "fail") -> tuple[str, str]:
    """(severity, line) of an RSP0 problem: `used_sev` with `now` when ring 3 runs at the stop
    (View.ring3_now); WARN with `later` (what the first event in ring 3 would do) when code
    can run in ring 3 but the CPU is in ring 0; INFO when nothing runs outside ring 0."""
    if not v.rsp0_used:
        return "info", f"{now}; but {v.ring0_only()}"
    live = v.ring3_now()
    if live or used_sev != "fail":
        return used_sev, f"{now}; {live}" if live else now
    return "warn", f"{later}; {v.ring3_later()}"


def _no_tss(v: View, id: str, title: str) -> Check:
    if v.state.cpu.tr.selector == 0 and not _tss_needed(v):
        return C.skip(id, title, "no TSS loaded, and nothing needs one (tss.tr-descriptor)")
    if v.state.cpu.tr.selector == 0 and not v.used_ist_slots() and not v.ring3_now():
        return C.skip(id, title, "no TSS loaded, needed only once ring 3 runs (tss.tr-descriptor)")
    return C.fail(id, title, ("no readable TSS (TR null or TSS unreadable)",))


def stack_pointers(v: View) -> Check:
    """A used stack pointer of 0 or non-canonical breaks delivery; a misaligned one does not,
    since the CPU aligns RSP down to 16 before it pushes (SDM §6.14.2)."""
    title = "RSP0 and every IST slot in use are non-zero, canonical and 16-byte aligned"
    if v.tss is None:
        return _no_tss(v, "tss.stack-alignment", title)
    graded = {"fail": [], "warn": [], "info": []}
    for name, ptr, used in _stacks(v):
        if ptr == 0:
            line, later, sev = (f"{name} is 0: the CPU would push the frame at {first_push(0):#x}, the top of "
                                f"the address space"), (
                f"{name} is 0: the first interrupt or exception in ring 3 would push its frame at "
                f"{first_push(0):#x}, the top of the address space"), "fail"
        elif not is_canonical(ptr):
            line, later = (f"{name} {ptr:#x} is not canonical: delivery faults when the CPU loads it",
                           f"{name} {ptr:#x} is not canonical: the first interrupt or exception in ring 3 "
                           f"would fault (#SS) loading it")
            sev = "fail"
        elif ptr % STACK_ALIGN:
            off = ptr % STACK_ALIGN
            line = (f"{name} {ptr:#x} is {off} bytes off {STACK_ALIGN}: the CPU aligns RSP down to "
                    f"{ptr - off:#x} before it pushes (SDM §6.14.2), so the frame starts {off} bytes "
                    f"lower than the pointer says; harmless to the CPU, but code that finds the frame "
                    f"from the TSS value is {off} bytes off")
            later, sev = line, "warn"
        else:
            continue
        if name == "RSP0":
            sev, line = _rsp0_finding(v, line, later, sev)
        graded[sev].append(line)
    fail, warn, info = graded["fail"], graded["warn"], graded["info"]
    return C.findings("tss.stack-alignment", title, ", ".join(f"{n}={p:#x}" for n, p, _ in _stacks(v)),
                      fail=fail, warn=warn, info=info)


def stack_findings(v: View) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """What `tss.stacks-mapped` finds: ([(severity, slot, problem, line)], [what was fine]),
    severity "fail", "warn" or "info", slot "RSP0" or "IST<n>", problem "not mapped",
    "read-only" or "no page walk" (smp.stacks-mapped compares them across CPUs)."""
    assert v.tss is not None and v.state.stack_walks is not None
    found, seen = [], []
    for name, ptr, used in _stacks(v):
        if ptr == 0 or not is_canonical(ptr):
            continue  # tss.stack-alignment reports these
        t = v.state.stack_walks.get(ptr)
        who = _who(v, name)
        if t is None:
            found.append(("fail", name, "no page walk", f"{who} {ptr:#x}: no page walk"))
            continue
        if t.physical is not None and t.writable:
            seen.append(f"{name} -> {t.physical & ~0xFFF:#x}" + ("" if used else " (RSP0 unused)"))
            continue
        problem = "not mapped" if t.physical is None else "read-only"
        line = (f"{who} {ptr:#x}: {t.va:#x} is not mapped ({t.fault})" if t.physical is None
                else f"{who} {ptr:#x}: {t.va:#x} is mapped read-only")
        why_not_vc = v.sev_es_inactive()
        if name == "RSP0":
            sev, line = _rsp0_finding(v, line, line + ": the first interrupt or exception in ring 3 would "
                                                      "fault (#PF, then #DF) pushing its frame")
        elif set(v.ist_users(int(name[3:]))) == {VC} and why_not_vc:
            sev, line = "warn", (f"{line}: only an SEV-ES guest raises #VC, and {why_not_vc} (Linux maps its "
                                 f"#VC stacks only in SEV-ES guests)")
        else:
            sev = "fail"
        found.append((sev, name, problem, line))
    return found, seen


def stacks_mapped(v: View) -> Check:
    """The CPU pushes the first frame slot just below RSP0 or the IST pointer (aligned down to
    16); if that page is not mapped writable, delivery faults and, for #DF, the CPU shuts down
    (SDM §6.14.5)."""
    title = "RSP0 and every IST slot in use are mapped writable, walked from CR3"
    if v.tss is None:
        return _no_tss(v, "tss.stacks-mapped", title)
    if v.state.stack_walks is None:
        return C.skip("tss.stacks-mapped", title, "the page tables were not read")
    found, seen = stack_findings(v)
    if not found and not seen:
        return C.skip("tss.stacks-mapped", title, "no stack to walk: " + _no_stacks(v))
    lines = {sev: [line for s, _, _, line in found if s == sev] for sev in ("fail", "warn", "info")}
    ok = "top pages mapped writable: " + ", ".join(seen)
    return C.findings("tss.stacks-mapped", title, ok, **lines, context=ok if seen else "")


def _no_stacks(v: View) -> str:
    """Why no stack pointer was walked: the zero or non-canonical ones, and what is unused."""
    assert v.tss is not None
    out = [(f"{n} is 0" if p == 0 else f"{n} {p:#x} is not canonical") + " (tss.stack-alignment)"
           for n, p, _ in _stacks(v) if p == 0 or not is_canonical(p)]
    if not v.used_ist_slots():
        out.append("no gate uses an IST")
    return "; ".join(out)


def double_fault_ist(v: View) -> Check:
    title = "#DF runs on an IST stack distinct from RSP0's"
    gate = v.idt[DF] if len(v.idt) > DF else None
    if gate is None or not gate.present:
        where = "is beyond the IDT limit" if gate is None else "is not present"
        return C.fail("idt.df-ist", title, (
            f"vector 8 (#DF) gate {where}: delivering a #DF then faults (#GP or #NP), and a fault "
            f"while delivering #DF shuts the CPU down (triple fault, SDM §6.15)",))
    if gate.ist == 0:
        return C.warn("idt.df-ist", title, (
            "vector 8 (#DF) gate has IST=0: #DF runs on whatever stack was in use, so a #DF caused by "
            "a kernel stack overflow would be delivered on the overflowed stack and triple-fault; "
            "safe only if the kernel's stacks cannot overflow",))
    if v.tss is None:
        return _no_tss(v, "idt.df-ist", title)
    ptr, rsp0 = v.tss.ist_slot(gate.ist), v.tss.rsp[0]
    fail, warn = [], []
    shared = None
    if ptr == 0:
        fail.append(f"#DF uses IST{gate.ist}, which is 0")
    elif v.rsp0_used and ptr == rsp0:
        shared = f"IST{gate.ist} {ptr:#x} equals RSP0"
    elif v.rsp0_used:
        a, b = v.symbols.stack_ending_at(ptr, None), v.symbols.stack_ending_at(rsp0, None)
        if a is not None and a == b:
            shared = f"IST{gate.ist} and RSP0 are both in {a.name}"
    if shared:
        sev, line = _rsp0_finding(v, f"{shared}: a #DF in a handler entered from ring 3 overwrites that "
                                     f"handler's frame", f"{shared}: a #DF in the first handler entered from "
                                                         f"ring 3 would overwrite that handler's frame")
        (fail if sev == "fail" else warn).append(line)
    where = v.symbols.describe(ptr - 1) if ptr else ""
    return C.findings("idt.df-ist", title,
                      f"#DF gate IST{gate.ist} -> {ptr:#x}" + (f" (top of {where.split('+')[0]})" if where else "")
                      + (f", RSP0 {rsp0:#x}" if v.rsp0_used else ", RSP0 unused"), fail=fail, warn=warn)


def stacks_distinct(v: View) -> Check:
    title = "RSP0 and the IST stacks in use are pairwise distinct"
    if v.tss is None:
        return _no_tss(v, "tss.stacks-distinct", title)
    used = [(n, p) for n, p, u in _stacks(v) if u and p]  # a 0 pointer: tss.stack-alignment
    if not used:
        return C.skip("tss.stacks-distinct", title, "no stack in use to compare: " + (
            _no_stacks(v) or "no gate uses an IST") + ("" if v.rsp0_used else "; RSP0 unused"))
    fail, warn = [], []
    for i, (na, pa) in enumerate(used):
        for nb, pb in used[i + 1:]:
            line = None
            if pa == pb:
                line = f"{na} and {nb} both point to {pa:#x}"
            else:
                sa, sb = v.symbols.stack_ending_at(pa, None), v.symbols.stack_ending_at(pb, None)
                if sa is not None and sb is not None and sa.address < sb.end and sb.address < sa.end:
                    line = f"{na} ({sa.name}) and {nb} ({sb.name}) overlap"
            if line and "RSP0" in (na, nb):
                sev, line = _rsp0_finding(v, line, line + ": the first interrupt in ring 3 would share it")
                (fail if sev == "fail" else warn).append(line)
            elif line:
                fail.append(line)
    names = ", ".join(n for n, _ in used)
    ok = (f"1 stack in use ({names}): nothing to share it" if len(used) == 1 else
          f"{len(used)} distinct stacks ({names})") + ("" if v.rsp0_used else "; RSP0 unused")
    return C.findings("tss.stacks-distinct", title, ok, fail=fail, warn=warn)


CHECKS = (idt_limit, gate_offsets_canonical, gate_handlers_resolve, gate_handlers_mapped, gate_types,
          gate_selectors, gdt_null, tr_descriptor, stack_pointers, stacks_mapped, double_fault_ist,
          stacks_distinct)


def run(v: View) -> list[Check]:
    return [check(v) for check in CHECKS]
