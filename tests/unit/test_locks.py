"""One holder at a time, a bounded wait that names the holder (lab/host/locks.py)."""

import os
import subprocess
import sys

import pytest

from lab.errors import LabError, LabTimeout
from lab.host.locks import exclusive


def test_the_lock_wait_is_bounded_and_names_the_holder(tmp_path):
    """A stopped holder: the waiter gives up after its bound and says who holds the lock."""
    lock = tmp_path / "k.lock"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import os, signal, sys
from pathlib import Path
from lab.host.locks import exclusive
with exclusive(Path({str(lock)!r})):
    print("held", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(LabTimeout, match=rf"after 0.3 s waiting for the lock on the state k .*held by pid "
                                             rf"{holder.pid}( \(stopped\))?: .*python"):
            with exclusive(lock, 0.3, "the state k"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(lock, 0.3, "the state k"):  # released by the holder's death
        assert lock.read_text() == f"{os.getpid()}\n"


def test_a_lock_released_during_the_wait_is_taken_at_once(tmp_path, monkeypatch):
    """No polling: the holder's close wakes the waiter (inotify)."""
    import select as select_module
    from lab.host import locks

    lock = tmp_path / "k.lock"
    held = exclusive(lock)
    held.__enter__()
    real = select_module.select
    waits = []

    def select(r, w, x, timeout):
        if not waits:
            held.__exit__(None, None, None)  # the holder closes while the waiter waits
        waits.append(timeout)
        return real(r, w, x, timeout)

    monkeypatch.setattr(locks.select, "select", select)
    with exclusive(lock, 30, "the state k"):
        pass
    assert len(waits) == 1


def test_a_waiter_does_not_erase_the_holders_pid(tmp_path):
    lock = tmp_path / "k.lock"
    with exclusive(lock):
        with pytest.raises(LabTimeout, match=rf"held by pid {os.getpid()}"):
            with exclusive(lock, 0.05, "the state k"):
                pass
        assert lock.read_text() == f"{os.getpid()}\n"


def test_a_lock_file_link_is_not_followed(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me")
    (tmp_path / "k.lock").symlink_to(target)
    with pytest.raises(LabError, match="is a symbolic link"):
        with exclusive(tmp_path / "k.lock", 1):
            pass
    assert target.read_text() == "keep me"


def test_the_kernel_names_the_holder_when_the_file_does_not(tmp_path):
    lock = tmp_path / "k.lock"
    with exclusive(lock):
        os.truncate(lock, 0)  # taken, its pid not yet written
        with pytest.raises(LabTimeout, match=rf"held by pid {os.getpid()}: "):
            with exclusive(lock, 0.05):
                pass
