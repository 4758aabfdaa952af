"""Every check PASSes on a correct table set and FAILs on a deliberately wrong one.

The correct set is built from independent constants (the descriptor values Linux and the
rust-osdev x86_64 crate use) with the lab's encoders; each case below breaks one thing and
names the check that must catch it.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from pathlib import Path

import pytest

from lab.labkernel import contract
from lab.checks.base import Verdict
from lab.checks.view import decode
from lab.checks.inspect import run_all
from lab.target.memory import phys_reader
from lab.target.symbols import Symbol, Symbols
from lab.target.cpu import (CpuInfo, SegmentRegister, TableRegister, TargetState, cached, walk_handlers,
                            walk_stack_tops)
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
P, RW, US, XD = 1, 2, 4, 1 << 63
EFER_LMA_LME_NXE = 0xD00
NOT_A_STACK = 0x150000  # mapped, in no symbol: for handlers made at run time, stacks elsewhere
UNMAPPED = 0x160000


def page_tables(unmapped=(UNMAPPED,), read_only=(), nx=(), user=()) -> dict[int, int]:
    """The upper levels allow everything (P RW US, no XD): the PT entry decides."""
    mem = {PML4_AT: PDPT_AT | P | RW | US, PDPT_AT: PD_AT | P | RW | US, PD_AT: PT_AT | P | RW | US}
    for i in range(512):
        page = i * 4096
        if page not in unmapped:
            mem[PT_AT + 8 * i] = (page | P | (0 if page in read_only else RW) | (XD if page in nx else 0)
                                  | (US if page in user else 0))
    return mem


def xp_monitor(mem: dict[int, int]):
    """A stand-in for QEMU's HMP `xp /Ngx ADDR`, printing what QEMU prints."""
    def monitor(command: str) -> str:
        _, fmt, addr = command.split()
        words, address = int(fmt[1:-2]), int(addr, 16)
        return "\n".join(f"{address + 8 * i:016x}: {mem.get(address + 8 * i, 0):#018x}" for i in range(words))
    return monitor


def make(*, gates=None, gdt=None, tss=None, idtr_limit=None, tr_selector=0x28, decl=None,
         symbols_extra=(), pages=None, values=None, segments=None, sev="SEV is not enabled",
         lab_kernel=True, walk=True, symbols=None, unread=None) -> tuple[TargetState, Symbols]:
    """A CPU state and its symbols: correct tables unless told otherwise. `lab_kernel=False`
    leaves out the lab kernel's declarations (another kernel: only the generic tier runs);
    `walk=False`: the page tables were not read; `symbols` replaces the symbol table."""
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
    if not lab_kernel:
        syms = [x for x in syms if x.name != contract.IDT_DECL_SYMBOL]
        sections = {}
    cpu = CpuInfo(gdtr=TableRegister(GDT_ADDR, len(gdt) - 1),
                  idtr=TableRegister(IDT_ADDR, idtr_limit if idtr_limit is not None else len(idt) - 1),
                  segments={"CS": SegmentRegister(KERNEL_CS, 0, 0xFFFFFFFF, 0xAF9B00),
                            "TR": SegmentRegister(tr_selector, TSS_ADDR if tr_selector else 0, 0x67, 0x8900),
                            "LDT": SegmentRegister(0, 0, 0xFFFF, 0x8200), **(segments or {})},
                  values={"CR3": PML4_AT, "EFER": EFER_LMA_LME_NXE, "CR4": 0x6A0, **(values or {})})
    idt = idt[: cpu.idtr.limit + 1]
    tss = tss if tr_selector else b""
    monitor = xp_monitor(page_tables() if pages is None else pages)
    stack_walks = walk_stack_tops(cpu, tss, monitor) if walk else None
    handler_walks = walk_handlers(cpu, idt, cached(phys_reader(monitor))) if walk else None
    table = symbols if symbols is not None else Symbols(syms, section_data=sections)
    return TargetState(cpu, idt, gdt, tss, stack_walks, handler_walks, sev, unread or {}), table


def verdicts(state_and_symbols) -> dict[str, Verdict]:
    return {c.id: c.verdict for c in run_all(decode(*state_and_symbols))}


def gates_with(vector: int, **changes):
    gates = {v: dict(offset=handler(v), selector=KERNEL_CS, ist=ISTS.get(v, 0),
                     type=0xF if v in TRAPS else 0xE, dpl=TRAPS.get(v, 0)) for v in range(33)}
    gates[vector] = {**gates[vector], **changes}
    return gates


def checks_of(state_and_symbols) -> dict:
    return {c.id: c for c in run_all(decode(*state_and_symbols))}


def gdt_with(index: int, raw: bytes) -> bytes:
    entries = [struct.pack("<Q", d) for d in (0, KCODE, KDATA, UDATA, UCODE)]
    tss_desc = encode_system(type=SYSTEM_TYPE_TSS_BUSY, base=TSS_ADDR, limit=0x67)
    table = b"".join(entries) + tss_desc
    return table[: index * 8] + raw + table[index * 8 + len(raw):]


#: A GDT with no code outside ring 0: the user descriptors are null.
RING0_GDT = gdt_with(3, bytes(16))
ALL_CHECKS = {
    "idt.limit", "idt.offset-canonical", "idt.handler-symbol", "idt.handler-mapped", "idt.gate-type", "idt.selector",
    "gdt.null", "tss.tr-descriptor", "tss.stack-alignment", "tss.stacks-mapped", "idt.df-ist", "tss.stacks-distinct",
    "idt.declared", "idt.handler-entry", "tss.stack-top", "tss.base-symbol", "gdt.declared",
    "idt.loaded", "state.readable",
}


def test_correct_tables_pass_every_check():
    v = verdicts(make())
    assert set(v) == ALL_CHECKS
    assert all(x is Verdict.PASS for x in v.values()), v


def _tss(**kw):
    base = dict(rsp=(top("RSP0_STACK"), 0, 0), ist=(top("DOUBLE_FAULT_STACK"), top("NMI_STACK"), 0, 0, 0, 0, 0))
    base.update(kw)
    return encode_tss(**base)


def _gates(**vectors):
    """The default gates with some changed: `v29=dict(ist=3)`; `v8=None` removes a gate."""
    gates = gates_with(0)
    for key, change in vectors.items():
        vector = int(key[1:])
        if change is None:
            gates.pop(vector)
        else:
            gates[vector] = {**gates.get(vector, dict(offset=handler(0), selector=KERNEL_CS)), **change}
    return gates


#: The CPU in ring 3 at the stop (CS 0x23, CPL 3): the next interrupt loads RSP0.
RING3 = {"CS": SegmentRegister(0x23, 0, 0xFFFFFFFF, 0xAFFB00)}
NON_CANONICAL = 0x0000_8000_0000_0000
LDT = {"LDT": SegmentRegister(0x30, 0x1000, 0xFF, 0x8200)}
NO_IST = _gates(v8=dict(ist=0), v2=dict(ist=0))
#: what a WARN for a state that goes wrong only once ring 3 runs says
LATER = ("the first interrupt or exception in ring 3 would", "CPL 0 at the stop", "once the kernel runs code in ring 3")
VC_TOP = 0x17F000  # an IST stack top whose page (0x17E000) is left unmapped
VC_GATES = _gates(v29=dict(ist=3))
VC_TSS = _tss(ist=(top("DOUBLE_FAULT_STACK"), top("NMI_STACK"), VC_TOP, 0, 0, 0, 0, 0)[:7])
VC_PAGES = page_tables(unmapped={VC_TOP - 4096})
STUBS = {f"v{v}": dict(offset=NOT_A_STACK + 16 * (v - 32)) for v in range(32, 48)}
SEV_ON = "handle: 1"  # QEMU's `info sev` of a VM with SEV: whether ES is on is not shown

WRONG = [
    ("no IDT loaded, interrupts on", dict(idtr_limit=0, values={"RFL": 0x202}), "idt.loaded"),
    ("the TSS unreadable", dict(unread={"TSS": "TSS at 0x104000 (104 bytes) cannot be read"}), "state.readable"),
    # (case id, make() arguments, check that must FAIL)
    ("idtr-too-short", dict(idtr_limit=16 * 16 - 1), "idt.limit"),
    ("idtr-not-whole-gates", dict(idtr_limit=0x107), "idt.limit"),
    ("non-canonical-offset", dict(gates=gates_with(13, offset=0x0000_8000_0000_1000)), "idt.offset-canonical"),
    ("handler-outside-symbols-unmapped", dict(gates=gates_with(6, offset=0x50_0000)), "idt.handler-symbol"),
    ("handler-outside-symbols-nx", dict(gates=gates_with(6, offset=NOT_A_STACK), pages=page_tables(nx={NOT_A_STACK})),
     "idt.handler-symbol"),
    ("handler-unmapped", dict(gates=gates_with(6, offset=UNMAPPED)), "idt.handler-mapped"),
    ("handlers-in-nx-page", dict(pages=page_tables(nx={HANDLER_BASE})), "idt.handler-mapped"),
    ("handler-xd-without-nxe", dict(pages=page_tables(nx={HANDLER_BASE}), values={"EFER": 0x500}), "idt.handler-mapped"),
    ("handlers-in-user-page-smep", dict(pages=page_tables(user={HANDLER_BASE}), values={"CR4": 0x6A0 | 1 << 20}),
     "idt.handler-mapped"),
    ("call-gate-type", dict(gates=gates_with(14, type=0xC)), "idt.gate-type"),
    ("selector-is-data", dict(gates=gates_with(13, selector=0x10)), "idt.selector"),
    ("selector-beyond-gdt", dict(gates=gates_with(13, selector=0x40)), "idt.selector"),
    ("selector-is-user-code", dict(gates=gates_with(0, selector=0x20)), "idt.selector"),
    ("selector-is-32bit-code", dict(gdt=gdt_with(1, struct.pack("<Q", 0x00CF9A000000FFFF))), "idt.selector"),
    ("gdt-entry0-not-null", dict(gdt=gdt_with(0, struct.pack("<Q", KDATA))), "gdt.null"),
    ("tss-available-not-busy", dict(gdt=gdt_with(5, encode_system(type=SYSTEM_TYPE_TSS_AVAILABLE, base=TSS_ADDR, limit=0x67))), "tss.tr-descriptor"),
    ("tss-limit-short", dict(gdt=gdt_with(5, encode_system(type=SYSTEM_TYPE_TSS_BUSY, base=TSS_ADDR, limit=0x50))), "tss.tr-descriptor"),
    ("tr-null", dict(tr_selector=0), "tss.tr-descriptor"),
    ("tr-null-in-ring3", dict(tr_selector=0, gates=NO_IST, segments=RING3, lab_kernel=False), "tss.tr-descriptor"),
    ("ist-equals-rsp0-in-ring3", dict(tss=_tss(ist=(top("DOUBLE_FAULT_STACK"), top("RSP0_STACK"), 0, 0, 0, 0, 0)),
                                      segments=RING3), "tss.stacks-distinct"),
    ("tr-null-ring0-only-but-ist", dict(tr_selector=0, gdt=RING0_GDT, lab_kernel=False), "tss.tr-descriptor"),
    ("used-ist-zero", dict(tss=_tss(ist=(top("DOUBLE_FAULT_STACK"), 0, 0, 0, 0, 0, 0))), "tss.stack-alignment"),
    ("rsp0-zero-in-ring3", dict(tss=_tss(rsp=(0, 0, 0)), segments=RING3), "tss.stack-alignment"),
    ("rsp0-non-canonical-in-ring3", dict(tss=_tss(rsp=(NON_CANONICAL, 0, 0)), segments=RING3), "tss.stack-alignment"),
    ("ist-non-canonical", dict(tss=_tss(ist=(0x0000_8000_0000_0000, top("NMI_STACK"), 0, 0, 0, 0, 0))), "tss.stack-alignment"),
    ("df-stack-top-unmapped", dict(pages=page_tables(unmapped={top("DOUBLE_FAULT_STACK") - 4096})), "tss.stacks-mapped"),
    ("nmi-stack-top-unmapped", dict(pages=page_tables(unmapped={top("NMI_STACK") - 4096})), "tss.stacks-mapped"),
    ("rsp0-top-read-only-in-ring3", dict(pages=page_tables(read_only={top("RSP0_STACK") - 4096}), segments=RING3),
     "tss.stacks-mapped"),
    ("vc-stack-unmapped-with-sev", dict(gates=VC_GATES, tss=VC_TSS, pages=VC_PAGES, sev=SEV_ON, lab_kernel=False),
     "tss.stacks-mapped"),
    ("vc-stack-unmapped-sev-unread", dict(gates=VC_GATES, tss=VC_TSS, pages=VC_PAGES, sev=None, lab_kernel=False),
     "tss.stacks-mapped"),
    ("vc-stack-unmapped-shared-with-nmi", dict(gates=_gates(v29=dict(ist=3), v2=dict(ist=3)), tss=VC_TSS,
                                                pages=VC_PAGES, lab_kernel=False), "tss.stacks-mapped"),
    ("df-not-present", dict(gates=_gates(v8=dict(present=False))), "idt.df-ist"),
    ("df-beyond-idt-limit", dict(idtr_limit=8 * 16 - 1), "idt.df-ist"),
    ("df-ist-equals-rsp0-in-ring3", dict(tss=_tss(ist=(top("RSP0_STACK"), top("NMI_STACK"), 0, 0, 0, 0, 0)),
                                         segments=RING3), "idt.df-ist"),
    ("two-ists-same-stack", dict(tss=_tss(ist=(top("DOUBLE_FAULT_STACK"), top("DOUBLE_FAULT_STACK"), 0, 0, 0, 0, 0))), "tss.stacks-distinct"),
    ("bp-interrupt-gate-declared-trap", dict(gates=gates_with(3, type=0xE)), "idt.declared"),
    ("gate-not-declared", dict(gates={**gates_with(0), 200: dict(offset=handler(0), selector=KERNEL_CS)}), "idt.declared"),
    ("handler-mid-function", dict(gates=gates_with(5, offset=handler(5) + 4)), "idt.handler-entry"),
    ("rsp0-below-top", dict(tss=_tss(rsp=(top("RSP0_STACK") - 16, 0, 0))), "tss.stack-top"),
    ("tss-base-off-by-8", dict(gdt=gdt_with(5, encode_system(type=SYSTEM_TYPE_TSS_BUSY, base=TSS_ADDR + 8, limit=0x67))), "tss.base-symbol"),
    ("user-code-dpl0", dict(gdt=gdt_with(4, struct.pack("<Q", 0x00AF9B000000FFFF))), "gdt.declared"),
]


def _stub_map(tmp: Path) -> Symbols:
    """Debian's /boot/System.map-*: one line."""
    path = tmp / "System.map-6.1.0-57-amd64"
    path.write_text("ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n")
    return Symbols.from_system_map(path)


#: Patterns of healthy kernels: (case id, make() arguments, check, its verdict, words of its
#: evidence). Each is another kernel's (lab_kernel=False), and no check of it FAILs.
GRADED = [
    ("rsp0-zero-ring0-only", dict(tss=_tss(rsp=(0, 0, 0)), gdt=RING0_GDT), "tss.stack-alignment", Verdict.INFO,
     ("RSP0 is 0", "0xfffffffffffffff8", "never loads RSP0", "no present code descriptor with DPL > 0")),
    ("rsp0-unmapped-ring0-only", dict(tss=_tss(rsp=(UNMAPPED + 4096, 0, 0)), gdt=RING0_GDT), "tss.stacks-mapped",
     Verdict.INFO, ("RSP0", "is not mapped", "never loads RSP0")),
    ("df-on-ist0", dict(gates=_gates(v8=dict(ist=0))), "idt.df-ist", Verdict.WARN,
     ("IST=0", "stack overflow", "triple-fault")),
    ("vc-stack-unmapped-no-sev", dict(gates=VC_GATES, tss=VC_TSS, pages=VC_PAGES), "tss.stacks-mapped", Verdict.WARN,
     ("IST3 (vector 29 #VC)", "is not mapped", "only an SEV-ES guest raises #VC", "SEV is not enabled")),
    ("vc-stack-unavailable-in-this-qemu", dict(gates=VC_GATES, tss=VC_TSS, pages=VC_PAGES,
                                               sev="SEV is not available in this QEMU"),
     "tss.stacks-mapped", Verdict.WARN, ("SEV is not available",)),
    ("runtime-stubs", dict(gates=_gates(**STUBS)), "idt.handler-symbol", Verdict.INFO,
     ("vectors 32-47", "16 handlers at 0x150000-0x1500f0", "inside no symbol", "mapped executable", "run time")),
    ("runtime-stubs-mapped", dict(gates=_gates(**STUBS)), "idt.handler-mapped", Verdict.PASS, ("all mapped executable",)),
    ("outside-symbols-unwalked", dict(gates=_gates(**STUBS), walk=False), "idt.handler-symbol", Verdict.WARN,
     ("page tables were not read",)),
    ("handlers-unwalked", dict(walk=False), "idt.handler-mapped", Verdict.SKIP, ("not read",)),
    ("rsp0-8-off-16", dict(tss=_tss(rsp=(top("RSP0_STACK") - 8, 0, 0))), "tss.stack-alignment", Verdict.WARN,
     ("RSP0", "8 bytes off 16", "aligns RSP down", "SDM §6.14.2")),
    ("ist-8-off-16", dict(tss=_tss(ist=(top("DOUBLE_FAULT_STACK") - 8, top("NMI_STACK"), 0, 0, 0, 0, 0))),
     "tss.stack-alignment", Verdict.WARN, ("IST1", "8 bytes off 16", f"{top('DOUBLE_FAULT_STACK') - 16:#x}")),
    ("tr-null-nothing-needs-it", dict(tr_selector=0, gdt=RING0_GDT, gates=_gates(v8=dict(ist=0), v2=dict(ist=0))),
     "tss.tr-descriptor", Verdict.INFO, ("TR is null", "nothing needs one")),
    ("rsp0-zero-user-code-ring0-now", dict(tss=_tss(rsp=(0, 0, 0))), "tss.stack-alignment", Verdict.WARN,
     ("RSP0 is 0: the first interrupt or exception in ring 3 would push its frame at 0xfffffffffffffff8", *LATER,
      "GDT 0x0020: present code, DPL 3")),
    ("rsp0-zero-syscall-ring0-now", dict(tss=_tss(rsp=(0, 0, 0)), gdt=RING0_GDT, values={"EFER": 0xD01}),
     "tss.stack-alignment", Verdict.WARN, ("RSP0 is 0", *LATER, "EFER.SCE=1")),
    ("rsp0-zero-ldt-ring0-now", dict(tss=_tss(rsp=(0, 0, 0)), gdt=RING0_GDT, segments=LDT),
     "tss.stack-alignment", Verdict.WARN, ("RSP0 is 0", *LATER, "an LDT is loaded")),
    ("rsp0-non-canonical-ring0-now", dict(tss=_tss(rsp=(NON_CANONICAL, 0, 0))), "tss.stack-alignment", Verdict.WARN,
     ("RSP0 0x800000000000 is not canonical", *LATER)),
    ("rsp0-read-only-ring0-now", dict(pages=page_tables(read_only={top("RSP0_STACK") - 4096})), "tss.stacks-mapped",
     Verdict.WARN, ("RSP0", "is mapped read-only", *LATER)),
    ("df-ist-equals-rsp0-ring0-now", dict(tss=_tss(ist=(top("RSP0_STACK"), top("NMI_STACK"), 0, 0, 0, 0, 0))),
     "idt.df-ist", Verdict.WARN, ("IST1", "equals RSP0", "first handler entered from ring 3", *LATER[1:])),
    ("ist-equals-rsp0-ring0-now", dict(tss=_tss(ist=(top("DOUBLE_FAULT_STACK"), top("RSP0_STACK"), 0, 0, 0, 0, 0))),
     "tss.stacks-distinct", Verdict.WARN, ("RSP0 and IST2 both point to", *LATER[1:])),
    ("tr-null-only-ring3-needs-it", dict(tr_selector=0, gates=NO_IST), "tss.tr-descriptor", Verdict.WARN,
     ("TR is the null selector: the first interrupt or exception in ring 3 would find no TSS", *LATER[1:])),
    ("tr-null-only-ring3-needs-it-skips", dict(tr_selector=0, gates=NO_IST), "tss.stacks-mapped", Verdict.SKIP,
     ("needed only once ring 3 runs",)),
    ("no-stack-in-use-mapped", dict(tss=_tss(rsp=(0, 0, 0)), gdt=RING0_GDT, gates=NO_IST), "tss.stacks-mapped",
     Verdict.SKIP, ("no stack to walk", "RSP0 is 0 (tss.stack-alignment)", "no gate uses an IST")),
    ("no-stack-in-use-distinct", dict(tss=_tss(rsp=(0, 0, 0)), gdt=RING0_GDT, gates=NO_IST), "tss.stacks-distinct",
     Verdict.SKIP, ("no stack in use to compare", "RSP0 unused")),
    ("one-stack-in-use", dict(gdt=RING0_GDT, gates=_gates(v2=dict(ist=0))), "tss.stacks-distinct", Verdict.PASS,
     ("1 stack in use (IST1): nothing to share it", "RSP0 unused")),
    ("rsp0-unused-mapped", dict(gdt=RING0_GDT), "tss.stacks-mapped", Verdict.PASS,
     ("top pages mapped writable: RSP0 -> ", "(RSP0 unused)", "IST1 -> ", "IST2 -> ")),
    ("tr-null-tss-checks-skip", dict(tr_selector=0, gdt=RING0_GDT, gates=_gates(v8=dict(ist=0), v2=dict(ist=0))),
     "tss.stacks-mapped", Verdict.SKIP, ("nothing needs one",)),
]


@pytest.mark.parametrize("case, kwargs, check, expected, words", GRADED, ids=[g[0] for g in GRADED])
def test_healthy_kernel_patterns_are_graded_not_failed(case, kwargs, check, expected, words):
    checks = checks_of(make(lab_kernel=False, **kwargs))
    c = checks[check]
    assert c.verdict is expected, (case, c.verdict, c.evidence)
    text = " ".join(c.evidence)
    assert all(w in text for w in words), (case, c.evidence)
    assert not [x.id for x in checks.values() if x.verdict is Verdict.FAIL], \
        [(x.id, x.evidence) for x in checks.values() if x.verdict is Verdict.FAIL]


def test_a_system_map_stub_is_one_line_not_a_failure_per_handler(tmp_path):
    checks = checks_of(make(lab_kernel=False, symbols=_stub_map(tmp_path)))
    c = checks["idt.handler-symbol"]
    assert c.verdict is Verdict.SKIP
    [line] = c.evidence
    assert "System.map" in line and "holds 1 symbol: not a real symbol table" in line, line
    assert not [x.id for x in checks.values() if x.verdict is Verdict.FAIL]


def test_a_real_system_map_still_judges_handlers(tmp_path):
    """Enough symbols: a handler outside them is judged as with an ELF's table."""
    path = tmp_path / "System.map"
    path.write_text("".join(f"{handler(v):016x} T isr_{v}\n" for v in range(33)) + f"{handler(33):016x} T _etext\n")
    checks = checks_of(make(lab_kernel=False, symbols=Symbols.from_system_map(path), gates=gates_with(6, offset=0x50_0000)))
    assert checks["idt.handler-symbol"].verdict is Verdict.FAIL


def test_mixed_findings_say_which_is_which():
    """RSP0 0 in a kernel with user code (FAIL) beside an IST 8 bytes off (WARN): one check,
    the worst verdict, each line naming its own severity."""
    tss = _tss(rsp=(0, 0, 0), ist=(top("DOUBLE_FAULT_STACK") - 8, top("NMI_STACK"), 0, 0, 0, 0, 0))
    c = checks_of(make(tss=tss, segments=RING3))["tss.stack-alignment"]
    assert c.verdict is Verdict.FAIL
    assert c.evidence[0].startswith("FAIL: RSP0 is 0") and c.evidence[1].startswith("WARN: IST1"), c.evidence


def test_outer_rings_name_what_reaches_ring3():
    state, symbols = make(values={"EFER": 0xD01}, segments={"CS": SegmentRegister(0x23, 0, 0xFFFFFFFF, 0xAFFB00)})
    reasons = decode(state, symbols).outer_rings()
    assert any("0x0020" in r and "DPL 3" in r for r in reasons), reasons
    assert any("EFER.SCE" in r for r in reasons) and any("CPL 3" in r for r in reasons), reasons
    state, symbols = make(gdt=RING0_GDT)
    assert decode(state, symbols).outer_rings() == []


def test_stacks_are_walked_where_the_cpu_first_pushes():
    """8 bytes off 16: the CPU aligns down first, so the first push is 16 below the pointer."""
    ptr = top("DOUBLE_FAULT_STACK") - 8
    state, _ = make(tss=_tss(ist=(ptr, top("NMI_STACK"), 0, 0, 0, 0, 0)))
    assert state.stack_walks[ptr].va == ptr - 16


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


#: Plurals that read wrong ("1 distinct stacks"): a count of 1 before a plural noun.
ONE_PLURAL = re.compile(r"(?<![\w.])1 (?:distinct )?(?:stacks|handlers|gates|pointers|CPUs|symbols|pages)\b")


@pytest.mark.parametrize("case, kwargs", [("correct", {})] + [(w[0], w[1]) for w in WRONG]
                         + [(g[0], {"lab_kernel": False, **g[1]}) for g in GRADED],
                         ids=["correct"] + [w[0] for w in WRONG] + [g[0] for g in GRADED])
def test_every_verdict_says_what_it_saw(case, kwargs):
    """No check has empty evidence, no evidence line is a list with nothing after its colon,
    and no count of one reads as a plural; a PASS says what it checked."""
    for c in run_all(decode(*make(**kwargs))):
        assert c.evidence and all(line.strip() for line in c.evidence), (case, c.id, c.evidence)
        for line in c.evidence:
            assert not line.rstrip().endswith(":"), (case, c.id, line)
            assert not ONE_PLURAL.search(line), (case, c.id, line)

