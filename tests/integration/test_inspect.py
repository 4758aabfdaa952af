"""`lab inspect` on the lab kernel: the live tables decode and every check passes."""

from __future__ import annotations

import json
import re

import pytest

from lab.host import profiles
from lab.checks.base import Verdict
from lab.checks.view import decode
from lab.checks.inspect import run_all
from lab.runs.inspect import inspect
from lab.target.symbols import Symbols
from lab.target.cpu import read_state
from lab.x86.tss import TSS

from labtest import kvm_usable, lab_cli


def test_every_check_passes_on_tcg(kernel, tcg, log_dir):
    report = inspect(kernel, tcg, log_dir=log_dir)
    assert report.failed == [], [c.evidence for c in report.failed]
    ids = {c.id for c in report.checks}
    assert {"idt.df-ist", "tss.tr-descriptor", "idt.declared", "tss.stack-top"} <= ids
    assert all(c.verdict is Verdict.PASS for c in report.checks)


def test_live_tables_name_the_kernel_symbols(session):
    view = decode(read_state(session.gdb), session.symbols)
    names = {g.vector: session.symbols.describe(g.offset) for g in view.present_gates}
    assert names[14] == "isr_pf" and names[8] == "isr_df" and names[32] == "isr_timer"
    assert view.idt[8].ist == 1
    df_top = view.tss.ist_slot(1)
    assert session.symbols.stack_ending_at(df_top).name == "DOUBLE_FAULT_STACK"
    assert view.tr_descriptor.base == session.symbols.lookup("TSS").address


def test_shell_info_agrees_with_elf_and_live_registers(session):
    state = read_state(session.gdb)
    session.gdb.cont()
    session.serial.wait_prompt(5)
    line = session.serial.command("info")
    fields = dict(re.findall(r"(\w+)=(\S+)", line))
    sym = session.symbols
    assert int(fields["idt"], 16) == state.cpu.idtr.base == sym.lookup("IDT").address
    assert int(fields["idt_limit"], 16) == state.cpu.idtr.limit
    assert int(fields["gdt"], 16) == state.cpu.gdtr.base == sym.lookup("GDT").address
    assert int(fields["gdt_limit"], 16) == state.cpu.gdtr.limit
    assert int(fields["tss"], 16) == state.cpu.tr.base == sym.lookup("TSS").address
    assert int(fields["ready"], 16) == sym.lookup("lab_ready").address
    assert int(fields["rsp0"], 16) == sym.lookup("RSP0_STACK").end
    assert fields["boot"] == "multiboot"


def test_tampered_live_tss_fails_the_checks(session):
    """The checks judge the live guest: move RSP0 8 bytes down in guest memory and it is no
    longer the top of its stack (a FAIL of the lab kernel's contract) and 8 bytes off 16 (a
    WARN: the CPU aligns it down); non-canonical, it is a WARN while the CPU is in ring 0 at the
    stop; a non-canonical IST1 (#DF), which an event now would load, FAILs."""
    rsp0 = session.symbols.lookup("TSS").address + TSS.offset("rsp0")
    value = int.from_bytes(session.gdb.read_memory(rsp0, 8), "little")
    session.gdb.write_memory(rsp0, (value - 8).to_bytes(8, "little"))
    checks = {c.id: c for c in run_all(decode(read_state(session.gdb), session.symbols))}
    assert checks["tss.stack-alignment"].verdict is Verdict.WARN
    assert checks["tss.stack-top"].verdict is Verdict.FAIL
    session.gdb.write_memory(rsp0, (0x0000_8000_0000_0000 | value).to_bytes(8, "little"))
    checks = {c.id: c for c in run_all(decode(read_state(session.gdb), session.symbols))}
    # the CPU is in ring 0 at the stop: a bad RSP0 breaks only the first event in ring 3
    assert checks["tss.stack-alignment"].verdict is Verdict.WARN, checks["tss.stack-alignment"].evidence
    assert "the first interrupt or exception in ring 3" in checks["tss.stack-alignment"].evidence[0]
    session.gdb.write_memory(rsp0, value.to_bytes(8, "little"))
    ist1 = session.symbols.lookup("TSS").address + TSS.offset("ist1")
    top = int.from_bytes(session.gdb.read_memory(ist1, 8), "little")
    session.gdb.write_memory(ist1, (0x0000_8000_0000_0000 | top).to_bytes(8, "little"))
    checks = {c.id: c for c in run_all(decode(read_state(session.gdb), session.symbols))}
    session.gdb.write_memory(ist1, top.to_bytes(8, "little"))
    assert checks["tss.stack-alignment"].verdict is Verdict.FAIL  # a #DF now would fault loading IST1
    assert "IST1" in checks["tss.stack-alignment"].evidence[0] and "is not canonical" in checks["tss.stack-alignment"].evidence[0]


def test_without_symbols_the_generic_tier_still_runs(session):
    checks = run_all(decode(read_state(session.gdb), Symbols.empty()))
    assert {c.tier for c in checks} == {"generic"}
    assert not [c for c in checks if c.verdict is Verdict.FAIL]


def test_cli_json(kernel):
    r = lab_cli("inspect", "--kernel", str(kernel), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["summary"]["FAIL"] == 0 and out["summary"]["PASS"] == len(out["checks"]) >= 15
    assert {row["vector"] for row in out["idt"]} >= set(range(32))
    assert [row["field"] for row in out["tss"]][:4] == ["rsp0", "rsp1", "rsp2", "ist1"]


def test_cli_table(kernel):
    r = lab_cli("inspect", "--kernel", str(kernel), env={"COLUMNS": "200"})  # no cell folded
    assert r.returncode == 0, r.stderr
    for text in ("IDT", "GDT", "TSS", "isr_df", "top of DOUBLE_FAULT_STACK", "tss-busy", "PASS"):
        assert text in r.stdout


@pytest.mark.skipif(not kvm_usable()[0], reason=f"KVM not usable here: {kvm_usable()[1]}")
def test_every_check_passes_on_kvm(kernel, log_dir):
    report = inspect(kernel, profiles.load("kvm"), log_dir=log_dir, ready_timeout=30)
    assert report.failed == [], [c.evidence for c in report.failed]
