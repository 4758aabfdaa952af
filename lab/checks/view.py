"""The decoded state that inspect's checks read: tables decoded by their declared layouts,
plus the kernel's symbols."""

from __future__ import annotations

from dataclasses import dataclass

from lab.target.cpu import TargetState
from lab.target.symbols import Symbols
from lab.x86.gdt import SEGMENT, Descriptor, decode_gdt, decode_selector
from lab.x86.idt import GATE, Gate, decode_idt
from lab.x86.tss import TSS, Tss, decode_tss


@dataclass(frozen=True)
class View:
    """Decoded state plus symbols: the input of every inspect check."""

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


def _whole(raw: bytes, size: int) -> bytes:
    """`raw` cut to a whole number of `size`-byte entries."""
    return raw[: len(raw) // size * size]


def decode(state: TargetState, symbols: Symbols) -> View:
    idt = decode_idt(_whole(state.idt, GATE.size))
    gdt = decode_gdt(_whole(state.gdt, SEGMENT.size))  # 8-byte slots
    tss = decode_tss(state.tss) if len(state.tss) >= TSS.size else None
    tr_sel = state.cpu.tr.selector
    tr_desc = None
    if tr_sel:
        index, ti, _ = decode_selector(tr_sel)
        tr_desc = next((d for d in gdt if d.index == index), None) if not ti else None
    return View(state, idt, gdt, tss, tr_desc, symbols)
