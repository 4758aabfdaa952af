"""Checks against what the lab's own kernel declares in its ELF (kernel/CONTRACT.md)."""

from __future__ import annotations

from lab.labkernel import contract
from lab.checks.base import Check, Checks, Verdict, verdict
from lab.checks.view import View
from lab.x86.gdt import decode_gdt
from lab.x86.tss import TSS

TIER = "lab-kernel"
C = Checks(TIER)




def declared_gates(v: View) -> Check:
    raw = v.symbols.read(contract.IDT_DECL_SYMBOL)
    decls = contract.decode_gate_decls(raw or b"")
    problems = []
    for g in v.idt:
        if g.vector >= len(decls):
            break
        d = decls[g.vector]
        live = (int(g.present), g.type, g.dpl, g.ist) if g.present else (0,)
        want = (d["present"], d["gate_type"], d["dpl"], d["ist"]) if d["present"] else (0,)
        if live != want:
            fmt = lambda t: "absent" if t == (0,) else f"P=1 type={t[1]:#x} DPL={t[2]} IST={t[3]}"
            problems.append(f"vector {g.vector} ({g.mnemonic}): live {fmt(live)}, declared {fmt(want)}")
    for vector in range(len(v.idt), len(decls)):
        if decls[vector]["present"]:
            problems.append(f"vector {vector}: declared present but beyond the IDT limit")
    n = sum(1 for d in decls if d["present"])
    return C.problems("idt.declared", f"every gate matches {contract.IDT_DECL_SYMBOL} (present, type, DPL, IST)",
                  problems, f"{n} declared gates match the live IDT")


def handler_entries(v: View) -> Check:
    problems = []
    for g in v.present_gates:
        loc = v.symbols.resolve(g.offset)
        if loc is None or loc.offset != 0 or loc.symbol.kind != "func" \
                or not loc.symbol.name.startswith(contract.HANDLER_PREFIX):
            problems.append(f"vector {g.vector} ({g.mnemonic}): {g.offset:#x} "
                            f"({loc or 'no symbol'}) is not the entry of an {contract.HANDLER_PREFIX}* handler")
    return C.problems("idt.handler-entry", f"every gate points at the first byte of an {contract.HANDLER_PREFIX}* function",
                  problems, f"{len(v.present_gates)} gates point at handler entries")


def stack_tops(v: View) -> Check:
    title = f"RSP0 and every used IST slot point at the top of a stack declared in {contract.STACK_SECTION}"
    if v.tss is None:
        return C.make("tss.stack-top", title, Verdict.FAIL, ("no readable TSS",))
    problems, found = [], []
    slots = [("RSP0", v.tss.rsp[0])] + [(f"IST{n}", v.tss.ist_slot(n)) for n in v.used_ist_slots()]
    for name, ptr in slots:
        s = v.symbols.stack_ending_at(ptr, contract.STACK_SECTION)
        if s is None:
            problems.append(f"{name} {ptr:#x} ({v.symbols.describe(ptr) or 'no symbol'}) is not the top of "
                            f"any object in {contract.STACK_SECTION}")
        else:
            found.append(f"{name}=top of {s.name} ({s.size // 1024} KiB)")
    return C.problems("tss.stack-top", title, problems, ", ".join(found))


def tss_symbol(v: View) -> Check:
    title = f"the TSS descriptor's base is the {contract.TSS_SYMBOL} symbol and its limit covers {TSS.size} bytes"
    sym = v.symbols.lookup(contract.TSS_SYMBOL)
    d = v.tr_descriptor
    problems = []
    if sym is None:
        problems.append(f"no {contract.TSS_SYMBOL} symbol")
    if d is None:
        problems.append("TR names no descriptor")
    if problems:
        return C.make("tss.base-symbol", title, Verdict.FAIL, tuple(problems))
    if d.base != sym.address:
        problems.append(f"descriptor base {d.base:#x} ({v.symbols.describe(d.base) or 'no symbol'}) "
                        f"!= {contract.TSS_SYMBOL} at {sym.address:#x}")
    if d.limit + 1 < TSS.size or sym.size < TSS.size:
        problems.append(f"limit {d.limit:#x} / symbol size {sym.size} do not cover {TSS.size} bytes")
    return C.problems("tss.base-symbol", title, problems,
                  f"base {d.base:#x} = {contract.TSS_SYMBOL}, limit {d.limit:#x}")


def declared_gdt(v: View) -> Check:
    title = f"code/data descriptors equal the {contract.GDT_SYMBOL} image the kernel was linked with"
    image = v.symbols.read(contract.GDT_SYMBOL)
    if image is None:
        return C.make("gdt.declared", title, Verdict.FAIL, (f"no initialised {contract.GDT_SYMBOL} in the ELF",))
    declared = decode_gdt(image[: len(image) // 8 * 8])
    live = {d.index: d for d in v.gdt}
    problems, compared = [], 0
    for d in declared:
        if d.kind in ("null",) and d.index != 0:
            continue  # filled at run time (the TSS descriptor)
        compared += 1
        got = live.get(d.index)
        if got is None:
            problems.append(f"selector {d.selector:#06x}: declared {d.raw.hex()} but beyond the GDT limit")
        elif got.raw != d.raw:
            problems.append(f"selector {d.selector:#06x}: live {got.raw[::-1].hex()} != declared {d.raw[::-1].hex()}")
    return C.problems("gdt.declared", title, problems, f"{compared} declared descriptors match")


CHECKS = (declared_gates, handler_entries, stack_tops, tss_symbol, declared_gdt)


def applies(v: View) -> bool:
    """The lab kernel's declarations are readable: an ELF with LAB_IDT_DECL's contents (a
    System.map names the symbol but holds no bytes, so the tier cannot judge anything)."""
    return v.symbols.read(contract.IDT_DECL_SYMBOL) is not None


def run(v: View) -> list[Check]:
    return [check(v) for check in CHECKS] if applies(v) else []
