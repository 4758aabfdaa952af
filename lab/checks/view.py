"""The decoded state that inspect's checks read: tables decoded by their declared layouts,
plus the kernel's symbols, and the facts about the CPU that several checks grade by."""

from __future__ import annotations

from dataclasses import dataclass

from lab.target.cpu import TargetState
from lab.target.symbols import Symbols, is_elf
from lab.x86.gdt import SEGMENT, Descriptor, decode_gdt, decode_selector
from lab.x86.idt import GATE, Gate, decode_idt
from lab.x86.tss import TSS, Tss, decode_tss

EFER_SCE = 1 << 0  # IA32_EFER.SCE: SYSCALL/SYSRET enabled (SDM vol. 3A §2.2.1, Table 2-1)
#: Fewer symbols than this, from a System.map, is no symbol table (Debian's /boot/System.map-*
#: is a one-line stub: "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package").
MIN_SYSTEM_MAP_SYMBOLS = 16
#: QEMU's `info sev` when this VM has no SEV (TCG has none; KVM has it only when asked for).
SEV_ABSENT = ("SEV is not enabled", "SEV is not available")


@dataclass(frozen=True)
class View:
    """Decoded state plus symbols: the input of every inspect check."""

    state: TargetState
    idt: list[Gate]
    gdt: list[Descriptor]
    tss: Tss | None
    tr_descriptor: Descriptor | None
    symbols: Symbols
    #: the symbols came from a System.map (an ELF's symbol table otherwise, or none)
    symbols_from_map: bool = False

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

    def ist_users(self, slot: int) -> list[int]:
        """The vectors whose present gate uses IST `slot`."""
        return [g.vector for g in self.present_gates if g.ist == slot]

    def outer_rings(self) -> list[str]:
        """What lets code run outside ring 0, read from the CPU's state; empty when nothing
        does. Only an interrupt or exception taken outside ring 0 loads RSP0 (SDM §6.14.4,
        §8.7). Counted: a present code descriptor in the GDT usable at CPL > 0 (DPL > 0, or
        conforming), a loaded LDT (not read, so it may hold one), EFER.SCE (SYSRET enters ring 3
        with no descriptor at all) and a CPL above 0 now. DPL-3 gates are not counted: they
        are reachable only from ring 3."""
        out = [f"GDT {d.selector:#06x}: present {'conforming ' if d.conforming else ''}code, DPL {d.dpl}"
               for d in self.gdt if d.kind == "code" and d.present and (d.dpl > 0 or d.conforming)]
        ldt = self.state.cpu.segments.get("LDT")
        if ldt is not None and ldt.selector & ~3:
            out.append(f"LDTR {ldt.selector:#06x}: an LDT is loaded")
        if self.state.cpu.values.get("EFER", 0) & EFER_SCE:
            out.append("EFER.SCE=1: SYSRET enters ring 3 with no descriptor")
        cs = self.state.cpu.segments.get("CS")
        if cs is not None and cs.selector & 3:
            out.append(f"CS {cs.selector:#06x}: the CPU is at CPL {cs.selector & 3} now")
        return out

    @property
    def rsp0_used(self) -> bool:
        return bool(self.outer_rings())

    def ring3_now(self) -> str | None:
        """Why ring 3 is live at the stop (the CPU is at CPL > 0: the next interrupt, NMI or
        exception loads RSP0), or None when the CPU is in ring 0."""
        cs = self.state.cpu.segments.get("CS")
        if cs is not None and cs.selector & 3:
            return f"the CPU is at CPL {cs.selector & 3} at the stop (CS {cs.selector:#06x}), so the next interrupt loads RSP0"
        return None

    def ring3_later(self) -> str:
        """Why an RSP0 problem is not hit now but will be, for evidence (when `outer_rings()`
        is not empty and `ring3_now()` is None)."""
        return ("the CPU is at CPL 0 at the stop, so no event now loads RSP0; wrong once the kernel "
                "runs code in ring 3 (" + "; ".join(self.outer_rings()) + ")")

    def ring0_only(self) -> str:
        """Why RSP0 is never loaded, for evidence (when `outer_rings()` is empty)."""
        return ("no code can run outside ring 0 (no present code descriptor with DPL > 0 or "
                "conforming, no LDT, EFER.SCE clear, CPL 0), so the CPU never loads RSP0")

    def sev_es_inactive(self) -> str | None:
        """Why SEV-ES is not active in this VM, or None when the lab cannot tell. SEV-ES shows
        in the guest's SEV_STATUS MSR (0xC0010131, bit 1), which neither the gdbstub nor HMP
        reads; QEMU's `info sev` says whether the VM has SEV at all, and SEV-ES needs SEV."""
        sev = self.state.sev
        if sev and sev.startswith(SEV_ABSENT):
            return f"QEMU's `info sev` says \"{sev}\", so SEV-ES is not active and no #VC is ever raised"
        return None

    def symbol_table_stub(self) -> str | None:
        """Why the symbols are no symbol table (a System.map stub), or None."""
        if self.symbols_from_map and len(self.symbols) < MIN_SYSTEM_MAP_SYMBOLS:
            n = len(self.symbols)
            return (f"System.map {self.symbols.path} holds {n} symbol{'s' if n != 1 else ''}: not a real "
                    f"symbol table (Debian ships a one-line stub; the real one is in the -dbg package)")
        return None


def _whole(raw: bytes, size: int) -> bytes:
    """`raw` cut to a whole number of `size`-byte entries."""
    return raw[: len(raw) // size * size]


def _from_map(symbols: Symbols) -> bool:
    path = symbols.path
    if path is None or not len(symbols):
        return False
    try:
        return not is_elf(path)
    except OSError:
        return False


def decode(state: TargetState, symbols: Symbols) -> View:
    idt = decode_idt(_whole(state.idt, GATE.size))
    gdt = decode_gdt(_whole(state.gdt, SEGMENT.size))  # 8-byte slots
    tss = decode_tss(state.tss) if len(state.tss) >= TSS.size else None
    tr_sel = state.cpu.tr.selector
    tr_desc = None
    if tr_sel:
        index, ti, _ = decode_selector(tr_sel)
        tr_desc = next((d for d in gdt if d.index == index), None) if not ti else None
    return View(state, idt, gdt, tss, tr_desc, symbols, _from_map(symbols))
