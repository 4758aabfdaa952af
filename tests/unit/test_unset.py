"""Tables a kernel has not set yet (lab/target/unset.py, lab/checks/unset.py) and the console
hint of an unreached stop (lab/machine/stops.py), without QEMU."""

from __future__ import annotations

import dataclasses

from test_checks import checks_of, make

from lab.checks.base import Verdict
from lab.machine.stops import console_hint
from lab.target.cpu import TableRegister
from lab.target.unset import idt_unloaded


def test_an_idtr_naming_no_idt_is_told_apart_from_a_loaded_one():
    assert "no IDT loaded yet" in idt_unloaded(0, 0) and "holds no 16-byte gate" in idt_unloaded(0, 0)
    assert "real-mode interrupt vector table" in idt_unloaded(0, 0x3FF)
    assert idt_unloaded(0, 0xFFF) is None and idt_unloaded(0x1000, 0x3FF) is None  # a real IDT


def _no_idt(rflags: int):
    state, symbols = make(values={"RFL": rflags})
    cpu = dataclasses.replace(state.cpu, idtr=TableRegister(0, 0))
    return checks_of((dataclasses.replace(state, cpu=cpu, idt=b""), symbols))


def test_no_idt_with_interrupts_off_warns_and_with_them_on_fails():
    off, on = _no_idt(0x2), _no_idt(0x202)
    assert off["idt.loaded"].verdict is Verdict.WARN and "stopped before lidt" in off["idt.loaded"].evidence[0]
    assert on["idt.loaded"].verdict is Verdict.FAIL and "RFLAGS.IF=1" in on["idt.loaded"].evidence[0]
    # what reads the IDT is SKIP, not judged on garbage
    assert off["idt.limit"].verdict is Verdict.SKIP and off["tss.stack-alignment"].verdict is Verdict.SKIP
    assert off["gdt.null"].verdict is Verdict.PASS


def test_a_loaded_idt_passes():
    c = checks_of(make())
    assert c["idt.loaded"].verdict is Verdict.PASS and c["state.readable"].verdict is Verdict.PASS


def test_an_unreadable_table_is_a_finding_naming_it():
    state, symbols = make()
    why = "GDT at 0x5000 (56 bytes, GDTR limit 0x37) cannot be read: Unable to read memory."
    c = checks_of((dataclasses.replace(state, gdt=b"", unread={"GDT": why}), symbols))
    assert c["state.readable"].verdict is Verdict.FAIL and c["state.readable"].evidence[0].startswith(why)
    assert c["gdt.null"].verdict is Verdict.SKIP and "the GDT cannot be read" in c["gdt.null"].evidence[0]
    # with no IDT loaded, nothing reads the GDT now: WARN
    cpu = dataclasses.replace(state.cpu, idtr=TableRegister(0, 0))
    c = checks_of((dataclasses.replace(state, cpu=cpu, idt=b"", gdt=b"", unread={"GDT": why}), symbols))
    assert c["state.readable"].verdict is Verdict.WARN


def test_the_console_hint_names_the_stop_for_a_panic_and_nothing_else():
    hint = console_hint("booting\nkernel panic: page fault at 0x0\n")
    assert "kernel panic: page fault at 0x0" in hint and "--at fault" in hint and "--at idle" in hint
    assert console_hint("booting\nhello world\n") == ""
