"""Bad input and failures: one clear line, the right exit status, nothing left running."""

from __future__ import annotations

import os
import signal
import shutil
from pathlib import Path

import pexpect
import pytest

from labtest import lab_cli, wait_gone


def _one_line_error(r, status: int, *needles: str) -> None:
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("lab: error:")
    for n in needles:
        assert n in r.stderr, r.stderr


def test_unknown_profile_lists_profiles(kernel):
    r = lab_cli("inspect", "--kernel", str(kernel), "--profile", "warp-drive")
    _one_line_error(r, 2, "unknown profile 'warp-drive'", "kvm, tcg")
    assert len(r.stderr.strip().splitlines()) == 1


def test_kernel_path_that_does_not_exist():
    r = lab_cli("inspect", "--kernel", "/nonexistent/kernel.elf")
    _one_line_error(r, 2, "kernel not found: /nonexistent/kernel.elf")


def test_file_that_is_not_elf(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("not a kernel\n")
    _one_line_error(lab_cli("inspect", "--kernel", str(f)), 2, "not an ELF file")


def test_truncated_elf(kernel, tmp_path):
    f = tmp_path / "truncated.elf"
    f.write_bytes(kernel.read_bytes()[:200])
    _one_line_error(lab_cli("inspect", "--kernel", str(f)), 2, "not a readable ELF")


def test_corrupt_elf(kernel, tmp_path):
    f = tmp_path / "corrupt.elf"
    data = bytearray(kernel.read_bytes())
    data[0x28:0x30] = (2**63).to_bytes(8, "little")  # e_shoff far beyond the file
    f.write_bytes(bytes(data))
    _one_line_error(lab_cli("inspect", "--kernel", str(f)), 2, "not a readable ELF")


def test_missing_qemu_names_the_setup_command(kernel):
    r = lab_cli("inspect", "--kernel", str(kernel), env={"LAB_QEMU": "qemu-system-nonexistent"})
    _one_line_error(r, 2, "qemu-system-nonexistent not found", "bash lab/setup.sh")


def test_missing_gdb_names_the_setup_command(kernel):
    r = lab_cli("inspect", "--kernel", str(kernel), env={"LAB_GDB": "gdb-nonexistent"})
    _one_line_error(r, 2, "gdb-nonexistent not found", "bash lab/setup.sh")


def test_guest_that_never_gets_ready(halting_kernel):
    r = lab_cli("inspect", "--kernel", str(halting_kernel), "--ready-timeout", "1")
    _one_line_error(r, 3, "timed out after 1 s waiting for the kernel to idle", "or the ready marker 'LAB-READY'", "serial tail", "logs:")
    logs = Path(r.stderr.split("logs: ")[1].split()[0])
    assert (logs / "serial.log").exists() and (logs / "gdb.log").exists()
    shutil.rmtree(logs)


def _started(child) -> tuple[int, int, Path]:
    child.expect(r"started qemu pid (\d+), gdb pid (\d+); run dir (\S+);", timeout=30)
    return int(child.match.group(1)), int(child.match.group(2)), Path(child.match.group(3))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_signals_reap_qemu_and_gdb(halting_kernel, sig):
    lab = shutil.which("lab")
    child = pexpect.spawn(lab, ["-v", "inspect", "--kernel", str(halting_kernel),
                                "--ready-timeout", "60"], encoding="utf-8", timeout=30)
    qemu_pid, gdb_pid, run_dir = _started(child)
    os.kill(child.pid, sig)
    try:
        child.expect(pexpect.EOF, timeout=20)
    except pexpect.TIMEOUT:
        os.kill(child.pid, signal.SIGUSR1)  # faulthandler prints where the lab is stuck
        child.expect(pexpect.TIMEOUT, timeout=2)
        stacks = child.before
        child.kill(signal.SIGKILL)
        pytest.fail(f"the lab did not end within 20 s of {sig.name}; its stacks:\n{stacks}")
    child.close()
    assert wait_gone(qemu_pid, 10), f"qemu {qemu_pid} outlived the lab ({sig.name})"
    assert wait_gone(gdb_pid, 10), f"gdb {gdb_pid} outlived the lab ({sig.name})"
    if sig is not signal.SIGKILL:
        assert child.exitstatus in (130, 143), child.exitstatus
        assert not list(run_dir.glob("*.sock")), "sockets left behind"
    shutil.rmtree(run_dir, ignore_errors=True)  # kept logs (interrupted) or SIGKILL leftovers


def test_reap_survives_a_leaked_popen_lock():
    """A signal handler that raises inside Popen.poll() can leave Popen's internal lock held
    (it is released in a `finally` not yet entered); Popen.wait() then blocks forever. The
    lab's reap waits on the pidfd instead: here the lock is leaked on purpose."""
    import threading

    from lab.machine.process import reap, spawn

    proc = spawn(["sleep", "30"])
    proc._waitpid_lock.acquire()  # what the interrupted poll() leaves behind
    result = []
    worker = threading.Thread(target=lambda: result.append(reap(proc, soft_timeout=0.2)), daemon=True)
    worker.start()
    worker.join(20)  # a bound on a hang, not a speed limit
    assert result == [-signal.SIGTERM], result or "reap hung on the leaked lock"


def test_ctrl_c_works_even_when_the_parent_ignored_sigint(halting_kernel):
    """pytest-xdist workers ignore SIGINT and children inherit that; a lab started from such a
    parent must still unwind on Ctrl-C (it installs Python's handler itself)."""
    child = pexpect.spawn(shutil.which("lab"), ["-v", "inspect", "--kernel", str(halting_kernel),
                                                "--ready-timeout", "60"], encoding="utf-8", timeout=30,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    qemu_pid, gdb_pid, _ = _started(child)
    os.kill(child.pid, signal.SIGINT)
    child.expect(pexpect.EOF, timeout=20)
    child.close()
    assert child.exitstatus == 130
    assert wait_gone(qemu_pid, 10) and wait_gone(gdb_pid, 10)
