"""Reliability and security on the real thing: nothing listens on TCP, the shell survives
fuzzing, a stopped gdb and a dead QEMU are reported, bad kernels get one clear line, and the
lab killed at random points leaves nothing behind."""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pexpect
import pytest

from lab.errors import GuestError, LabError, LabTimeout, ProcessDied
from lab.machine.session import Session

from labtest import lab_cli, wait_gone

TCP_LISTEN = "0A"


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def _tcp_listeners() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == TCP_LISTEN:
                    inodes.add(fields[9])
    return inodes


def test_no_tcp_listener_and_private_sockets(session):
    pids = [session.qemu.proc.pid, session.gdb.proc.pid]
    ours = set().union(*(_socket_inodes(p) for p in pids))
    assert ours, "QEMU and gdb should hold unix sockets"
    assert not ours & _tcp_listeners(), "a lab process listens on TCP"
    run = session.run.path
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert {p.name for p in run.glob("*.sock")} == {"gdb.sock", "qmp.sock", "serial.sock"}


def _fuzz_lines(seed: int, n: int) -> list[bytes]:
    """Random and malformed lines: raw bytes, control characters, over-long lines, and real
    commands with broken arguments. Commands that end the VM (exit, probe, overflow) are
    never formed on purpose."""
    rng = random.Random(seed)
    words = [b"help", b"info", b"fire", b"fire nope", b"fire de fancy", b"style", b"style 999 stub",
             b"style 3", b"timer", b"timer pit", b"timer pit 0", b"timer pit 99999999", b"timer apic",
             b"timer apic periodic 0", b"timer pitfall maybe", b"measure", b"measure 0", b"measure x",
             b"ticks extra", b"spawn", b"spawn daemon x", b"user", b"user run", b"user run nope",
             b"sched", b"sched preempt maybe", b"switches 0", b"scenarios x", b"probes x", b"tasks x"]
    lines = []
    for _ in range(n):
        kind = rng.randrange(5)
        if kind == 0:
            lines.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))))
        elif kind == 1:
            lines.append(bytes(rng.choice(b"\x00\x01\x03\x07\x08\x1b\x7f\t") for _ in range(rng.randrange(1, 10))))
        elif kind == 2:
            lines.append(bytes(rng.randrange(0x20, 0x7F) for _ in range(rng.randrange(120, 400))))
        else:
            lines.append(rng.choice(words) + b" " + bytes(rng.randrange(0x21, 0x7F) for _ in range(rng.randrange(0, 8))))
    return [l.replace(b"\r", b"").replace(b"\n", b"") for l in lines]


@pytest.mark.parametrize("seed", [1, 2])
def test_shell_fuzz_never_crashes(session, seed):
    session.gdb.cont()
    session.serial.wait_prompt(10)
    for line in _fuzz_lines(seed, 150):
        session.serial.child.send(line + b"\r")
        session.serial.expect(rb"lab> ", 10, f"the prompt after a fuzz line {line[:40]!r}")
    session.serial.drain()
    out = session.serial.command("help")
    assert "info" in out and "fire" in out and "exit" in out
    log = session.serial.tail(10**7)
    assert "PANIC" not in log and "EXCEPTION" not in log and "HALTED" not in log
    assert session.qemu.proc.poll() is None


def test_gdb_that_stops_answering_is_a_bounded_error(kernel, tcg, log_dir):
    with Session(kernel, tcg, log_dir=log_dir) as s:
        s.boot_to_ready()
        os.kill(s.gdb.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(LabTimeout) as e:
                s.gdb.mi("-data-list-register-names", timeout=0.5)
        finally:
            os.kill(s.gdb.proc.pid, signal.SIGCONT)
    assert "timed out after 0.5 s waiting for gdb's answer to '-data-list-register-names'" in str(e.value)
    assert e.value.logs == log_dir


def test_qemu_that_dies_mid_session_is_reported(kernel, tcg, log_dir):
    with pytest.raises(LabError) as e:
        with Session(kernel, tcg, log_dir=log_dir) as s:
            s.boot_to_ready()
            s.gdb.cont()
            s.serial.wait_prompt(10)
            s.qemu.proc.kill()
            s.serial.command("info", timeout=5)
    assert isinstance(e.value, (GuestError, ProcessDied)) and "QEMU exited" in str(e.value)
    assert e.value.logs == log_dir and (log_dir / "serial.log").exists()


def test_ready_marker_twice(twice_ready_kernel):
    r = lab_cli("inspect", "--kernel", str(twice_ready_kernel))
    assert r.returncode == 3 and "the kernel printed the ready marker twice" in r.stderr, r.stderr
    logs = Path(r.stderr.split("logs: ")[1].split()[0])
    shutil.rmtree(logs)


def test_32_bit_elf_where_the_64_bit_lab_kernel_is_needed(halting_kernel):
    r = lab_cli("fire", "de", "--kernel", str(halting_kernel))
    assert r.returncode == 2 and "a 32-bit ELF; `lab fire` needs the 64-bit x86-64 lab kernel" in r.stderr


def test_non_x86_elf(kernel, tmp_path):
    foreign = tmp_path / "aarch64.elf"
    data = bytearray(kernel.read_bytes())
    data[18] = 0xB7  # EM_AARCH64
    foreign.write_bytes(bytes(data))
    r = lab_cli("inspect", "--kernel", str(foreign))
    assert r.returncode == 2 and "ELF for machine 0xb7, not x86" in r.stderr


def test_stripped_kernel(kernel, tmp_path):
    stripped = tmp_path / "stripped.elf"
    subprocess.run(["strip", "-o", str(stripped), str(kernel)], check=True)
    r = lab_cli("fire", "de", "--kernel", str(stripped))
    assert r.returncode == 2 and "no symbol table (stripped?)" in r.stderr
    r = lab_cli("inspect", "--kernel", str(stripped), "--json")  # inspect works without symbols
    assert r.returncode == 0, r.stderr
    assert "lab-kernel" not in r.stdout and '"SKIP": 1' in r.stdout


def test_symbol_that_does_not_exist(kernel):
    r = lab_cli("frame", "--kernel", str(kernel), "--at", "no_such_handler", "--shell", "help")
    assert r.returncode == 2 and "'no_such_handler' is neither an address nor a symbol" in r.stderr


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_killed_at_a_random_point_leaves_nothing_and_the_next_run_works(kernel, seed):
    rng = random.Random(seed)
    point = rng.randrange(1, 30)  # after the n-th fired scenario (of 42)
    sig = rng.choice([signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
    child = pexpect.spawn(shutil.which("lab"), ["-v", "fire", "all", "--style", "both", "--kernel", str(kernel)],
                          encoding="utf-8", timeout=30)
    child.logfile_read = transcript = io.StringIO()
    for _ in range(point):
        child.expect(r"lab: fire \S+ \S+")
    os.kill(child.pid, sig)
    child.expect(pexpect.EOF)
    child.close()
    # Every VM the run started (`fire all` moves to a fresh VM after a timeout).
    started = re.findall(r"started qemu pid (\d+), gdb pid (\d+); run dir (\S+);", transcript.getvalue())
    assert started
    for qemu, gdb, run_dir in started:
        assert wait_gone(int(qemu), 10) and wait_gone(int(gdb), 10), f"{sig.name} at fire #{point} left a process"
        shutil.rmtree(run_dir, ignore_errors=True)  # logs kept (interrupted) or SIGKILL leftovers
    r = lab_cli("fire", "de", "--kernel", str(kernel))
    assert r.returncode == 0, r.stderr


def test_a_prestarted_gdb_nobody_took_is_reaped():
    """The CLI starts gdb before its imports (lab/machine/gdb.py, prestart); when the command
    ends before a Session takes it (a user error, say), discard_early ends it by EOF."""
    from lab.machine import gdb

    gdb.prestart()
    proc = gdb._early
    assert proc is not None and proc.poll() is None
    gdb.discard_early()
    assert gdb._early is None
    assert proc.returncode == 0, "gdb should exit on EOF, not be killed"


def test_a_session_takes_the_prestarted_gdb(kernel, tcg, tmp_path):
    from lab.machine import gdb
    from lab.machine.session import Session

    gdb.prestart()
    early = gdb._early
    try:
        with Session(kernel, tcg, log_dir=tmp_path, restore=False) as s:  # a save would take it
            assert s.gdb.proc is early
            s.boot_to_ready()
            assert s.gdb.registers(("rip",))["rip"] == s.symbols.lookup("lab_ready").address
    finally:
        gdb.discard_early()
    assert early.returncode is not None
