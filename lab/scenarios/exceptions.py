"""Exception scenarios: one entry per `fire` harness in kernel/src/fire.rs.

Each entry states what the Intel SDM vol. 3A (§6.15, "Exception and Interrupt Reference") and
the AMD APM vol. 2 (§8.2) say the CPU delivers: the vector, its class (fault: saved RIP is the
faulting instruction; trap: the next one), the error code, CR2. Where an accelerator has been
measured to differ, the difference is recorded in lab/scenarios/deviations.py, keyed by the
accelerator and the QEMU versions it belongs to: a run that shows exactly the deviations of its
version is reported as DEVIATION, one that matches the manual where a deviation is recorded as
STALE, anything else as FAIL.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import UserError
from lab.labkernel.contract import NOT_PRESENT_DS, NOT_PRESENT_GATE, SOFT_INT_VECTOR, ZERO_GATE
from lab.scenarios import by_name
from lab.x86.frames import RFLAGS_TF, pf_error_code, selector_error_code
from lab.x86.gdt import SEGMENT, decode_selector
from lab.x86.vectors import BP, DB, DE, GP, MF, NM, NMI, NP, PF, SS, UD, XM

NOT_PRESENT_DATA_INDEX = decode_selector(NOT_PRESENT_DS)[0]
SELECTOR_UNIT = SEGMENT.size  # a selector's index counts 8-byte slots

STYLES = ("x86-interrupt", "stub")
#: Seed 002's stub as a third style (kernel/src/arch/x86_64/tutorial_stubs.rs): not in STYLES
#: (`both`, `lab claims`, the soak), and only for vectors that push an error code: on the
#: others its `add rsp, 8` removes the saved RIP and its return faults (`trial tutorial`).
TUTORIAL_STYLE = "tutorial"

#: Where the saved RIP must point: the raising instruction, the one after it, the fetch
#: address (CR2), or anywhere in the wait loop (asynchronous events).
RIP_FAULT, RIP_NEXT, RIP_CR2, RIP_LOOP = "fault", "next", "cr2", "loop"


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
    #: Measured under the gdb observer on KVM (gdb's guest debugging); what the host's KVM
    #: itself cannot run is measured per host (lab/experiments/kvm_probe.py), not written here.
    kvm_gdb_unsupported: str | None = None

    @property
    def software(self) -> bool:
        """Raised by `int n`: the CPU pushes no error code, whatever the vector."""
        return self.name == "int"

    @property
    def deviations(self):
        """Every deviation recorded for this scenario (lab/scenarios/deviations.py)."""
        from lab.scenarios.deviations import for_scenario

        return for_scenario(self.name)

    @property
    def symbol(self) -> str:
        return self.name.replace("-", "_")


CATALOG: tuple[ExceptionScenario, ...] = (
    ExceptionScenario("de", DE, "div by a zero quadword"),
    ExceptionScenario("db-int1", DB, "INT1 (ICEBP, opcode F1)", rip=RIP_NEXT),
    ExceptionScenario("db-tf", DB, "single step: POPF sets RFLAGS.TF, #DB after the next instruction",
                      rip=RIP_NEXT, rflags_set=RFLAGS_TF,
                      kvm_gdb_unsupported="with gdb attached, KVM intercepts #DB for guest debugging; "
                                      "here the guest's own TF single-step then re-enters the #DB "
                                      "handler endlessly (measured: 93,037 entries)"),
    ExceptionScenario("nmi", NMI, "spin loop with IF=0; the host injects an NMI (QMP inject-nmi; on an AP: "
                      "the boot CPU's NMI IPI to it alone)", rip=RIP_LOOP,
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
                      error_code=selector_error_code(index=NOT_PRESENT_GATE, idt=True)),
    ExceptionScenario("gp-nogate", GP, "int 0x42: an all-zero IDT entry (type 0 is invalid)",
                      error_code=selector_error_code(index=ZERO_GATE, idt=True)),
    ExceptionScenario("np-seg", NP, "mov ds, a selector whose descriptor has P=0",
                      error_code=selector_error_code(index=NOT_PRESENT_DATA_INDEX)),
    ExceptionScenario("ss", SS, "mov ss, a selector whose descriptor has P=0",
                      error_code=selector_error_code(index=NOT_PRESENT_DATA_INDEX)),
    ExceptionScenario("ss-noncanonical", SS, "mov rax, [rbp] with RBP non-canonical (SS-relative)",
                      error_code=0, operands=("rbp",)),
    ExceptionScenario("gp-noncanonical", GP, "mov rax, [0x8000000000000000]", error_code=0),
    ExceptionScenario("gp-msr", GP, "rdmsr of an MSR that does not exist", error_code=0,
                      operands=("rcx",)),
    ExceptionScenario("pf-read", PF, "read a not-present page", error_code=pf_error_code(),
                      cr2_page=0),
    ExceptionScenario("pf-write", PF, "write a read-only page (CR0.WP=1)",
                      error_code=pf_error_code(p=1, w=1), cr2_page=1),
    ExceptionScenario("pf-nx", PF, "jump to an execute-disable page", rip=RIP_CR2,
                      error_code=pf_error_code(p=1, id=1), cr2_page=2),
    ExceptionScenario("pf-rsvd", PF, "read through a PTE with a reserved bit set",
                      error_code=pf_error_code(p=1, rsvd=1), cr2_page=3),
    ExceptionScenario("mf", MF, "x87 1/0 with ZE unmasked, reported at the next fwait"),
    ExceptionScenario("xm", XM, "divss 1/0 with MXCSR.ZM clear"),
    ExceptionScenario("int", SOFT_INT_VECTOR, "int N (a software interrupt; default 0x80)",
                      rip=RIP_NEXT),
)

BY_NAME = {s.name: s for s in CATALOG}


def get(name: str) -> ExceptionScenario:
    return by_name(BY_NAME, name, "exception scenario", "the catalog")


def check_style(style: str) -> str:
    if style not in (*STYLES, TUTORIAL_STYLE):
        raise UserError(f"unknown handler style {style!r}; styles: {', '.join((*STYLES, TUTORIAL_STYLE))}")
    return style


def check_tutorial_plan(plan) -> None:
    """The tutorial style returns only where the CPU pushed an error code; any other vector
    would lose its frame and halt the kernel, so it is refused in one line."""
    from lab.x86.vectors import pushes_error_code

    bad = [s.name for s, st in plan if st == TUTORIAL_STYLE and (s.software or not pushes_error_code(s.vector))]
    if bad:
        raise UserError(f"the tutorial style returns only from vectors that push an error code; not: "
                        f"{', '.join(bad)} (lab claims --seed 002 shows what it does there)")
