"""The Python API and the pytest plugin, used as a kernel developer's tests use them: through
the public fixtures `lab_vm` and `lab_inspection` (here on the lab's own kernel: this repo has
no lab.toml, so the plugin builds it), and through `lab.api.boot`."""

from __future__ import annotations

import pytest

from lab.api import boot
from lab.x86.vectors import DF, PF



def test_the_session_inspection_is_typed_and_passes(lab_inspection):
    assert not lab_inspection.failed, lab_inspection.summary()
    assert lab_inspection.idt[DF].present and lab_inspection.idt[DF].ist != 0
    assert lab_inspection.tss.ist[lab_inspection.idt[DF].ist - 1] != 0  # IST1 is TSS.ist[0]
    assert lab_inspection.registers.idtr.base != 0
    assert lab_inspection.check("idt.df-ist").verdict.value == "PASS"
    with pytest.raises(KeyError, match="no check 'no.such'"):
        lab_inspection.check("no.such")


def test_a_vm_fires_and_reads(lab_vm):
    (pf,) = lab_vm.fire("pf")
    assert pf.outcome == "PASS", [c for c in pf.checks if c.verdict.value != "PASS"]
    assert pf.observation.vector == PF
    regs = lab_vm.registers()
    assert regs["rip"] == lab_vm.address_of("lab_ready")  # the fire put the CPU back
    assert lab_vm.read_memory(regs["rip"], 1) == lab_vm.read_memory(lab_vm.address_of("lab_ready"), 1)
    assert "LAB-READY" in lab_vm.serial()


@pytest.mark.lab(at="labkernel::arch::x86_64::idt::init")
def test_the_marker_moves_the_stop(lab_vm):
    assert "stopped at labkernel::arch::x86_64::idt::init" in lab_vm.stopped_at
    assert lab_vm.registers()["rip"] == lab_vm.address_of("labkernel::arch::x86_64::idt::init")


def test_boot_ends_the_vm_when_the_block_ends(kernel):
    with boot(kernel) as vm:
        pids = (vm.session.qemu.proc.pid, vm.session.gdb.proc.pid)
        assert vm.inspect().check("idt.declared").verdict.value == "PASS"
    assert vm.session is None
    from labtest import wait_gone

    assert all(wait_gone(pid, 5) for pid in pids)


def test_a_vm_used_outside_its_block_says_so(kernel):
    vm = boot(kernel)
    with pytest.raises(RuntimeError, match="not running"):
        vm.registers()
