"""What the tables show, without QEMU: long runs of null GDT slots folded into one row, and
text from the guest or the catalogs never read as rich markup."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from lab.present.render import gdt_table, idt_table
from lab.present.rows import NULL_RUN_FOLD, _fold_null_runs


def null(sel: int) -> dict:
    return {"selector": sel, "kind": "null", "base": 0, "limit": 0, "dpl": 0, "present": False,
            "l": 0, "db": 0, "g": 0, "flags": "", "raw": "0" * 16}


def code(sel: int) -> dict:
    return {**null(sel), "kind": "code64", "present": True}


@pytest.mark.parametrize("rows, folded", [
    # the mandatory null descriptor stays alone; a long run after it is one row
    ([null(0), code(8)] + [null(16 + 8 * i) for i in range(2000)],
     [(0, "null", 1), (8, "code64", 1), (16, "null", 2000)]),
    # a run shorter than NULL_RUN_FOLD is shown slot by slot
    ([null(0), code(8), null(16), null(24), code(32)],
     [(0, "null", 1), (8, "code64", 1), (16, "null", 1), (24, "null", 1), (32, "code64", 1)]),
    # runs separated by a descriptor are folded apart
    ([null(0)] + [null(8 * i) for i in range(1, 5)] + [code(40)] + [null(48 + 8 * i) for i in range(3)],
     [(0, "null", 1), (8, "null", 4), (40, "code64", 1), (48, "null", 3)]),
])
def test_null_runs_fold(rows, folded):
    out = _fold_null_runs(rows)
    assert [(r["selector"], r["kind"], r.get("count", 1)) for r in out] == folded
    for r in out:
        if r.get("count", 1) > 1:
            assert r["count"] >= NULL_RUN_FOLD
            assert r["last_selector"] == r["selector"] + 8 * (r["count"] - 1)


def render(table) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(table)
    return out.getvalue()


def test_a_folded_run_is_one_line_of_the_table():
    text = render(gdt_table(_fold_null_runs([null(0)] + [null(8 * i) for i in range(1, 2001)])))
    assert "0x0008-0x3e80" in text and "null x2000" in text
    assert len(text.splitlines()) < 10


def test_symbols_are_not_markup():
    row = {"vector": 13, "mnemonic": "#GP", "handler": 0x1000, "symbol": "handler<[rax]>[bold]",
           "selector": 8, "type": "interrupt", "dpl": 0, "present": True, "ist": 0}
    assert "handler<[rax]>[bold]" in render(idt_table([row]))
