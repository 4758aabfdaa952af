"""Every bad input is one line with the right status: 2 for what the user gave, 3 for what the
lab could not do; never a traceback, never status 1 (which means "a check failed"). A signal
is 130 or 143 whenever it lands, and a clean-up that fails as it unwinds does not replace it."""

from __future__ import annotations

import os
import signal
import subprocess
import sysconfig
from pathlib import Path

import pytest

from labtest import lab_cli, wait_gone

LAB = str(Path(sysconfig.get_path("scripts")) / "lab")


def one_error_line(stderr: str) -> str:
    """The `lab: error:` line; anything after it may only be the error's own context lines
    (command, exit status, logs)."""
    assert "Traceback" not in stderr, stderr
    lines = [l for l in stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith(("lab: error:", "lab ")) and "error:" in l]
    assert len(errors) == 1, stderr
    rest = lines[lines.index(errors[0]) + 1:]
    assert all(l.startswith(("command:", "exit status:", "logs:")) for l in rest), stderr
    return errors[0]


@pytest.mark.parametrize("args, status, needle", [
    (("inspect", "--kernel", "/proc/self/mem"), 2, "kernel cannot be read: /proc/self/mem"),
    (("inspect", "--after", "1e12"), 2, "--after: at most 1000000 seconds"),
    (("inspect", "--after", "inf"), 2, "--after: needs a positive, finite number"),
    (("inspect", "--ready-timeout", "nan"), 2, "--ready-timeout: needs a positive, finite number"),
    (("inspect", "--ready-timeout", "-5"), 2, "--ready-timeout: needs a positive, finite number"),
    (("translate", "0x10000000000000000"), 2, "'0x10000000000000000' is not a 64-bit address"),
    (("fire", "int", "--vector", "300"), 2, "--vector: vector 300 is outside 0-255"),
    (("inspect", "--log-dir", "/proc/no-such-dir"), 2, "--log-dir /proc/no-such-dir: cannot write there"),
    (("inspect", "--when", "\udcff"), 2, "--when '\\udcff': not UTF-8 text"),
    *((("inspect", flag, "/tmp/" + "a" * 256), 2, "File name too long")
      for flag in ("--image", "--profile", "--config", "--symbols")),
    (("inspect", "--kernel", "/tmp/" + "a" * 256), 2, "File name too long"),
    (("debug", "--replay", "/tmp/" + "a" * 256), 2, "File name too long"),
    (("inspect", "--html", "/"), 2, "--html /: a directory, not a file name"),
    (("inspect", "--config", "/tmp"), 2, "--config /tmp: a directory, not a lab.toml"),
    (("inspect", "--profile", "/tmp"), 2, "profile /tmp: a directory, not a profile file"),
    (("inspect", "--kernel", "/bin/ls"), 2, "QEMU refused to start: Error loading uncompressed kernel"),
    (("inspect", "--memory", "1T"), 2, "QEMU refused to start: cannot set up guest memory"),
    (("inspect", "--qemu-arg", ""), 2, "QEMU refused to start: Device needs media"),
    (("inspect", "--html", "/dev/null"), 2, "--html /dev/null: a device: refused"),
    (("inspect", "--cpus", "9"), 2, "--cpus 9: the lab kernel starts at most 8 CPUs"),
    (("fire", "de", "--cpus", "255"), 2, "--cpus 255: the lab kernel starts at most 8 CPUs"),
    # Another kernel keeps QEMU's limit: /bin/ls gets as far as QEMU, which refuses it.
    (("inspect", "--kernel", "/bin/ls", "--cpus", "12"), 2, "QEMU refused to start"),
    (("timer", "--rate", "99999999"), 2, "--rate 99999999: the kernel runs the PIT at 19-100000 Hz"),
    (("timer", "--rate", "18"), 2, "--rate 18: the kernel runs the PIT at 19-100000 Hz"),
    (("timer", "--cpus", "2", "--cpu", "1", "--rate", "100001"), 2, "an AP's APIC timer at 1-100000 Hz"),
    (("timer", "--window", "20000"), 2, "--window 20000: the kernel measures 1-10000 ms"),
    (("inspect", "--at", "0x8000000000000000"), 2, "--at 0x8000000000000000: 0x8000000000000000 is not canonical"),
    (("debug", "--at", "0x0123456789abcdef"), 2, "0x123456789abcdef is not canonical"),
])
def test_bad_input_is_one_line(kernel, args, status, needle):
    r = lab_cli(*args, *(() if "--kernel" in args else ("--kernel", str(kernel))))
    assert r.returncode == status, r.stderr
    assert needle in one_error_line(r.stderr)


def test_a_profile_file_that_is_not_utf8(tmp_path, kernel):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'description = "\xff\xfe"\n')
    r = lab_cli("inspect", "--kernel", str(kernel), "--profile", str(bad))
    assert r.returncode == 2, r.stderr
    assert f"profile {bad}: cannot be read" in one_error_line(r.stderr)


def test_a_profile_with_an_unknown_key_names_it(tmp_path, kernel):
    bad = tmp_path / "bad.toml"
    bad.write_text('description = "x"\nmachine = "pc"\naccel = "tcg"\ncpu = "qemu64"\nmemory = "128M"\nbogus = 1\n')
    r = lab_cli("inspect", "--kernel", str(kernel), "--profile", str(bad))
    assert r.returncode == 2, r.stderr
    assert f"profile {bad}: unknown key(s) bogus (keys: accel, args" in one_error_line(r.stderr)


def test_ready_timeout_bounds_a_restore(kernel):
    """--ready-timeout bounds reaching the ready point, by a boot or by restoring the saved
    state; a restore that runs out of time is a timeout (3), and the state is kept."""
    assert lab_cli("inspect", "--kernel", str(kernel), "--json").returncode == 0  # the state exists
    r = lab_cli("inspect", "--kernel", str(kernel), "--ready-timeout", "1e-9")
    assert r.returncode == 3, r.stderr
    assert "timed out after 1e-09 s waiting for QEMU to load the state" in one_error_line(r.stderr)
    again = lab_cli("inspect", "--kernel", str(kernel), "--json")
    assert again.returncode == 0 and "failed to load" not in again.stderr, again.stderr


def test_lab_debug_says_gdb_exited(kernel):
    r = lab_cli("debug", "--kernel", str(kernel), env={"LAB_GDB": "/bin/false"})
    assert r.returncode == 3, r.stderr
    assert "lab: error: gdb exited with status 1" in one_error_line(r.stderr)


@pytest.mark.parametrize("gdb", ["/bin/true", "/bin/false"])
def test_a_gdb_that_exits_at_once(kernel, gdb):
    r = lab_cli("inspect", "--kernel", str(kernel), env={"LAB_GDB": gdb})
    assert r.returncode == 3, r.stderr
    assert "gdb exited before the lab could send it" in one_error_line(r.stderr)


def test_a_temp_dir_too_deep_for_a_socket_path(kernel, tmp_path):
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    r = lab_cli("inspect", "--kernel", str(kernel), env={"TMPDIR": str(deep)})
    assert r.returncode == 0, r.stderr


def test_a_full_disk_under_the_logs(kernel, tmp_path):
    # /dev/full answers every write with ENOSPC, as a full disk does.
    (tmp_path / "serial.log").symlink_to("/dev/full")
    r = lab_cli("inspect", "--kernel", str(kernel), "--fresh", "--log-dir", str(tmp_path))
    assert r.returncode == 3, r.stderr
    assert f"cannot write the log {tmp_path}/serial.log: No space left on device" in one_error_line(r.stderr)


def _python_running(pid: int) -> bool:
    """Whether `pid` has exec'd the interpreter (its startup and the lab's imports follow)."""
    try:
        return "python" in os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False


@pytest.mark.parametrize("sig, status, word, moment", [
    (signal.SIGTERM, 143, "terminated", "at-spawn"), (signal.SIGTERM, 143, "terminated", "python-started"),
    # SIGINT only at spawn: once CPython runs, its own start-up turns SIGINT into a
    # KeyboardInterrupt before any of the lab's code can run (see lab/cli/main.py).
    (signal.SIGINT, 130, "interrupted", "at-spawn")])
def test_a_signal_while_the_lab_starts(kernel, sig, status, word, moment):
    proc = subprocess.Popen([LAB, "inspect", "--kernel", str(kernel)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        if moment == "python-started":
            # Bounded spin on a condition (no sleep): exec is done within milliseconds.
            for _ in range(1_000_000):
                if _python_running(proc.pid):
                    break
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in err, err
    # Killed by the default action before the lab's handlers were in place (-sig: no output
    # at all), or stopped by them: one line and the lab's status.
    assert proc.returncode in (-sig, status), err
    if proc.returncode == status:
        assert err.strip().splitlines()[-1] == f"lab: {word}", err
    else:
        assert err == "", err


def test_sigterm_mid_fire_ends_143_even_if_cleanup_fails(kernel):
    """SIGTERM while a fire runs: its `finally` deletes breakpoints on a target that is still
    running (gdb: `-break-delete ... target is running`); the status stays 143."""
    proc = subprocess.Popen([LAB, "-v", "fire", "all", "--kernel", str(kernel)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        fires = 0
        for line in proc.stderr:  # the -v progress lines: "lab: fire <scenario> <style>"
            if line.startswith("lab: fire "):
                fires += 1
                if fires == 3:
                    proc.send_signal(signal.SIGTERM)
                    break
        err = proc.stderr.read()
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert fires == 3
    assert "Traceback" not in err, err
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "lab: terminated", err


@pytest.mark.parametrize("content, needle", [
    (bytes(range(0x80, 0x100)) * 4, "not JSON (not UTF-8 text)"),
    (b"[" * 100_000, "not JSON the lab reads (nested too deeply)"),
    (b"{ nope", "not JSON (Expecting property name"),
    (b'{"idt": null, "gdt": null}', "not the JSON of a lab inspect run"),
    (b'[{"scenario": "de", "checks": "PASS"}]', "not the JSON of a lab fire run"),
])
def test_lab_report_of_what_is_not_a_run(tmp_path, content, needle):
    src = tmp_path / "run.json"
    src.write_bytes(content)
    r = lab_cli("report", str(src), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 2, r.stderr
    assert needle in one_error_line(r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


@pytest.mark.parametrize("target, needle", [("/dev/null", "a device: refused"), ("/", "a directory"),
                                            ("fifo", "a fifo: refused")])
def test_lab_report_never_replaces_what_is_not_a_regular_file(tmp_path, target, needle):
    src = tmp_path / "run.json"
    src.write_text("{}")
    if target == "fifo":
        target = str(tmp_path / "fifo")
        os.mkfifo(target)
    r = lab_cli("report", str(src), "-o", target)
    assert r.returncode == 2, r.stderr
    assert needle in one_error_line(r.stderr)
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize("command", [("inspect",), ("fire", "de", "ud")])
def test_a_closed_pipe_ends_rich_tables_with_sigpipes_status(kernel, command):
    """The tables go through rich, whose own answer to a closed stdout is exit 1 (a failed
    check's status): the lab's is 141, with nothing on stderr."""
    p = subprocess.Popen([LAB, *command, "--kernel", str(kernel)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=120) == 141, err
    assert err == b"", err

