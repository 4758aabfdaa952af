"""Rows for the IDT, GDT and TSS tables: one builder, used by the rich renderer, the JSON
output and (later) the gdb commands, so all of them show the same thing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.checks import Check, Verdict, View
from lab.x86.tss import IST_NAMES, RSP_NAMES


def idt_rows(v: View, *, all_gates: bool = False) -> list[dict]:
    rows = []
    for g in v.idt:
        if not (g.present or all_gates):
            continue
        rows.append({
            "vector": g.vector, "mnemonic": g.mnemonic, "handler": g.offset,
            "symbol": v.symbols.describe(g.offset) if g.present else "",
            "selector": g.selector, "type": g.type_name, "dpl": g.dpl,
            "present": g.present, "ist": g.ist,
        })
    return rows


def gdt_rows(v: View) -> list[dict]:
    rows = []
    for d in v.gdt:
        row = {"selector": d.selector, "kind": d.kind, "base": d.base, "limit": d.limit,
               "dpl": d.dpl, "present": bool(d.present), "l": d.l, "db": d.db, "g": d.g,
               "flags": d.flags_str, "raw": d.raw[::-1].hex()}
        if d.kind.startswith("tss"):
            row["symbol"] = v.symbols.describe(d.base)
        rows.append(row)
    return rows


def tss_rows(v: View) -> list[dict]:
    if v.tss is None:
        return []
    rows = [{"field": name, "value": val} for name, val in zip(RSP_NAMES, v.tss.rsp)]
    rows += [{"field": name, "value": val} for name, val in zip(IST_NAMES, v.tss.ist)]
    for row in rows:
        ptr = row["value"]
        stack = v.symbols.stack_ending_at(ptr) if ptr else None
        row["points_into"] = f"top of {stack.name}" if stack else (v.symbols.describe(ptr) if ptr else "")
    rows.append({"field": "iomap_base", "value": v.tss.iomap_base, "points_into": ""})
    return rows


@dataclass
class InspectReport:
    kernel: Path
    profile: str
    ready_line: str
    view: View
    checks: list[Check]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.verdict is Verdict.FAIL]

    def to_json(self) -> dict:
        cpu = self.view.state.cpu
        return {
            "kernel": str(self.kernel),
            "profile": self.profile,
            "ready": self.ready_line,
            "registers": {
                "idtr": {"base": cpu.idtr.base, "limit": cpu.idtr.limit},
                "gdtr": {"base": cpu.gdtr.base, "limit": cpu.gdtr.limit},
                "tr": {"selector": cpu.tr.selector, "base": cpu.tr.base, "limit": cpu.tr.limit},
                "cr0": cpu.values.get("CR0"), "cr3": cpu.values.get("CR3"),
                "cr4": cpu.values.get("CR4"), "efer": cpu.values.get("EFER"),
            },
            "idt": idt_rows(self.view),
            "gdt": gdt_rows(self.view),
            "tss": tss_rows(self.view),
            "checks": [c.to_json() for c in self.checks],
            "summary": {v.value: sum(1 for c in self.checks if c.verdict is v) for v in Verdict},
            "timings": self.timings,
        }
