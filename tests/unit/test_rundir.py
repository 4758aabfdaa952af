"""Run directories (lab/machine/rundir.py): private, and swept when their owner was SIGKILLed."""

import os
import stat
import subprocess
import sys
import tempfile

import pytest

from lab.host.locks import owner_gone, owner_tag
from lab.errors import UserError
from lab.machine import rundir
from lab.machine.rundir import OWNER_FILE, RunDir, sweep


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(rundir, "_swept", set())
    return tmp_path


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", ""])
    p.wait()
    return p.pid


def _leftover(root, name, owner=None):
    d = root / name
    d.mkdir(mode=0o700)
    (d / "qmp.sock").write_text("")
    if owner is not None:
        (d / OWNER_FILE).write_text(owner + "\n")
    return d


def test_a_run_dir_is_private_and_names_its_owner(tmp):
    run = RunDir()
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o700
    assert run.path.name.startswith(f"lab-{os.getpid()}-")
    assert (run.path / OWNER_FILE).read_text().strip() == owner_tag()
    run.close(failed=False)
    assert not run.path.exists()


def test_kept_logs_are_never_swept(tmp):
    run = RunDir()
    (run.path / "serial.log").write_text("boot\n")
    run.close(failed=True)  # kept for the user, named in the error
    assert run.path.exists() and not (run.path / OWNER_FILE).exists()
    sweep(str(tmp))
    assert run.path.exists()


def test_run_dirs_of_ended_owners_are_swept(tmp):
    dead = _dead_pid()
    me = owner_tag()
    pid, start = me.split("-")
    gone = [_leftover(tmp, f"lab-{dead}-abcdefgh", f"{dead}-77"),
            _leftover(tmp, f"lab-{pid}-reused00", f"{pid}-1")]     # pid reused: another start
    kept = [_leftover(tmp, f"lab-{pid}-livelive", me),              # its owner runs
            _leftover(tmp, f"lab-{dead}-nomarker"),                 # no owner file: kept logs
            _leftover(tmp, f"lab-{dead}-mismatch", f"{dead + 1}-77"),  # the file names another
            _leftover(tmp, f"lab-{dead}-badstart", f"{dead}-x"),
            _leftover(tmp, "lab-x2k3j4l5", f"{dead}-77"),           # an older lab's name
            _leftover(tmp, f"lab-bench-{dead}-abcdefgh", f"{dead}-77"),
            _leftover(tmp, f"other-{dead}-abcdefgh", f"{dead}-77")]
    (tmp / f"lab-{dead}-linklink").symlink_to(gone[0])
    removed = RunDir()  # sweeps first
    try:
        assert not any(d.exists() for d in gone)
        assert all(d.exists() for d in kept) and (tmp / f"lab-{dead}-linklink").is_symlink()
    finally:
        removed.close(failed=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_another_users_run_dirs_are_not_swept(tmp):
    dead = _dead_pid()
    d = _leftover(tmp, f"lab-{dead}-abcdefgh", f"{dead}-77")
    os.chown(d, 4242, 4242)
    assert sweep(str(tmp)) == [] and d.exists()


def test_owner_gone():
    pid, start = owner_tag().split("-")
    assert not owner_gone(int(pid), start)
    assert not owner_gone(int(pid))
    assert owner_gone(int(pid), str(int(start) + 1))
    assert owner_gone(_dead_pid(), start)


@pytest.mark.parametrize("has_log", [True, False])
def test_a_failed_run_keeps_its_directory_only_if_it_holds_a_log(tmp, has_log):
    """A failed run whose logs went to a nested run's directory (the boot that makes the saved
    ready state) leaves no empty directory beside the one its error names."""
    run = RunDir()
    if has_log:
        (run.path / "serial.log").write_text("boot\n")
    run.close(failed=True)
    assert run.path.exists() == has_log


@pytest.mark.parametrize("tail", ["a" * 256, "x/" + "a" * 256])
def test_a_refused_log_dir_is_not_created(tmp, tail):
    target = tmp / "new" / "deeper" / tail
    with pytest.raises(UserError, match="--log-dir .*: cannot write there"):
        RunDir(target)
    assert not (tmp / "new").exists()


def test_a_log_dir_that_exists_is_left_when_refused(tmp):
    (tmp / "mine").mkdir()
    with pytest.raises(UserError):
        RunDir(tmp / "mine" / ("a" * 256))
    assert (tmp / "mine").is_dir()
