"""`lab boot` (`just boot`): the serial console on a terminal, driven through a pty."""

from __future__ import annotations

import shutil

import pexpect


def test_boot_console_is_interactive_and_quits_with_ctrl_a_x(kernel):
    child = pexpect.spawn(shutil.which("lab"), ["boot", "--kernel", str(kernel)],
                          encoding="utf-8", timeout=20)
    child.expect(r"attach gdb with the lab's commands from another terminal with:\s+\S+ attach (/\S+/gdb\.sock) --kernel (\S+)")
    assert child.match.group(1).startswith("/") and child.match.group(2) == str(kernel.resolve())
    child.expect("LAB-READY")
    child.expect("lab> ")
    child.send("info\r")
    child.expect(r"info version=\S+ boot=multiboot")
    child.expect("lab> ")
    child.send("\x01x")  # Ctrl-A X: QEMU's quit key on a mon:stdio console
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_boot_exit_command_reports_the_status(kernel):
    child = pexpect.spawn(shutil.which("lab"), ["boot", "--kernel", str(kernel)],
                          encoding="utf-8", timeout=20)
    child.expect("lab> ")
    child.send("exit 3\r")
    child.expect(r"QEMU ended: isa-debug-exit value 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 7
