"""The kernel's serial shell, as the lab drives it."""

from __future__ import annotations


def _to_prompt(session):
    session.gdb.cont()
    session.serial.wait_prompt(5)


def test_help_lists_the_commands(session):
    _to_prompt(session)
    out = session.serial.command("help")
    for name in ("help", "info", "exit"):
        assert any(line.split()[0] == name for line in out.splitlines() if line.strip()), out


def test_unknown_command_is_reported_and_shell_survives(session):
    _to_prompt(session)
    assert "unknown command 'frobnicate'" in session.serial.command("frobnicate 1 2")
    assert "usage: exit" in session.serial.command("exit banana")
    assert session.serial.command("info").startswith("info version=")


def test_exit_code_reaches_qemu(session):
    _to_prompt(session)
    session.serial.send_line("exit 5")
    status = session.qemu.wait_exit(timeout=5)
    assert status.code == (5 << 1) | 1
    assert status.debug_exit_value == 5
