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
