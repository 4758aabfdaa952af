"""The cross-CPU checks (lab/checks/smp.py) on data: a correct 4-CPU machine (each CPU its own
GDT, TSS, stacks and GS base, one IDT) PASSes; each case breaks one thing the way an SMP
bring-up goes wrong and names the check that must FAIL (or WARN). Also the parsers of
`info registers -a` and of gdb's thread details, on QEMU 7.2's own text."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest

from lab.checks import smp
from lab.checks.base import Verdict
from lab.checks.inspect import run_all
from lab.target.cpu import CpuInfo, SegmentRegister, TableRegister, TargetState, parse_info_registers, walk_stack_tops
from lab.target.cpus import CpuState, split_all_registers, thread_cpu
from lab.target.symbols import Symbols
from lab.x86.gdt import SYSTEM_TYPE_TSS_AVAILABLE, SYSTEM_TYPE_TSS_BUSY, encode_system
from lab.x86.idt import encode_gate
from lab.x86.tss import encode_tss

DATA = Path(__file__).parent / "data"
KCODE, KDATA, UDATA, UCODE = 0x00AF9B000000FFFF, 0x00CF93000000FFFF, 0x00CFF3000000FFFF, 0x00AFFB000000FFFF
KERNEL_CS, TR = 0x08, 0x28
IDT_ADDR = 0x100000
#: CPU k's GDT, TSS, stacks and per-CPU area sit in its own 64 KiB block from here.
CPU_BLOCK, BLOCK = 0x110000, 0x10000
ISTS = {8: 1, 2: 2}  # vector -> IST slot (#DF IST1, NMI IST2)
PML4_AT, PDPT_AT, PD_AT, PT_AT = 0x1000, 0x2000, 0x3000, 0x4000
P, RW = 1, 2


def block(k: int) -> int:
    return CPU_BLOCK + k * BLOCK


def xp_monitor():
    """QEMU's HMP `xp` over page tables mapping the first 2 MiB writable (4 KiB pages)."""
    mem = {PML4_AT: PDPT_AT | P | RW, PDPT_AT: PD_AT | P | RW, PD_AT: PT_AT | P | RW}
    mem.update({PT_AT + 8 * i: i * 4096 | P | RW for i in range(512)})

    def monitor(command: str) -> str:
        _, fmt, addr = command.split()
        words, address = int(fmt[1:-2]), int(addr, 16)
        return "\n".join(f"{address + 8 * i:016x}: {mem.get(address + 8 * i, 0):#018x}" for i in range(words))
    return monitor


IDT = b"".join(encode_gate(offset=0x104000 + 0x40 * v, selector=KERNEL_CS, ist=ISTS.get(v, 0), type=0xE, dpl=0)
               if v < 33 else bytes(16) for v in range(256))


def cpu(k: int, *, tss_at: int | None = None, rsp0: int | None = None, ist: tuple[int, int] | None = None,
        gs: int | None = None, kgs: int = 0, tr: int = TR, long_mode: bool = True, idt: bytes = IDT,
        idt_at: int = IDT_ADDR, busy: bool = True, cs: int = KERNEL_CS) -> CpuState:
    """CPU k, correct unless told otherwise: its own GDT (TSS descriptor at 0x28), its own TSS
    (RSP0, IST1 #DF, IST2 NMI: stacks at the top of 4 KiB slots in its block), GS base its block."""
    b = block(k)
    tss_at = b + 0x100 if tss_at is None else tss_at
    rsp0 = b + 0x4000 if rsp0 is None else rsp0
    ist = (b + 0x6000, b + 0x8000) if ist is None else ist
    gs = b if gs is None else gs
    desc = encode_system(type=SYSTEM_TYPE_TSS_BUSY if busy else SYSTEM_TYPE_TSS_AVAILABLE, base=tss_at, limit=0x67)
    gdt = b"".join(struct.pack("<Q", d) for d in (0, KCODE, KDATA, UDATA, UCODE)) + desc
    tss = encode_tss(rsp=(rsp0, 0, 0), ist=(*ist, 0, 0, 0, 0, 0)) if tr else b""
    values = {"CR3": PML4_AT, "EFER": 0xD01 if long_mode else 0, "CR0": 0x80050033 if long_mode else 0x11}
    info = CpuInfo(gdtr=TableRegister(b, len(gdt) - 1), idtr=TableRegister(idt_at, len(idt) - 1),
                   segments={"CS": SegmentRegister(cs, 0, 0xFFFFFFFF, 0xAF9B00),
                             "TR": SegmentRegister(tr, tss_at if tr else 0, 0x67 if tr else 0xFFFF, 0x8900),
                             "LDT": SegmentRegister(0, 0, 0xFFFF, 0x8200)}, values=values)
    if not long_mode:
        gdt, idt, tss = b"", b"", b""
    walks = walk_stack_tops(info, tss, xp_monitor()) if tss else {}
    return CpuState(k, str(k + 1), TargetState(info, idt, gdt, tss, walks, sev="SEV is not enabled"), gs, kgs)


def machine(n: int = 4, **changes) -> list[CpuState]:
    """`changes`: {cpu index: cpu() keywords}."""
    return [cpu(k, **changes.get(f"cpu{k}", {})) for k in range(n)]


def checks(cpus: list[CpuState]) -> dict:
    return {c.id: c for c in smp.run(smp.views(cpus, Symbols.empty()))}


def test_a_correct_four_cpu_machine_passes_every_cross_cpu_check():
    found = checks(machine())
    assert set(found) == {"smp.started", "smp.tr-own-tss", "smp.stacks-distinct", "smp.stacks-mapped",
                          "smp.idt-shared", "smp.gs-distinct"}
    assert all(c.verdict is Verdict.PASS for c in found.values()), {i: c.evidence for i, c in found.items()}


def test_one_cpu_has_no_cross_cpu_checks_and_inspect_adds_none():
    assert checks(machine(1)) == {}
    view = smp.views(machine(1), Symbols.empty())[0].view
    assert not any(c.id.startswith("smp.") for c in run_all(view, []))


BROKEN = [
    # two CPUs with one IST stack: an NMI on both at once pushes two frames onto one stack
    ("shared NMI IST", {"cpu2": {"ist": (block(2) + 0x6000, block(1) + 0x8000)}}, "smp.stacks-distinct",
     Verdict.FAIL, "CPU 1 IST2 (vector 2 NMI) and CPU 2 IST2 (vector 2 NMI) all point to"),
    ("IST of one = RSP0 of another in ring 3", {"cpu0": {"cs": 0x23}, "cpu3": {"ist": (block(0) + 0x4000, block(3) + 0x8000)}},
     "smp.stacks-distinct", Verdict.FAIL, "CPU 0 RSP0 and CPU 3 IST1 (vector 8 #DF) all point to"),
    # CPU 0 is in ring 0 at the stop: its RSP0 collides only once it runs ring 3
    ("IST of one = RSP0 of another in ring 0", {"cpu3": {"ist": (block(0) + 0x4000, block(3) + 0x8000)}},
     "smp.stacks-distinct", Verdict.WARN, "the first interrupt in ring 3 on CPU 0 would push onto a stack"),
    ("one TSS for two CPUs", {"cpu1": {"tss_at": block(0) + 0x100, "rsp0": block(0) + 0x4000,
                                       "ist": (block(0) + 0x6000, block(0) + 0x8000)}},
     "smp.tr-own-tss", Verdict.FAIL, "CPU 0, CPU 1 all load the TSS at"),
    ("an AP in long mode with TR 0", {"cpu3": {"tr": 0}}, "smp.tr-own-tss", Verdict.FAIL,
     "CPU 3: TR is the null selector"),
    ("an AP whose TSS descriptor is not busy", {"cpu1": {"busy": False}}, "smp.tr-own-tss", Verdict.FAIL,
     "CPU 1: TR 0x0028 names a tss-available descriptor"),
    ("GS bases equal", {"cpu2": {"gs": block(1)}}, "smp.gs-distinct", Verdict.FAIL,
     "CPU 1, CPU 2 share the GS base"),
    ("GS base of a ring-3 CPU parked in KERNEL_GS_BASE equal to another's", {
        "cpu3": {"cs": 0x23, "gs": 0x7000, "kgs": block(0)}}, "smp.gs-distinct", Verdict.FAIL,
     "CPU 0, CPU 3 share the GS base"),
    ("GS base not yet set on an AP", {"cpu2": {"gs": 0}}, "smp.gs-distinct", Verdict.WARN,
     "CPU 2: kernel GS base 0"),
    ("an AP with another IDT holding other gates", {"cpu1": {"idt_at": 0x1F0000,
                                                              "idt": IDT[:16 * 6] + bytes(16) + IDT[16 * 7:]}},
     "smp.idt-shared", Verdict.WARN, "CPU 1's IDT at 0x1f0000 (limit 0xfff) differs from CPU 0's at 0x100000 in 1 vector(s): 6"),
    ("an AP's NMI stack unmapped", {"cpu2": {"ist": (block(2) + 0x6000, 0x300000)}}, "smp.stacks-mapped",
     Verdict.FAIL, "CPU 2: IST2 (vector 2 NMI) 0x300000"),
]


@pytest.mark.parametrize("what, changes, check_id, verdict, evidence", BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_machine_is_caught(what, changes, check_id, verdict, evidence):
    found = checks(machine(**changes))
    c = found[check_id]
    assert c.verdict is verdict, (what, c.evidence)
    assert any(evidence in line for line in c.evidence), c.evidence
    # and nothing else is blamed for it (a broken TSS also breaks the stacks it names)
    others = {i: x.verdict for i, x in found.items() if i != check_id and x.verdict is Verdict.FAIL}
    assert set(others) <= {"smp.stacks-distinct", "smp.stacks-mapped", "smp.tr-own-tss"}, others


def test_a_per_cpu_copy_of_the_idt_with_the_same_gates_passes():
    c = checks(machine(cpu1={"idt_at": 0x1F0000}))["smp.idt-shared"]
    assert c.verdict is Verdict.PASS and "per-CPU copies with the same gates: CPU 1's IDT at 0x1f0000" in c.evidence[0]


def test_an_ap_never_started_is_listed_not_checked():
    """An AP halted outside long mode (TR 0, as the firmware left it) takes no interrupt: INFO,
    and the comparisons run over the CPUs in long mode."""
    found = checks(machine(2, cpu1={"long_mode": False, "tr": 0, "gs": 0}))
    assert found["smp.started"].verdict is Verdict.INFO
    assert "CPU 1: not in long mode (CR0 0x11, EFER 0x0, TR 0x0000)" in found["smp.started"].evidence[0]
    assert found["smp.tr-own-tss"].verdict is Verdict.PASS
    for id in ("smp.stacks-distinct", "smp.idt-shared", "smp.gs-distinct"):
        assert found[id].verdict is Verdict.SKIP, found[id]


def test_no_gs_base_on_any_cpu_is_info():
    found = checks(machine(2, cpu0={"gs": 0}, cpu1={"gs": 0}))
    assert found["smp.gs-distinct"].verdict is Verdict.INFO


def test_swapped_gs_bases_are_the_same_set_so_the_generic_tier_cannot_tell():
    """Swapped between two CPUs, the GS bases are still distinct: the generic tier PASSes (only
    a kernel that says whose area is whose can tell: the lab-kernel tier)."""
    swapped = checks(machine(2, cpu0={"gs": block(1)}, cpu1={"gs": block(0)}))
    assert swapped["smp.gs-distinct"].verdict is Verdict.PASS


# -- parsers ------------------------------------------------------------------------------------

def test_info_registers_all_splits_per_cpu_on_qemu_text():
    """QEMU 7.2's `info registers -a` at the lab kernel's ready point with -smp 2: CPU 0 in
    long mode, CPU 1 halted in SeaBIOS's 32-bit code with TR 0."""
    blocks = split_all_registers((DATA / "qemu72_info_registers_all_2cpus.txt").read_text())
    assert sorted(blocks) == [0, 1]
    bsp, ap = parse_info_registers(blocks[0]), parse_info_registers(blocks[1])
    assert bsp.tr.selector == 0x28 and bsp.values["EFER"] & (1 << 10)
    assert ap.tr.selector == 0 and ap.values["EFER"] == 0 and ap.values["CR0"] == 0x11
    assert "HLT=1" in blocks[1] and "HLT=0" in blocks[0]


def test_info_registers_all_without_blocks_is_an_error():
    from lab.errors import GuestError

    with pytest.raises(GuestError, match="names no CPU#n block"):
        split_all_registers("RAX=0000000000000000\n")


@pytest.mark.parametrize("details, position, index", [
    ("CPU#0 [running]", 0, 0), ("CPU#3 [halted ]", 1, 3), ("", 2, 2), ("Thread 1.4", 3, 3)])
def test_thread_cpu(details, position, index):
    assert thread_cpu(details, position) == index


def test_kernel_gs_is_gs_base_in_ring0_and_kernel_gs_base_in_ring3():
    assert cpu(0, gs=0x5000, kgs=0x9000).kernel_gs == 0x5000
    assert cpu(0, gs=0x5000, kgs=0x9000, cs=0x23).kernel_gs == 0x9000
    assert dataclasses.replace(cpu(0), gs_base=1).gs_base == 1


@pytest.mark.parametrize("width", [80, 120])
def test_the_cpus_tables_fit_the_terminal(width):
    """Eight CPUs with 64-bit addresses (Linux's cpu_entry_area) side by side, as many per
    table as fit; no line wider than the terminal."""
    from io import StringIO

    from rich.console import Console

    from lab.present.render import cpus_tables
    from lab.present.rows import cpu_rows, shared_rows

    high = 0xFFFFFE0000000000
    cpus = [cpu(k, tss_at=high + k * 0x3B000, rsp0=high + k * 0x3B000 + 0x1000,
                ist=(high + k * 0x3B000 + 0x8000, high + k * 0x3B000 + 0xB000), gs=0xFFFF888007A00000 + k * 0x80000)
            for k in range(8)]
    views = smp.views(cpus, Symbols.empty())
    out = StringIO()
    console = Console(file=out, width=width)
    tables = cpus_tables(cpu_rows(views), shared_rows(views), width)
    for t in tables:
        console.print(t)
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    assert all(f"CPU {k}" in text for k in range(8)) and "0xfffffe000003b000" in text
    assert len(tables) == (4 if width == 80 else 2)


#: Linux's #VC pattern on every CPU: vector 29 on IST3, its page unmapped on each CPU.
VC_IDT = IDT[:16 * 29] + encode_gate(offset=0x104000, selector=KERNEL_CS, ist=3, type=0xE, dpl=0) + IDT[16 * 30:]


def _vc_machine(n: int = 4, nmi_unmapped_on: int | None = None) -> list[CpuState]:
    """Each CPU's IST3 (#VC) top at 0x300000 + k * 0x2000: outside the mapped 2 MiB."""
    out = []
    for k in range(n):
        c = cpu(k, idt=VC_IDT)
        nmi = 0x380000 if k == nmi_unmapped_on else block(k) + 0x8000
        tss = encode_tss(rsp=(block(k) + 0x4000, 0, 0), ist=(block(k) + 0x6000, nmi, 0x300000 + k * 0x2000, 0, 0, 0, 0))
        walks = walk_stack_tops(c.state.cpu, tss, xp_monitor())
        out.append(dataclasses.replace(c, state=dataclasses.replace(c.state, tss=tss, stack_walks=walks)))
    return out


def test_one_fact_is_one_finding_across_cpus():
    """Linux's unmapped #VC IST on 4 CPUs: tss.stacks-mapped WARNs for CPU 0, and
    smp.stacks-mapped does not grade it again (INFO naming the other CPUs), so one WARN."""
    cpus = _vc_machine()
    cvs = smp.views(cpus, Symbols.empty())
    found = {c.id: c for c in run_all(cvs[0].view, cvs)}
    assert found["tss.stacks-mapped"].verdict is Verdict.WARN, found["tss.stacks-mapped"].evidence
    c = found["smp.stacks-mapped"]
    assert c.verdict is Verdict.INFO, c.evidence
    assert c.evidence == ("CPUs 1, 2, 3: IST3 not mapped, as on CPU 0: graded once, by tss.stacks-mapped (WARN)",)
    assert [x.id for x in found.values() if x.verdict is Verdict.WARN] == ["tss.stacks-mapped"]


def test_a_fail_on_an_ap_is_never_folded():
    """Control: the same #VC pattern plus an unmapped NMI stack on CPU 2 alone: FAIL, naming CPU 2."""
    cvs = smp.views(_vc_machine(nmi_unmapped_on=2), Symbols.empty())
    c = {x.id: x for x in smp.run(cvs)}["smp.stacks-mapped"]
    assert c.verdict is Verdict.FAIL, c.evidence
    assert c.evidence[0].startswith("FAIL: CPU 2: IST2 (vector 2 NMI) 0x380000"), c.evidence
    assert any(e.startswith("INFO: CPUs 1, 2, 3: IST3 not mapped") for e in c.evidence), c.evidence

