"""At 80 columns, identifier cells (check ids) stay whole on one line; evidence wraps at words."""

from __future__ import annotations

import io

from rich.console import Console

from lab.checks.base import Check, Verdict
from lab.present.render import checks_table

IDS = ["idt.df-not-present", "gdt.gate-bad-selector", "idt.isr_pic_spurious-handler"]


def test_check_ids_never_split_at_80_columns():
    checks = [Check(i, "arch", i, Verdict.FAIL,
                    ("a long piece of evidence that has to wrap at word boundaries " * 3,))
              for i in IDS]
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(checks_table(checks))
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    for i in IDS:
        assert any(i in line for line in text.splitlines()), (i, text)


SYMBOLS = ["isr_pic_spurious", "isr_pic2_spurious", "isr_apic_spurious", "isr_de"]


def test_idt_symbols_and_handlers_never_split_at_80_columns():
    from lab.present.render import idt_table

    rows = [{"vector": v, "mnemonic": f"IRQ/INT {v}", "handler": 0xffffffff81c00000 + v, "symbol": s,
             "selector": 8, "type": "interrupt", "dpl": 0, "present": True, "ist": 0}
            for v, s in zip((39, 47, 255, 0), SYMBOLS)]
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(idt_table(rows))
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    for s in SYMBOLS:
        assert any(f" {s} " in line or f"│{s} " in line for line in lines), (s, lines)
    assert any("0xffffffff81c00027" in line for line in lines), lines


def test_the_evidence_column_keeps_room_beside_long_titles():
    """The check column is as wide as its longest id, not its longest title: the evidence is
    still there, worded, at 80 and 120 columns."""
    checks = [Check("idt.limit", "generic", "IDTR covers the 32 exception vectors in whole gates " * 2,
                    Verdict.PASS, ("IDTR base 0x12d460 limit 0xfff: 256 gates",))]
    for width in (80, 120):
        out = io.StringIO()
        Console(file=out, width=width, color_system=None).print(checks_table(checks))
        assert "IDTR base 0x12d460" in out.getvalue(), out.getvalue()
