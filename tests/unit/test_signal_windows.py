"""Signals that land where CPython drops a handler's exception (an at-fork hook, a finalizer)
still stop the lab. Each case runs in a child interpreter with the lab's own handlers; the
child processes started are real (`sleep`), no QEMU needed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent("""
    import os, signal, subprocess, sys
    from lab.cli import main as m
    from lab.machine import process
    m._install_signal_handlers()
    fired = []
    def term_once():  # a SIGTERM arriving in the at-fork hook, as one did in `lab fire all`
        if not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
    os.register_at_fork(after_in_parent=term_once)
""")

SPAWN_LAB = PRELUDE + textwrap.dedent("""
    try:
        proc = process.spawn(["sleep", "30"])
    except m.Terminated:
        print("raised", file=sys.stderr)
        sys.exit(0 if subprocess.run(["pgrep", "-f", "^sleep 30$", "-P", str(os.getpid())]).returncode else 4)
    print("swallowed", file=sys.stderr)
    process.reap(proc, 0.1)
    sys.exit(5)
""")

# The control: a plain Popen with a preexec_fn, as the lab spawned before, loses the signal.
SPAWN_PLAIN = PRELUDE + textwrap.dedent("""
    try:
        proc = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: None)
    except m.Terminated:
        print("raised", file=sys.stderr)
        sys.exit(0)
    print("swallowed", file=sys.stderr)
    proc.kill(); proc.wait()
    sys.exit(5)
""")

FINALIZER = textwrap.dedent("""
    import os, signal
    from lab.cli import main as m
    m._install_signal_handlers()
    class Dropped:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
    Dropped()  # its Terminated is printed as "Exception ignored" and dropped
    print("went on")
    raise SystemExit(0 if m._received == [m.Terminated] else 6)
""")


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_a_sigterm_while_the_lab_forks_is_raised_and_the_child_reaped():
    done = _run(SPAWN_LAB)
    assert done.returncode == 0, done.stderr
    assert "raised" in done.stderr and "Exception ignored" not in done.stderr


def test_the_control_plain_popen_loses_that_sigterm():
    done = _run(SPAWN_PLAIN)
    assert done.returncode == 5 and "swallowed" in done.stderr, done.stderr
    assert "Exception ignored" in done.stderr


def test_a_sigterm_dropped_in_a_finalizer_is_still_recorded():
    done = _run(FINALIZER)
    assert done.returncode == 0 and "went on" in done.stdout, done.stderr


@pytest.mark.parametrize("received, status", [([], 0), (["Terminated"], 143), (["KeyboardInterrupt"], 130)])
def test_main_ends_with_the_status_of_a_dropped_signal(received, status, capsys):
    from lab.cli import main as m

    kinds = {"Terminated": m.Terminated, "KeyboardInterrupt": KeyboardInterrupt}
    before = list(m._received)
    m._received[:] = [kinds[k] for k in received]
    try:
        assert m._finish(0) == status
    finally:
        m._received[:] = before
