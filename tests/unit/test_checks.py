"""Every check PASSes on a correct table set and FAILs on a deliberately wrong one.

The correct set is built from independent constants (the descriptor values Linux and the
rust-osdev x86_64 crate use) with the lab's encoders; each case below breaks one thing and
names the check that must catch it.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest

from lab.labkernel import contract
from lab.checks.base import Verdict
from lab.checks.view import decode
from lab.checks.inspect import run_all
from lab.target.symbols import Symbol, Symbols
from lab.target.cpu import CpuInfo, SegmentRegister, TableRegister, TargetState, walk_stack_tops
from lab.x86.gdt import SYSTEM_TYPE_TSS_AVAILABLE, SYSTEM_TYPE_TSS_BUSY, encode_system
from lab.x86.idt import encode_gate
from lab.x86.tss import encode_tss

KCODE, KDATA, UDATA, UCODE = 0x00AF9B000000FFFF, 0x00CF93000000FFFF, 0x00CFF3000000FFFF, 0x00AFFB000000FFFF
KERNEL_CS = 0x08
TSS_ADDR = 0x10B060
GDT_ADDR, IDT_ADDR = 0x10B020, 0x10C000
HANDLER_BASE = 0x103000
STACKS = {"RSP0_STACK": 0x12D000, "DOUBLE_FAULT_STACK": 0x121000, "NMI_STACK": 0x129000}
STACK_SIZE = 0x4000
TRAPS = {3: 3, 4: 3}  # vector -> DPL for trap gates
ISTS = {8: 1, 2: 2}  # vector -> IST slot


def top(name: str) -> int:
    return STACKS[name] + STACK_SIZE


def handler(v: int) -> int:
    return HANDLER_BASE + 0x40 * v


#: Page tables for the first 2 MiB, 4 KiB pages (physical memory as {address: qword}).
PML4_AT, PDPT_AT, PD_AT, PT_AT = 0x1000, 0x2000, 0x3000, 0x4000
P, RW = 1, 2


def page_tables(unmapped=(), read_only=()) -> dict[int, int]:
    mem = {PML4_AT: PDPT_AT | P | RW, PDPT_AT: PD_AT | P | RW, PD_AT: PT_AT | P | RW}
    for i in range(512):
        page = i * 4096
        if page not in unmapped:
            mem[PT_AT + 8 * i] = page | P | (0 if page in read_only else RW)
    return mem


def xp_monitor(mem: dict[int, int]):
    """A stand-in for QEMU's HMP `xp /Ngx ADDR`, printing what QEMU prints."""
    def monitor(command: str) -> str:
        _, fmt, addr = command.split()
        words, address = int(fmt[1:-2]), int(addr, 16)
        return "\n".join(f"{address + 8 * i:016x}: {mem.get(address + 8 * i, 0):#018x}" for i in range(words))
    return monitor


def make(*, gates=None, gdt=None, tss=None, idtr_limit=None, tr_selector=0x28, decl=None,
         symbols_extra=(), pages=None) -> tuple[TargetState, Symbols]:
    vectors = range(33)
    if gates is None:
        gates = {v: dict(offset=handler(v), selector=KERNEL_CS, ist=ISTS.get(v, 0),
                         type=0xF if v in TRAPS else 0xE, dpl=TRAPS.get(v, 0)) for v in vectors}
    idt = b"".join(encode_gate(**gates[v]) if v in gates else bytes(16) for v in range(256))
    tss_desc = encode_system(type=SYSTEM_TYPE_TSS_BUSY, base=TSS_ADDR, limit=0x67)
    if gdt is None:
        gdt = b"".join(struct.pack("<Q", d) for d in (0, KCODE, KDATA, UDATA, UCODE)) + tss_desc
    if tss is None:
        tss = encode_tss(rsp=(top("RSP0_STACK"), 0, 0),
                         ist=(top("DOUBLE_FAULT_STACK"), top("NMI_STACK"), 0, 0, 0, 0, 0))
    if decl is None:
        decl = b"".join(bytes([1, 0xF if v in TRAPS else 0xE, TRAPS.get(v, 0), ISTS.get(v, 0)])
                        if v in vectors else bytes(4) for v in range(256))
    declared_gdt = b"".join(struct.pack("<Q", d) for d in (0, KCODE, KDATA, UDATA, UCODE, 0, 0, 0))
    syms = [Symbol(f"isr_{v}", handler(v), 0x30, "func", ".text") for v in vectors]
    syms += [Symbol(n, a, STACK_SIZE, "object", contract.STACK_SECTION) for n, a in STACKS.items()]
    syms += [Symbol(contract.TSS_SYMBOL, TSS_ADDR, 104, "object", ".data"),
             Symbol(contract.GDT_SYMBOL, GDT_ADDR, 64, "object", ".data"),
             Symbol(contract.IDT_DECL_SYMBOL, 0x107000, 1024, "object", ".rodata"),
             *symbols_extra]
    sections = {".rodata": (0x107000, decl), ".data": (GDT_ADDR, declared_gdt)}
    cpu = CpuInfo(gdtr=TableRegister(GDT_ADDR, len(gdt) - 1),
                  idtr=TableRegister(IDT_ADDR, idtr_limit if idtr_limit is not None else len(idt) - 1),
                  segments={"CS": SegmentRegister(KERNEL_CS, 0, 0xFFFFFFFF, 0xAF9B00),
                            "TR": SegmentRegister(tr_selector, TSS_ADDR if tr_selector else 0, 0x67, 0x8900)},
                  values={"CR3": PML4_AT})
    idt = idt[: cpu.idtr.limit + 1]
    tss = tss if tr_selector else b""
    walks = walk_stack_tops(cpu, tss, xp_monitor(page_tables() if pages is None else pages))
    return TargetState(cpu, idt, gdt, tss, walks), Symbols(syms, section_data=sections)


def verdicts(state_and_symbols) -> dict[str, Verdict]:
    return {c.id: c.verdict for c in run_all(decode(*state_and_symbols))}


def gates_with(vector: int, **changes):
    gates = {v: dict(offset=handler(v), selector=KERNEL_CS, ist=ISTS.get(v, 0),
                     type=0xF if v in TRAPS else 0xE, dpl=TRAPS.get(v, 0)) for v in range(33)}
    gates[vector] = {**gates[vector], **changes}
    return gates


def gdt_with(index: int, raw: bytes) -> bytes:
    entries = [struct.pack("<Q", d) for d in (0, KCODE, KDATA, UDATA, UCODE)]
    tss_desc = encode_system(type=SYSTEM_TYPE_TSS_BUSY, base=TSS_ADDR, limit=0x67)
    table = b"".join(entries) + tss_desc
    return table[: index * 8] + raw + table[index * 8 + len(raw):]


ALL_CHECKS = {
    "idt.limit", "idt.offset-canonical", "idt.handler-symbol", "idt.gate-type", "idt.selector",
    "gdt.null", "tss.tr-descriptor", "tss.stack-alignment", "tss.stacks-mapped", "idt.df-ist", "tss.stacks-distinct",
    "idt.declared", "idt.handler-entry", "tss.stack-top", "tss.base-symbol", "gdt.declared",
}


def test_correct_tables_pass_every_check():
    v = verdicts(make())
    assert set(v) == ALL_CHECKS
    assert all(x is Verdict.PASS for x in v.values()), v


def _tss(**kw):
    base = dict(rsp=(top("RSP0_STACK"), 0, 0), ist=(top("DOUBLE_FAULT_STACK"), top("NMI_STACK"), 0, 0, 0, 0, 0))
    base.update(kw)
    return encode_tss(**base)


WRONG = [
    # (case id, make() arguments, check that must FAIL)
    ("idtr-too-short", dict(idtr_limit=16 * 16 - 1), "idt.limit"),
    ("idtr-not-whole-gates", dict(idtr_limit=0x107), "idt.limit"),
    ("non-canonical-offset", dict(gates=gates_with(13, offset=0x0000_8000_0000_1000)), "idt.offset-canonical"),
    ("handler-outside-symbols", dict(gates=gates_with(6, offset=0x50_0000)), "idt.handler-symbol"),
    ("call-gate-type", dict(gates=gates_with(14, type=0xC)), "idt.gate-type"),
    ("selector-is-data", dict(gates=gates_with(13, selector=0x10)), "idt.selector"),
    ("selector-beyond-gdt", dict(gates=gates_with(13, selector=0x40)), "idt.selector"),
    ("selector-is-user-code", dict(gates=gates_with(0, selector=0x20)), "idt.selector"),
    ("selector-is-32bit-code", dict(gdt=gdt_with(1, struct.pack("<Q", 0x00CF9A000000FFFF))), "idt.selector"),
    ("gdt-entry0-not-null", dict(gdt=gdt_with(0, struct.pack("<Q", KDATA))), "gdt.null"),
    ("tss-available-not-busy", dict(gdt=gdt_with(5, encode_system(type=SYSTEM_TYPE_TSS_AVAILABLE, base=TSS_ADDR, limit=0x67))), "tss.tr-descriptor"),
    ("tss-limit-short", dict(gdt=gdt_with(5, encode_system(type=SYSTEM_TYPE_TSS_BUSY, base=TSS_ADDR, limit=0x50))), "tss.tr-descriptor"),
    ("tr-null", dict(tr_selector=0), "tss.tr-descriptor"),
    ("rsp0-misaligned", dict(tss=_tss(rsp=(top("RSP0_STACK") - 8, 0, 0))), "tss.stack-alignment"),
    ("used-ist-zero", dict(tss=_tss(ist=(top("DOUBLE_FAULT_STACK"), 0, 0, 0, 0, 0, 0))), "tss.stack-alignment"),
    ("df-stack-top-unmapped", dict(pages=page_tables(unmapped={top("DOUBLE_FAULT_STACK") - 4096})), "tss.stacks-mapped"),
    ("rsp0-top-read-only", dict(pages=page_tables(read_only={top("RSP0_STACK") - 4096})), "tss.stacks-mapped"),
    ("df-without-ist", dict(gates=gates_with(8, ist=0)), "idt.df-ist"),
    ("df-ist-equals-rsp0", dict(tss=_tss(ist=(top("RSP0_STACK"), top("NMI_STACK"), 0, 0, 0, 0, 0))), "idt.df-ist"),
    ("two-ists-same-stack", dict(tss=_tss(ist=(top("DOUBLE_FAULT_STACK"), top("DOUBLE_FAULT_STACK"), 0, 0, 0, 0, 0))), "tss.stacks-distinct"),
    ("bp-interrupt-gate-declared-trap", dict(gates=gates_with(3, type=0xE)), "idt.declared"),
    ("gate-not-declared", dict(gates={**gates_with(0), 200: dict(offset=handler(0), selector=KERNEL_CS)}), "idt.declared"),
    ("handler-mid-function", dict(gates=gates_with(5, offset=handler(5) + 4)), "idt.handler-entry"),
    ("rsp0-below-top", dict(tss=_tss(rsp=(top("RSP0_STACK") - 16, 0, 0))), "tss.stack-top"),
    ("tss-base-off-by-8", dict(gdt=gdt_with(5, encode_system(type=SYSTEM_TYPE_TSS_BUSY, base=TSS_ADDR + 8, limit=0x67))), "tss.base-symbol"),
    ("user-code-dpl0", dict(gdt=gdt_with(4, struct.pack("<Q", 0x00AF9B000000FFFF))), "gdt.declared"),
]


@pytest.mark.parametrize("case, kwargs, check", WRONG, ids=[w[0] for w in WRONG])
def test_wrong_table_fails_its_check(case, kwargs, check):
    v = verdicts(make(**kwargs))
    assert v[check] is Verdict.FAIL, f"{case}: {check} gave {v[check]}"


def test_every_check_has_a_failing_case():
    assert {w[2] for w in WRONG} == ALL_CHECKS


def test_failure_evidence_names_the_culprit():
    checks = {c.id: c for c in run_all(decode(*make(gates=gates_with(13, selector=0x10))))}
    assert any("vector 13" in e and "0x0010" in e for e in checks["idt.selector"].evidence)


def test_no_symbols_skips_symbol_checks_and_lab_tier():
    state, _ = make()
    checks = {c.id: c for c in run_all(decode(state, Symbols.empty()))}
    assert checks["idt.handler-symbol"].verdict is Verdict.SKIP
    assert not any(c.tier == "lab-kernel" for c in checks.values())
    assert checks["idt.df-ist"].verdict is Verdict.PASS


def test_stacks_mapped_walks_the_page_below_each_pointer():
    """The walk is of pointer - 8: a stack whose top is exactly a page boundary needs the page
    below the boundary, not the one at it."""
    state, symbols = make(pages=page_tables(unmapped={top("NMI_STACK")}))  # the page *at* the top
    checks = {c.id: c for c in run_all(decode(state, symbols))}
    assert checks["tss.stacks-mapped"].verdict is Verdict.PASS, checks["tss.stacks-mapped"].evidence
    assert state.stack_walks[top("NMI_STACK")].va == top("NMI_STACK") - 8


def test_stacks_mapped_skips_when_the_tables_were_not_read():
    state, symbols = make()
    state = dataclasses.replace(state, stack_walks=None)
    checks = {c.id: c for c in run_all(decode(state, symbols))}
    assert checks["tss.stacks-mapped"].verdict is Verdict.SKIP
