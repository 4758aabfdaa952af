"""Recorded deviations: where an accelerator, in a range of QEMU versions, was measured to
differ from the manual, and why (the upstream code in QEMU's target/i386).

A deviation belongs to an accelerator and a half-open range of QEMU versions: `since` (the
first release known to show it; None: as far back as the lab knows) up to the first fixed
release. `fixed_in` lists where it was fixed: a stable branch's point release (10.0.6 fixes
the 10.0 series from there on) and the mainline release (10.2 fixes everything after it).
`measured` names the versions the lab actually saw it on. A field left at `AS_MANUAL` is what
the manual says; the others are what the deviating CPU does.

A run judges against the deviations recorded for its own accelerator and version
(lab/checks/frame.py `outcome`): the observation matches them -> DEVIATION; it matches the
manual although a deviation is recorded -> STALE (the record is wrong for this version, said in
the verdict); it matches neither -> FAIL, naming what the record holds for other versions.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.host.qemus import Version, parse_version_text, version_text
from lab.labkernel.contract import NOT_PRESENT_GATE, ZERO_GATE
from lab.x86.frames import pf_error_code, selector_error_code
from lab.x86.gdt import SEGMENT
from lab.x86.idt import GATE
from lab.x86.vectors import GP, NP, PF, UD

AS_MANUAL = -1  # a field the deviation leaves as the manual has it
NO_EXCEPTION = None  # the vector of "no exception at all"
NONCANONICAL = 0x8000_0000_0000_0000  # the address the lab's non-canonical scenarios use


def _v(text: str) -> Version:
    return parse_version_text(text)


def _short(v: Version) -> str:
    """A release as QEMU names it: 8.0, 10.0.6."""
    return version_text(v[:2]) if v[2] == 0 else version_text(v)


@dataclass(frozen=True)
class Deviation:
    """One measured difference from the manual, with where it lives upstream."""

    scenarios: tuple[str, ...]  # catalog names (lab/scenarios/exceptions.py), "ring3:<program>"
    summary: str  # what the CPU does instead, without a version
    vector: int | None = AS_MANUAL  # NO_EXCEPTION: nothing is raised
    error_code: int | None = AS_MANUAL
    cr2: int | None = AS_MANUAL  # CR2 at the handler, where the manual leaves it unchanged
    cause: str = ""  # "target/i386/tcg/seg_helper.c: do_interrupt64"
    accel: str = "tcg"
    since: Version | None = None
    fixed_in: tuple[Version, ...] = ()  # stable-branch fixes, then the mainline one
    measured: tuple[str, ...] = ()  # QEMU versions the lab saw it on

    def applies(self, accel: str, version: Version | None) -> bool:
        """Whether this deviation is expected of `accel` at QEMU `version` (None: unknown,
        judged as the oldest)."""
        if accel != self.accel:
            return False
        if version is None:
            return self.since is None
        if self.since is not None and version < self.since:
            return False
        for fix in self.fixed_in:
            same_series = fix[:2] == version[:2]
            if version >= fix and (same_series or fix == max(self.fixed_in)):
                return False
        return True

    @property
    def fixed_text(self) -> str:
        return " / ".join(_short(f) for f in self.fixed_in) if self.fixed_in else "unfixed"

    @property
    def range_text(self) -> str:
        """"QEMU < 8.0", "QEMU >= 8.0, < 10.0.6 / 10.2", "every QEMU version"."""
        low = f">= {_short(self.since)}" if self.since else ""
        high = f"< {self.fixed_text}" if self.fixed_in else ""
        return "QEMU " + ", ".join(p for p in (low, high) if p) if low or high else "all QEMU versions (unfixed)"

    def note(self, version: str) -> str:
        """The verdict's note: what was seen, on which QEMU, and why."""
        return (f"QEMU {version} {self.accel.upper()}: {self.summary} "
                f"({self.cause}; {'fixed in ' + self.fixed_text if self.fixed_in else 'unfixed'})")

    def to_json(self) -> dict:
        return {"scenarios": list(self.scenarios), "summary": self.summary, "accel": self.accel,
                "since": version_text(self.since) if self.since else None,
                "fixed_in": [version_text(f) for f in self.fixed_in], "cause": self.cause,
                "measured": list(self.measured)}


def _idt_code(vector: int) -> int:
    """The error code QEMU < 8.0 TCG pushes for a fault on IDT entry `vector`: the gate's byte
    offset / 8 as the index (vector*16+2), where the manual has the vector (vector*8+2)."""
    return selector_error_code(index=vector * GATE.size // SEGMENT.size, idt=True)


_SYSTEM = "target/i386/tcg/sysemu"  # renamed target/i386/tcg/system in later releases
DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(("np",), "puts vector*16+2 in the error code (the 16-byte gate's byte offset / 8); "
              "the manual's index is the vector: vector*8+2", vector=NP, error_code=_idt_code(NOT_PRESENT_GATE),
              cause="target/i386/tcg/seg_helper.c: do_interrupt64", fixed_in=(_v("8.0"),), measured=("7.2.22",)),
    Deviation(("gp-nogate",), "puts vector*16+2 in the error code (the 16-byte gate's byte offset / 8); "
              "the manual's index is the vector: vector*8+2", vector=GP, error_code=_idt_code(ZERO_GATE),
              cause="target/i386/tcg/seg_helper.c: do_interrupt64", fixed_in=(_v("8.0"),), measured=("7.2.22",)),
    Deviation(("db-int1",), "decodes INT1 (ICEBP, F1) as an invalid opcode (#UD)", vector=UD,
              cause="target/i386/tcg/translate.c: disas_insn (opcode F1)", fixed_in=(_v("9.1"),),
              measured=("7.2.22",)),
    Deviation(("ss-noncanonical",), "raises #GP(0), not #SS(0), for a non-canonical stack reference",
              vector=GP, error_code=0, cause=f"{_SYSTEM}/excp_helper.c: get_physical_address",
              measured=("7.2.22", "10.0.2")),
    Deviation(("gp-msr",), "returns 0 for an MSR that does not exist instead of raising #GP",
              vector=NO_EXCEPTION, cause=f"{_SYSTEM}/misc_helper.c: helper_rdmsr (default case)",
              measured=("7.2.22", "10.0.2")),
    Deviation(("pf-rsvd",), "reports a reserved-bit #PF without P in the error code (0x8, not 0x9)",
              vector=PF, error_code=pf_error_code(rsvd=1), cause=f"{_SYSTEM}/excp_helper.c: mmu_translate",
              measured=("7.2.22", "10.0.2")),
    Deviation(("xm",), "raises no #XM for an unmasked SSE exception (MXCSR's flag is set, nothing is "
              "raised)", vector=NO_EXCEPTION, cause="target/i386/ops_sse.h: the SSE helpers never "
              "check MXCSR's masks", measured=("7.2.22", "10.0.2")),
    Deviation(("gp-noncanonical", "ss-noncanonical"), f"writes CR2 ({NONCANONICAL:#x}) on a non-canonical "
              "#GP (the manual: only #PF writes CR2)", cr2=NONCANONICAL,
              cause=f"{_SYSTEM}/excp_helper.c: x86_cpu_tlb_fill (the TranslateFault's cr2 stored for every "
              "exception)", since=_v("8.0"), fixed_in=(_v("10.0.6"), _v("10.2")), measured=("10.0.2",)),
    Deviation(("ring3:ac",), "does not implement alignment checking (#AC): the misaligned load "
              "succeeds and the following ud2 raises #UD", vector=UD,
              cause="target/i386/tcg: no alignment check for CR0.AM with EFLAGS.AC in ring 3",
              measured=("7.2.22", "10.0.2")),
)


def for_scenario(name: str) -> tuple[Deviation, ...]:
    """Every deviation recorded for scenario `name`, on any accelerator or version."""
    return tuple(d for d in DEVIATIONS if name in d.scenarios)


def applicable(name: str, accel: str, version: Version | None) -> tuple[Deviation, ...]:
    """The deviations of scenario `name` expected on `accel` at QEMU `version`."""
    return tuple(d for d in for_scenario(name) if d.applies(accel, version))
