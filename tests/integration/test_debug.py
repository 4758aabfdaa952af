"""`lab debug` / `lab attach`: gdb with the lab's commands, in batch mode and through a pty."""

from __future__ import annotations

import re
import shutil

import pexpect
import pytest

from labtest import kvm_usable, lab_cli

KVM_OK, KVM_WHY = kvm_usable()


def test_every_command_in_batch_mode(kernel):
    cmds = ["lab-idt 13-14", "lab-gdt", "lab-tss", "lab-check", "lab-pcpu", "lab-tasks",
            "lab-translate lab_ready", "lab-stack 3", "lab-frame", "lab-fire pf-write stub", "lab-frame",
            "lab-stack 2", "lab-fire nope", "help lab-idt"]
    args = ["debug", "--kernel", str(kernel), "--batch"]
    for c in cmds:
        args += ["-ex", c]
    r = lab_cli(*args, timeout=60)
    out = r.stdout
    assert r.returncode == 0, r.stderr
    assert "IDT vectors 13-14" in out and "isr_gp" in out and "isr_pf" in out
    assert "tss-busy" in out and "top of DOUBLE_FAULT_STACK" in out      # the same rows as `lab inspect`
    assert out.count("PASS") >= 15 and "FAIL" not in out                  # lab-check: every inspect check
    assert "PERCPU at" in out and "kernel_rsp" in out and "GS_BASE now" in out  # as `lab pcpu`
    assert re.search(r"│ 0 +│ shell", out) and "tasks (read from kernel memory" in out  # as `lab tasks`
    assert "PML4" in out and "(4 KiB page)" in out                        # lab-translate
    assert "RBP chain from RIP" in out and "multiboot_main" in out       # lab-stack names the caller
    assert "which no present IDT gate names" in out                       # lab-frame at lab_ready explains
    assert "stopped at the pf-write handler (isr_stub_14)" in out
    assert "#PF frame at isr_stub_14 (vector 14)" in out and "P W" in out and "lab_fault_pf_write" in out
    assert "unknown exception scenario 'nope'" in out
    assert "the live IDT, decoded and resolved to symbols" in out         # the docstring is the help


def test_interactive_debug_through_a_pty(kernel):
    child = pexpect.spawn(shutil.which("lab"), ["debug", "--kernel", str(kernel)], encoding="utf-8", timeout=30)
    child.expect(r"\(gdb\) ")
    child.sendline("lab-idt 8")
    child.expect("isr_df")
    child.expect(r"\(gdb\) ")
    child.sendline("lab-fire ud")
    child.expect("stopped at the ud handler")
    child.expect(r"\(gdb\) ")
    child.sendline("lab-frame")
    child.expect(r"#UD frame at isr_ud")
    child.expect(r"\(gdb\) ")
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_attach_to_a_running_boot(kernel):
    boot = pexpect.spawn(shutil.which("lab"), ["boot", "--kernel", str(kernel)], encoding="utf-8", timeout=20)
    boot.expect(r"gdb -ex 'target remote (/\S+/gdb\.sock)'")
    sock = boot.match.group(1)
    boot.expect("lab> ")
    r = lab_cli("attach", sock, "--kernel", str(kernel), "--batch", "-ex", "lab-gdt", "-ex", "lab-pcpu", timeout=30)
    assert r.returncode == 0, r.stderr
    assert "tss-busy" in r.stdout and "PERCPU at" in r.stdout
    boot.send("info\r")                        # gdb detached: the guest runs on
    boot.expect(r"info version=")
    boot.send("\x01x")
    boot.expect(pexpect.EOF)
    boot.close()


def test_attach_to_nothing():
    r = lab_cli("attach", "/nonexistent/gdb.sock")
    assert r.returncode == 2 and "no gdb socket at /nonexistent/gdb.sock" in r.stderr


@pytest.mark.skipif(not KVM_OK, reason=f"KVM not usable here: {KVM_WHY}")
def test_debug_on_kvm_uses_hardware_breakpoints(kernel):
    r = lab_cli("debug", "--kernel", str(kernel), "--profile", "kvm", "--batch", "-ex", "lab-idt 8",
                "-ex", "lab-fire pf-read", "-ex", "lab-frame", timeout=90)
    assert r.returncode == 0, r.stderr
    assert "isr_df" in r.stdout and "#PF frame at isr_pf" in r.stdout
