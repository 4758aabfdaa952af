"""Exception scenarios: one entry per `fire` harness in kernel/src/fire.rs.

Each entry states what the Intel SDM vol. 3A (§6.15, "Exception and Interrupt Reference") and
the AMD APM vol. 2 (§8.2) say the CPU delivers: the vector, its class (fault: saved RIP is the
faulting instruction; trap: the next one), the error code, CR2. Where an accelerator has been
measured to differ, the difference is recorded as a `Deviation`, with what was seen: a run that
shows exactly that deviation is reported as DEVIATION, not PASS; a run that matches the manual
passes, whatever the record says.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import UserError
from lab.labkernel.contract import NOT_PRESENT_DS, NOT_PRESENT_GATE, SOFT_INT_VECTOR, ZERO_GATE
from lab.scenarios import by_name
from lab.x86.frames import RFLAGS_TF, pf_error_code, selector_error_code
from lab.x86.gdt import SEGMENT, decode_selector
from lab.x86.idt import GATE
from lab.x86.vectors import BP, DB, DE, GP, MF, NM, NMI, NP, PF, SS, UD, XM

NOT_PRESENT_DATA_INDEX = decode_selector(NOT_PRESENT_DS)[0]
SELECTOR_UNIT = SEGMENT.size  # a selector's index counts 8-byte slots

STYLES = ("x86-interrupt", "stub")

#: Where the saved RIP must point: the raising instruction, the one after it, the fetch
#: address (CR2), or anywhere in the wait loop (asynchronous events).
RIP_FAULT, RIP_NEXT, RIP_CR2, RIP_LOOP = "fault", "next", "cr2", "loop"


@dataclass(frozen=True)
class Deviation:
    """Measured behaviour of one accelerator that differs from the manual."""

    vector: int | None  # None: no exception at all
    error_code: int | None = None
    note: str = ""


@dataclass(frozen=True)
class ExceptionScenario:
    name: str
    vector: int
    summary: str
    rip: str = RIP_FAULT
    error_code: int | None = None  # exact value, for vectors that push one
    cr2_page: int | None = None  # index into the kernel's LAB_TEST_PAGES
    operands: tuple[str, ...] = ()  # registers the harness loads before the plant point
    rflags_set: int = 0  # RFLAGS bits the harness sets between the plant point and the event
    tcg: Deviation | None = None
    #: Measured under the gdb observer on KVM (gdb's guest debugging); what the host's KVM
    #: itself cannot run is measured per host (lab/experiments/kvm_probe.py), not written here.
    kvm_gdb_unsupported: str | None = None

    @property
    def software(self) -> bool:
        """Raised by `int n`: the CPU pushes no error code, whatever the vector."""
        return self.name == "int"

    @property
    def symbol(self) -> str:
        return self.name.replace("-", "_")


_IDT_INDEX_NOTE = ("QEMU 7.2 TCG puts vector*16+2 in the error code (the byte offset of the "
                   "16-byte gate / 8); the manual's index is the vector: vector*8+2")



def _qemu72_idt_code(vector: int) -> int:
    """The error code QEMU 7.2 TCG pushes for a fault on IDT entry `vector`: the gate's byte
    offset / 8 as the index (vector*16+2), where the manual has the vector (vector*8+2)."""
    return selector_error_code(index=vector * GATE.size // SELECTOR_UNIT, idt=True)


CATALOG: tuple[ExceptionScenario, ...] = (
    ExceptionScenario("de", DE, "div by a zero quadword"),
    ExceptionScenario("db-int1", DB, "INT1 (ICEBP, opcode F1)", rip=RIP_NEXT,
                      tcg=Deviation(UD, note="QEMU 7.2 TCG decodes F1 as an invalid opcode (#UD)")),
    ExceptionScenario("db-tf", DB, "single step: POPF sets RFLAGS.TF, #DB after the next instruction",
                      rip=RIP_NEXT, rflags_set=RFLAGS_TF,
                      kvm_gdb_unsupported="with gdb attached, KVM intercepts #DB for guest debugging; "
                                      "here the guest's own TF single-step then re-enters the #DB "
                                      "handler endlessly (measured: 93,037 entries)"),
    ExceptionScenario("nmi", NMI, "spin loop; the host injects an NMI (QMP inject-nmi)", rip=RIP_LOOP,
                      kvm_gdb_unsupported="under KVM here, resuming from gdb's hardware breakpoint inside "
                                      "the NMI handler makes no progress: the same breakpoint is "
                                      "reported again (measured: 5 times in a row)"),
    ExceptionScenario("bp", BP, "int3", rip=RIP_NEXT),
    ExceptionScenario("ud", UD, "ud2",
                      kvm_gdb_unsupported="under KVM here, gdb's hardware breakpoint at the x86-interrupt "
                                      "#UD handler reaches the guest as a #DB (measured: the kernel "
                                      "reports an unexpected #DB at isr_ud)"),
    ExceptionScenario("nm", NM, "CR0.TS=1, then an x87 instruction (fix-up: clear TS, re-execute)"),
    ExceptionScenario("np", NP, "int 0x41: a valid interrupt gate with P=0",
                      error_code=selector_error_code(index=NOT_PRESENT_GATE, idt=True),
                      tcg=Deviation(NP, _qemu72_idt_code(NOT_PRESENT_GATE), _IDT_INDEX_NOTE)),
    ExceptionScenario("gp-nogate", GP, "int 0x42: an all-zero IDT entry (type 0 is invalid)",
                      error_code=selector_error_code(index=ZERO_GATE, idt=True),
                      tcg=Deviation(GP, _qemu72_idt_code(ZERO_GATE), _IDT_INDEX_NOTE)),
    ExceptionScenario("np-seg", NP, "mov ds, a selector whose descriptor has P=0",
                      error_code=selector_error_code(index=NOT_PRESENT_DATA_INDEX)),
    ExceptionScenario("ss", SS, "mov ss, a selector whose descriptor has P=0",
                      error_code=selector_error_code(index=NOT_PRESENT_DATA_INDEX)),
    ExceptionScenario("ss-noncanonical", SS, "mov rax, [rbp] with RBP non-canonical (SS-relative)",
                      error_code=0, operands=("rbp",),
                      tcg=Deviation(GP, 0, "QEMU 7.2 TCG raises #GP(0), not #SS(0), for a "
                                           "non-canonical stack reference")),
    ExceptionScenario("gp-noncanonical", GP, "mov rax, [0x8000000000000000]", error_code=0),
    ExceptionScenario("gp-msr", GP, "rdmsr of an MSR that does not exist", error_code=0,
                      operands=("rcx",),
                      tcg=Deviation(None, note="QEMU 7.2 TCG returns 0 for unknown MSRs instead "
                                               "of raising #GP")),
    ExceptionScenario("pf-read", PF, "read a not-present page", error_code=pf_error_code(),
                      cr2_page=0),
    ExceptionScenario("pf-write", PF, "write a read-only page (CR0.WP=1)",
                      error_code=pf_error_code(p=1, w=1), cr2_page=1),
    ExceptionScenario("pf-nx", PF, "jump to an execute-disable page", rip=RIP_CR2,
                      error_code=pf_error_code(p=1, id=1), cr2_page=2),
    ExceptionScenario("pf-rsvd", PF, "read through a PTE with a reserved bit set",
                      error_code=pf_error_code(p=1, rsvd=1), cr2_page=3,
                      tcg=Deviation(PF, pf_error_code(rsvd=1), "QEMU 7.2 TCG reports RSVD "
                                                               "without P (error code 0x8)")),
    ExceptionScenario("mf", MF, "x87 1/0 with ZE unmasked, reported at the next fwait"),
    ExceptionScenario("xm", XM, "divss 1/0 with MXCSR.ZM clear",
                      tcg=Deviation(None, note="QEMU 7.2 TCG does not raise #XM for unmasked "
                                               "SSE exceptions")),
    ExceptionScenario("int", SOFT_INT_VECTOR, "int N (a software interrupt; default 0x80)",
                      rip=RIP_NEXT),
)

BY_NAME = {s.name: s for s in CATALOG}


def get(name: str) -> ExceptionScenario:
    return by_name(BY_NAME, name, "exception scenario", "the catalog")


def check_style(style: str) -> str:
    if style not in STYLES:
        raise UserError(f"unknown handler style {style!r}; styles: {', '.join(STYLES)}")
    return style
