"""`lab translate` on the live kernel's page tables."""

from __future__ import annotations

import json

from lab.experiments.translate import translate

from labtest import lab_cli


def test_live_walks(session):
    sym = session.symbols
    code = translate(session, sym.lookup("lab_ready").address)
    assert code.physical == sym.lookup("lab_ready").address and code.page_size == 4096  # identity, 4 KiB
    guard = translate(session, sym.lookup("BOOT_STACK").address)
    assert guard.physical is None and guard.fault.startswith("PT[") and guard.fault.endswith("not present")
    pages = sym.read("LAB_TEST_PAGES")
    nx = int.from_bytes(pages[16:24], "little")
    t = translate(session, nx)
    assert t.physical is not None and not t.executable
    ro = translate(session, int.from_bytes(pages[8:16], "little"))
    assert ro.physical is not None and not ro.writable
    big = translate(session, 0x30_0000)
    assert big.page_size == 2 << 20 and big.steps[-1].level == "PD"


def test_cli_translate_symbol_json(kernel):
    r = lab_cli("translate", "--kernel", str(kernel), "--json", "lab_ready", "0x7f0000000000")
    assert r.returncode == 0, r.stderr
    a, b = json.loads(r.stdout)
    assert a["physical"] == a["va"] and [s["level"] for s in a["steps"]] == ["PML4", "PDPT", "PD", "PT"]
    assert b["physical"] is None and b["fault"] == "PML4[254] is not present"


def test_cli_translate_unknown_symbol(kernel):
    r = lab_cli("translate", "--kernel", str(kernel), "no_such_symbol")
    assert r.returncode == 2 and "'no_such_symbol' is neither an address nor a symbol" in r.stderr
