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
    out = r.stdout + r.stderr  # the lab commands' errors are gdb errors, on stderr
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


def _batch(kernel, *cmds, timeout=90):
    args = ["debug", "--kernel", str(kernel), "--batch"]
    for c in cmds:
        args += ["-ex", c]
    r = lab_cli(*args, timeout=timeout)
    assert r.returncode == 0, r.stderr  # gdb -batch: 1 when the last command failed
    out = r.stdout + r.stderr  # the lab commands' errors are gdb errors, on stderr
    assert "Traceback" not in out and "Python Exception" not in out
    return out


def test_errors_are_one_gdb_line(kernel):
    out = _batch(kernel, "lab-idt foo", "lab-idt 300", "lab-idt 14-13", "lab-break 300", "lab-break",
                 "lab-stack ten", "lab-stack -5", "lab-stack 0", "lab-chain", "lab-goto 1", "lab-context maybe", "lab-translate nosuchsym", "echo end\\n")
    for line in ("lab-idt: unknown vector mnemonic 'foo'", "lab-idt: vector 300 is outside 0-255",
                 "lab-idt: empty range '14-13'", "lab-break: vector 300 is outside 0-255",
                 "lab-break: usage: lab-break VECTOR|NAME", "lab-stack: the number of frames must be a number",
                 "lab-stack: the number of frames must be 1-1024, not -5",
                 "lab-stack: the number of frames must be 1-1024, not 0",
                 "lab-chain: not a replay", "lab-goto: not a replay", "lab-context: usage: lab-context on|off"):
        assert line in out, line
    assert "lab-translate: " in out


def test_help_lab_lists_every_command(kernel):
    out = _batch(kernel, "help lab")
    names = re.findall(r"^\s*(lab-[a-z]+) ", out, re.M)
    assert names == ["lab-idt", "lab-gdt", "lab-tss", "lab-check", "lab-pcpu", "lab-tasks", "lab-translate",
                     "lab-frame", "lab-stack", "lab-shell", "lab-break", "lab-fire", "lab-context",
                     "lab-chain", "lab-goto"]


@pytest.mark.parametrize("width", [80, 120])
def test_output_follows_gdb_width(kernel, width):
    out = _batch(kernel, f"set width {width}", "lab-idt 13-14", "lab-tss")
    table = [l for l in out.splitlines() if l[:1] in "┏┃┡│└"]
    assert table and max(len(l) for l in table) <= width
    assert "#GP" in out and "#PF" in out and "top of DOUBLE_FAULT_STACK" in out


def test_break_context_frame_and_prologue(kernel):
    out = _batch(kernel, "lab-context on", "lab-break ud", "lab-shell fire ud", "lab-frame",
                 "stepi", "lab-frame", "lab-context off", "delete", "lab-shell info")
    assert "lab-break: hardware breakpoint 2 at" in out and "the entry of the #UD handler (vector 6)" in out
    assert "lab-shell: the guest stopped at a breakpoint before the shell answered 'fire ud' (at isr_ud)" in out
    assert out.count("lab-context: #UD (vector 6) at isr_ud") == 1           # once per stop at the entry
    assert "labkernel::fire::fire+0x" in out                                 # demangled
    assert "#UD frame at isr_ud (vector 6)" in out and "lab_fault_ud" in out
    assert "past the entry of the #UD handler (vector 6)" in out and "`lab-break 6`" in out
    assert re.search(r"^info version=\S+ boot=multiboot", out, re.M)          # lab-shell's reply


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
    child.sendline("continue")
    child.expect("Continuing.")
    child.sendintr()                           # Ctrl-C: the guest stops, the session stays
    child.expect("received signal SIGINT")
    child.expect(r"\(gdb\) ")
    child.sendline("lab-shell info")
    child.expect(r"info version=")
    child.expect(r"\(gdb\) ")
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_attach_to_a_running_boot(kernel):
    boot = pexpect.spawn(shutil.which("lab"), ["boot", "--kernel", str(kernel)], encoding="utf-8", timeout=20)
    boot.expect(r"attach gdb with the lab's commands from another terminal with:\s+(\S+) attach (/\S+/gdb\.sock) --kernel (\S+)")
    sock, printed_kernel = boot.match.group(2), boot.match.group(3)
    assert printed_kernel == str(kernel.resolve())
    boot.expect("lab> ")
    # The printed command line, as printed: the lab's commands and the kernel's symbols.
    r = lab_cli("attach", sock, "--kernel", printed_kernel, "--batch", "-ex", "lab-gdt", "-ex", "lab-pcpu",
                "-ex", "set language c", "-ex", "info symbol lab_ready", timeout=30)
    assert r.returncode == 0, r.stderr
    assert "tss-busy" in r.stdout and "PERCPU at" in r.stdout
    assert "lab_ready in section .text" in r.stdout                # gdb loaded the kernel's symbols
    # `just attach SOCKET`: no --kernel, the lab kernel's build gives the symbols.
    r = lab_cli("attach", sock, "--batch", "-ex", "set language c", "-ex", "info symbol lab_ready", "-ex", "lab-stack 1", timeout=30)
    assert r.returncode == 0, r.stderr
    assert "lab_ready in section .text" in r.stdout and "RBP chain from RIP" in r.stdout
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
