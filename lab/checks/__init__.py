"""Checks: small functions from decoded state to `Check` records.

Two tiers, shown apart: `generic` checks hold for any correct x86-64 kernel; `lab-kernel`
checks compare the live state with what the lab's own kernel declares in its ELF (the
contract in kernel/CONTRACT.md) and run only when those declarations are present.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from lab.symbols import Symbols
from lab.target import TargetState
from lab.x86.gdt import Descriptor, decode_gdt, decode_selector
from lab.x86.idt import Gate, decode_idt
from lab.x86.tss import Tss, decode_tss


class Verdict(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"  # the check cannot be evaluated on this input; the evidence says why


@dataclass(frozen=True)
class Check:
    id: str
    tier: str
    title: str
    verdict: Verdict
    evidence: tuple[str, ...]

    def to_json(self) -> dict:
        return {"id": self.id, "tier": self.tier, "title": self.title,
                "verdict": self.verdict.value, "evidence": list(self.evidence)}


def verdict(ok: bool) -> Verdict:
    return Verdict.PASS if ok else Verdict.FAIL


@dataclass(frozen=True)
class View:
    """Decoded state plus symbols: the input of every check."""

    state: TargetState
    idt: list[Gate]
    gdt: list[Descriptor]
    tss: Tss | None
    tr_descriptor: Descriptor | None
    symbols: Symbols

    @property
    def present_gates(self) -> list[Gate]:
        return [g for g in self.idt if g.present]

    def descriptor(self, selector: int) -> Descriptor | None:
        index, ti, _ = decode_selector(selector)
        if ti:
            return None  # LDT selectors are never valid for the lab's purposes
        return next((d for d in self.gdt if d.index == index), None)

    def used_ist_slots(self) -> list[int]:
        return sorted({g.ist for g in self.present_gates if g.ist})


def decode(state: TargetState, symbols: Symbols) -> View:
    idt = decode_idt(state.idt[: len(state.idt) // 16 * 16])
    gdt = decode_gdt(state.gdt[: len(state.gdt) // 8 * 8])
    tss = decode_tss(state.tss) if len(state.tss) >= 104 else None
    tr_sel = state.cpu.tr.selector
    tr_desc = None
    if tr_sel:
        index, ti, _ = decode_selector(tr_sel)
        tr_desc = next((d for d in gdt if d.index == index), None) if not ti else None
    return View(state, idt, gdt, tss, tr_desc, symbols)


def run_all(view: View) -> list[Check]:
    from lab.checks import generic, labkernel

    return generic.run(view) + labkernel.run(view)
