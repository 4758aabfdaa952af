"""States a kernel has not set yet, and the stops for any kernel (machine/stops.py), on tiny
kernels of the test's own (tinykernels.py) under real QEMU and gdb: each finding beside a
control that FAILs (or a stop beside a kernel that never reaches it)."""

from __future__ import annotations

import dataclasses
import json

from labtest import lab_cli
from tinykernels import STOP, UNMAPPED_PAGE, Gate, TinySpec, tiny_kernel

HEALTHY = TinySpec()
PRE_LIDT = TinySpec(load_idt=False)  # QEMU's loader leaves the real-mode IVT: base 0 limit 0x3ff
LIMINE_LIKE = TinySpec(load_idt=False, null_idtr=True, unmapped=(0,))  # IDTR 0/0, page 0 unmapped
IDLE = TinySpec(idle="sti-hlt")
IDLE_NO_IDT = dataclasses.replace(PRE_LIDT, null_idtr=True, idle="sti-hlt")
SPIN = TinySpec(idle="jmp")
FAULTS = TinySpec(fault_after=0x800000).with_gates(v6=Gate(handler="tiny_other"))


def _run(tmp_path, spec, *args, status, command="inspect"):
    elf = tiny_kernel(tmp_path, "tiny", spec)
    r = lab_cli(*command.split(), "--kernel", str(elf), *args, timeout=90)
    assert r.returncode == status, r.stderr + r.stdout[-3000:]
    return r


def _report(tmp_path, spec, *args, status):
    return json.loads(_run(tmp_path, spec, *args, "--json", status=status).stdout)


def _checks(report):
    return {c["id"]: c for c in report["checks"]}


def test_stopped_before_lidt_is_a_warning_not_a_defect(tmp_path):
    report = _report(tmp_path, PRE_LIDT, "--at", STOP, status=0)
    c = _checks(report)
    assert c["idt.loaded"]["verdict"] == "WARN"
    assert "IDTR base 0x0 limit 0x3ff: no IDT loaded yet" in c["idt.loaded"]["evidence"][0]
    assert "RFLAGS.IF=0" in c["idt.loaded"]["evidence"][0]
    # one fact, one finding: the IVT's bytes are not decoded as gates
    assert c["idt.offset-canonical"]["verdict"] == "SKIP" and c["tss.tr-descriptor"]["verdict"] == "SKIP"
    assert not [x for x in report["checks"] if x["verdict"] == "FAIL"]


def test_a_null_idtr_at_an_unmapped_page_is_a_finding_not_a_gdb_error(tmp_path):
    report = _report(tmp_path, LIMINE_LIKE, "--at", STOP, status=0)
    c = _checks(report)
    assert c["idt.loaded"]["verdict"] == "WARN"
    assert "IDTR base 0x0 limit 0x0: no IDT loaded yet" in c["idt.loaded"]["evidence"][0]
    assert report["registers"]["tr"]["selector"] == 0


def test_idling_with_no_idt_fails(tmp_path):
    """The control of the two above: interrupts on, no IDT; found by the default stop."""
    report = _report(tmp_path, IDLE_NO_IDT, status=1)
    assert report["ready"].startswith("stopped at idle: halted in the hlt")
    c = _checks(report)["idt.loaded"]
    assert c["verdict"] == "FAIL" and "RFLAGS.IF=1" in c["evidence"][0] and "no IDT loaded yet" in c["evidence"][0]


def test_an_idt_that_cannot_be_read_is_a_finding_naming_it(tmp_path):
    spec = dataclasses.replace(HEALTHY, idt_base=UNMAPPED_PAGE, unmapped=(UNMAPPED_PAGE,))
    report = _report(tmp_path, spec, "--at", STOP, status=1)
    c = _checks(report)["state.readable"]
    assert c["verdict"] == "FAIL"
    assert c["evidence"][0].startswith(f"IDT at {UNMAPPED_PAGE:#x} (4096 bytes, IDTR limit 0xfff) cannot be read")
    # control: the healthy kernel's tables all read
    assert _checks(_report(tmp_path, HEALTHY, "--at", STOP, status=0))["state.readable"]["verdict"] == "PASS"


def test_idle_is_the_default_stop_of_a_kernel_that_is_not_the_labs(tmp_path):
    for args in (("--at", "idle"), ()):
        report = _report(tmp_path, IDLE, *args, status=0)
        assert report["ready"].startswith("stopped at idle: halted in the hlt at 0x"), report["ready"]
        assert "RFLAGS.IF=1 (the kernel idles)" in report["ready"]
        assert {c["verdict"] for c in report["checks"]} <= {"PASS"}, _checks(report)


def test_idle_finds_a_self_loop(tmp_path):
    report = _report(tmp_path, SPIN, status=0)
    assert report["ready"].startswith("stopped at idle: spinning in a self-loop (jmp . : eb fe)")


def test_fault_stops_at_the_first_exception_with_its_frame(tmp_path):
    from lab.target.symbols import Symbols

    report = _report(tmp_path, FAULTS, "--at", "fault", status=0)
    ud2 = Symbols.from_elf(tmp_path / "tiny.elf").lookup("tiny_fault").address
    other = Symbols.from_elf(tmp_path / "tiny.elf").lookup("tiny_other").address
    assert report["ready"].startswith(f"stopped at fault: vector 6 (#UD) delivered, at its handler {other:#x}")
    assert f"RIP {ud2:#x} CS 0x8" in report["ready"] and "SS 0x10" in report["ready"]


def test_fault_is_not_reached_by_a_kernel_that_never_faults(tmp_path):
    """The control: a healthy kernel that idles takes no exception; the lab says where it is."""
    r = _run(tmp_path, IDLE, "--at", "fault", "--ready-timeout", "3", status=3)
    assert "--at fault: when the lab first saw an IDT loaded the kernel was already parked (halted in the hlt" in r.stderr
    assert "with --at idle" in r.stderr and r.stderr.startswith("lab: error: ")


def test_a_stop_not_reached_names_the_panic_on_the_console_and_the_stop_for_it(tmp_path):
    r = _run(tmp_path, dataclasses.replace(HEALTHY, message="PANIC: page fault in init"),
             "--when", "NEVER-PRINTED", "--ready-timeout", "3", status=3)
    assert "the console shows an exception or panic ('PANIC: page fault in init')" in r.stderr
    assert "--at fault" in r.stderr
    # control: a console with no trouble on it gets no such hint
    r = _run(tmp_path, dataclasses.replace(HEALTHY, message="hello"), "--when", "NEVER-PRINTED",
             "--ready-timeout", "3", status=3)
    assert "timed out after 3 s" in r.stderr and "exception or panic" not in r.stderr


def test_fire_agnostic_refuses_before_lidt_in_one_line(tmp_path):
    r = _run(tmp_path, PRE_LIDT, "ud", "--at", STOP, status=2, command="fire --agnostic")
    assert r.stderr.count("\n") == 1 and "no IDT loaded yet" in r.stderr and "triple-fault" in r.stderr
    # control: the same kernel after its lidt fires
    _run(tmp_path, HEALTHY, "ud", "--at", STOP, status=0, command="fire --agnostic")
