"""Saved ready states (lab/machine/snapshot.py): a restored VM is the booted VM at lab_ready.

Each test keeps its states in its own directory, so the first restore of every test also
makes its state (one booted VM, parked, saved)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.host.bootpath import BIOS, BOOT_PATHS
from lab.host.build import build_kernel
from lab.errors import GuestError, LabError, LabTimeout
from lab.machine.qemu import QemuMachine, base_argv
from lab.machine.rundir import NAME as RUN_DIR_NAME, RunDir
from lab.machine.session import Session, Stop
from lab.machine.snapshot import StateStore, park_at_ready, state_key

from labtest import lab_cli, wait_gone


@pytest.fixture(scope="module")
def bios_kernel():
    return build_kernel(quiet=True, boot=BIOS)


def _inspect(tmp_path, *args):
    report, warnings = _inspect_warned(tmp_path / "states", *args)
    assert warnings == []
    return report


def _inspect_warned(states, *args, env=None):
    """`lab inspect --json` with its states in `states`: it must succeed. Its report, and the
    warning lines it printed on stderr."""
    r = lab_cli("inspect", "--json", *args, env={"LAB_STATE_DIR": str(states), **(env or {})})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), [line for line in r.stderr.splitlines() if line.startswith("lab: warning:")]


@pytest.mark.parametrize("boot", BOOT_PATHS)
def test_restored_inspect_equals_booted_inspect(tmp_path, bios_kernel, boot):
    """Every check, verdict and piece of evidence is the same whether the VM booted or was
    restored: the first run makes the state, the second restores it, --fresh boots."""
    made = _inspect(tmp_path, "--boot", boot)
    restored = _inspect(tmp_path, "--boot", boot)
    booted = _inspect(tmp_path, "--boot", boot, "--fresh")
    assert [made["timings"]["restored"], restored["timings"]["restored"], booted["timings"]["restored"]] \
        == [True, True, False]
    assert len(list((tmp_path / "states").glob("*.state"))) == 1
    for report in (made, restored):
        assert report["ready"] == booted["ready"]
        assert report["checks"] == booted["checks"]
    assert len(booted["checks"]) >= 16 and {c["verdict"] for c in booted["checks"]} == {"PASS"}


def test_a_restored_guest_runs_its_shell(kernel, tcg, tmp_path):
    with Session(kernel, tcg, restore=True, states=StateStore(tmp_path)) as s:
        assert s.boot_to_ready().startswith("LAB-READY")
        assert s.restored is not None
        s.gdb.cont()
        s.serial.wait_prompt(5)
        assert s.serial.command("info").startswith("info version=")
        text = s.serial.tail()
    assert "restored from the saved ready state" in text and "labkernel" in text


def test_each_command_line_has_its_own_state(kernel, tcg, tmp_path):
    store = StateStore(tmp_path)
    for append in (None, "lab.something=1"):
        with Session(kernel, tcg, restore=True, states=store, append=append) as s:
            s.boot_to_ready()
            s.gdb.cont()
            s.serial.wait_prompt(5)
    metas = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert sorted(m["append"] or "" for m in metas) == ["", "lab.something=1"]
    assert any("lab.something=1" in m["serial"] for m in metas)


def test_restore_check_fails_when_the_cpu_is_elsewhere(kernel, tcg, tmp_path):
    """The restored RIP is compared with where the state was saved: a state that says
    otherwise is refused."""
    store = StateStore(tmp_path)
    with Session(kernel, tcg, restore=True, states=store) as s:
        s.boot_to_ready()
    meta = next(tmp_path.glob("*.json"))
    data = json.loads(meta.read_text())
    meta.write_text(json.dumps({**data, "ready_address": data["ready_address"] + 1}))
    with pytest.raises(GuestError, match="not at lab_ready.*the state is discarded"):
        with Session(kernel, tcg, restore=True, states=store) as s:
            s.boot_to_ready()
    assert not list(tmp_path.glob("*.json")), "the next run makes it again"


def test_park_check_fails_off_the_ready_point(session):
    """Parking at an address the CPU is not at lets it run on: the check must say so."""
    ready = session.symbols.lookup("lab_ready").address
    with pytest.raises(GuestError, match="parking the CPU"):
        park_at_ready(session.gdb, session.qemu, ready + 0x10)


@pytest.fixture(scope="module")
def made_states(tmp_path_factory):
    """A state dir holding the default kernel's state, made once; tests damage copies of it."""
    states = tmp_path_factory.mktemp("made") / "states"
    _inspect_warned(states)
    assert len(list(states.glob("*.state"))) == 1
    return states


def _copy_states(made_states, tmp_path):
    states = tmp_path / "states"
    shutil.copytree(made_states, states)
    return states, next(states.glob("*.state")), next(states.glob("*.json"))


def _damage(stream, meta, how):
    if how == "truncated":
        stream.write_bytes(stream.read_bytes()[:4096])
    elif how == "emptied":
        stream.write_bytes(b"")
    elif how == "bit-flipped":
        data = bytearray(stream.read_bytes())
        data[len(data) // 2] ^= 0x01  # guest RAM: QEMU itself would load it without a word
        stream.write_bytes(data)
    elif how == "garbage-json":
        meta.write_bytes(b"\x00garbage{")
    elif how == "linked-json":
        target = meta.with_name("elsewhere")
        os.replace(meta, target)
        meta.symlink_to(target)
    return stream


@pytest.mark.parametrize("how", ["truncated", "emptied", "bit-flipped", "garbage-json", "linked-json"])
def test_a_damaged_state_is_discarded_and_made_again(made_states, tmp_path, how):
    """Every restoring run used to fail (exit 3) on such a state until it was deleted by hand.
    Now the run says so in one warning line, makes the state again, and restores it; the run
    after it is silent."""
    states, stream, meta = _copy_states(made_states, tmp_path)
    _damage(stream, meta, how)
    report, warnings = _inspect_warned(states)
    assert len(warnings) == 1, warnings
    assert (meta.name if "json" in how else stream.name) in warnings[0] and "discarded" in warnings[0]
    assert report["timings"]["restored"] is True
    assert {c["verdict"] for c in report["checks"]} == {"PASS"}
    assert StateStore(states).find(stream.stem) is not None, "made again, whole"
    report, warnings = _inspect_warned(states)
    assert warnings == [] and report["timings"]["restored"] is True


def _plant_unloadable(states, how):
    """A state that passes every check on disk but that QEMU cannot load: a truncated stream
    whose metadata is made to match it, or metadata naming another QEMU version."""
    stream, meta = next(states.glob("*.state")), next(states.glob("*.json"))
    data = json.loads(meta.read_text())
    if how == "stream":
        cut = stream.read_bytes()[:len(stream.read_bytes()) // 2]
        stream.write_bytes(cut)
        data.update(stream_size=len(cut), stream_sha256=hashlib.sha256(cut).hexdigest())
    else:
        data["qemu_version"] = "6.0.0 (another build)"
    meta.write_text(json.dumps(data))
    return stream


@pytest.mark.parametrize("how", ["stream", "qemu-version"])
def test_a_state_qemu_cannot_load_is_replaced_in_the_same_start(kernel, tcg, made_states, tmp_path,
                                                                capsys, how):
    """A failed migrate-incoming leaves that QEMU unusable: the session ends it, makes the
    state again, and restores it into a new QEMU, within one start; no process is left (the
    conftest's guard)."""
    states, _, _ = _copy_states(made_states, tmp_path)
    stream = _plant_unloadable(states, how)
    meta = stream.with_suffix(".json")
    planted = meta.read_text()  # names the planted stream's digest, or the other QEMU version
    with Session(kernel, tcg, states=StateStore(states)) as s:
        assert s.boot_to_ready().startswith("LAB-READY")
        # remade: new metadata (an inode number may be reused, so it is no witness)
        assert s.restored is not None and meta.read_text() != planted
        s.gdb.cont()
        s.serial.wait_prompt(5)
        assert s.serial.command("info").startswith("info version=")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lab: warning:")]
    assert len(warnings) == 1 and str(stream) in warnings[0] and "failed to load" in warnings[0], warnings
    assert ("migration failed" if how == "stream" else "saved by QEMU 6.0.0") in warnings[0]
    assert StateStore(states).find(stream.stem) is not None


def test_a_state_of_another_build_is_not_restored(kernel, tcg, tmp_path):
    """Another build of the kernel, with the same size, mtime, inode and lab_ready address
    (one byte of its debug strings differs): the content digest tells it apart."""
    from elftools.elf.elffile import ELFFile

    mine = tmp_path / "labkernel"
    shutil.copy2(kernel, mine)
    store = StateStore(tmp_path / "states")
    with Session(mine, tcg, states=store) as s:
        first = s.restored.key
    with open(mine, "rb") as f:
        offset = ELFFile(f).get_section_by_name(".debug_str")["sh_offset"] + 1
    st = mine.stat()
    with open(mine, "r+b") as f:  # in place: the inode stays
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x20]))
    os.utime(mine, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (mine.stat().st_size, mine.stat().st_mtime_ns, mine.stat().st_ino) == \
        (st.st_size, st.st_mtime_ns, st.st_ino)
    with Session(mine, tcg, states=store) as s:
        assert s.boot_to_ready().startswith("LAB-READY")
        assert s.restored.key != first
        assert s.restored.meta["key"] == s.restored.key
    assert len(list((tmp_path / "states").glob("*.state"))) == 2


def test_a_stopped_state_maker_bounds_the_wait(kernel, tcg, tmp_path):
    """A state-maker that stopped (SIGSTOP) while holding the state's lock: a run waits its
    bound, then fails naming the holder, instead of hanging."""
    states = tmp_path / "states"
    states.mkdir(mode=0o700)
    key = state_key(base_argv(tcg, kernel, None), [kernel])
    holder = subprocess.Popen([sys.executable, "-c", f"""
import os, signal
from pathlib import Path
from lab.host.locks import exclusive
with exclusive(Path({str(states / f"{key}.lock")!r})):
    print("held", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with pytest.raises(LabTimeout, match=rf"(?s)after 1 s waiting for the lock on the saved ready state.*"
                                             rf"held by pid {holder.pid}.*pass --fresh"):
            with Session(kernel, tcg, states=StateStore(states, lock_timeout=1.0)):
                pass
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_state_dir_others_can_write_is_refused(tmp_path, mode):
    states = tmp_path / "states"
    states.mkdir()
    states.chmod(mode)
    r = lab_cli("inspect", env={"LAB_STATE_DIR": str(states)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and f"{states} is writable by" in r.stderr
    assert not list(states.iterdir())
    assert lab_cli("inspect", "--fresh", env={"LAB_STATE_DIR": str(states)}).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_state_dir_of_another_user_is_refused(made_states, tmp_path):
    states, _, _ = _copy_states(made_states, tmp_path)
    os.chown(states, 4242, 4242)
    r = lab_cli("inspect", env={"LAB_STATE_DIR": str(states)})
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "belongs to uid 4242, not to you" in r.stderr


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """Mounts a tmpfs of `size` (root only; skipped elsewhere); unmounted after the test."""
    mounted = []

    def mount(size: str, *options: str):
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir(mode=0o700)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", "mode=0700", *options]),
                            "tmpfs", str(point)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


def test_a_state_dir_that_cannot_be_made_means_booting(tmp_path):
    (tmp_path / "file").write_text("")
    report, warnings = _inspect_warned(tmp_path / "file" / "states")
    assert report["timings"]["restored"] is False
    assert len(warnings) == 1 and "cannot create the state dir" in warnings[0] and "Not a directory" in warnings[0]


def test_a_read_only_state_dir_means_booting(tiny_tmpfs):
    states = tiny_tmpfs("1m", "ro")
    report, warnings = _inspect_warned(states)
    assert report["timings"]["restored"] is False
    assert len(warnings) == 1 and "Read-only file system" in warnings[0], warnings


def test_a_full_disk_means_booting(tiny_tmpfs):
    """Room for the lock file, not for the stream: QEMU's save fails, the run boots, and no
    partial stream is left."""
    states = tiny_tmpfs("64k")
    report, warnings = _inspect_warned(states)
    assert report["timings"]["restored"] is False
    assert {c["verdict"] for c in report["checks"]} == {"PASS"}
    assert len(warnings) == 1 and "cannot write the saved ready state" in warnings[0], warnings
    assert "0 KiB free there" in warnings[0]
    assert [p.suffix for p in states.iterdir()] == [".lock"]


def _read_until(pipe, pattern: str, timeout: float) -> str:
    """Reads `pipe` until a line contains `pattern`; bounded."""
    import select

    end = time.monotonic() + timeout
    seen = ""
    while True:
        if not select.select([pipe], [], [], max(0.0, end - time.monotonic()))[0]:
            raise AssertionError(f"no line with {pattern!r} within {timeout} s; saw:\n{seen}")
        line = pipe.readline()
        if not line:
            raise AssertionError(f"the pipe closed before a line with {pattern!r}; saw:\n{seen}")
        seen += line
        if pattern in line:
            return line


def test_a_sigkilled_runs_leftovers_are_swept_by_the_next(tmp_path):
    """SIGKILLed while it makes a state, a lab leaves its run directories and its partial
    stream; the next run removes them (their owner has ended), and nothing else."""
    import tempfile

    states = tmp_path / "states"
    runs = Path(tempfile.mkdtemp(prefix="t-"))  # under the suite's TMPDIR: short socket paths
    try:
        _sigkill_then_sweep(states, runs)
    finally:
        shutil.rmtree(runs)


def _sigkill_then_sweep(states, runs):
    env = {**os.environ, "LAB_STATE_DIR": str(states), "TMPDIR": str(runs)}
    states.mkdir(mode=0o700)
    unrelated = [runs / "lab-notmine", runs / "lab-1-abcdefgh", states / "notes.tmp"]  # no owner files
    for path in unrelated:
        path.mkdir()
    lab = shutil.which("lab")
    argv = [lab] if lab else [sys.executable, "-m", "lab"]
    proc = subprocess.Popen([*argv, "-v", "inspect"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        # The first VM is the one making the state: its stream's temporary file exists now.
        line = _read_until(proc.stderr, "started qemu pid", 30)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    qemu_pid, gdb_pid = map(int, re.search(r"qemu pid (\d+), gdb pid (\d+)", line).groups())
    assert wait_gone(qemu_pid, 10) and wait_gone(gdb_pid, 10)  # PR_SET_PDEATHSIG
    left_runs = [p for p in runs.iterdir() if RUN_DIR_NAME.fullmatch(p.name) and p not in unrelated]
    left_tmps = list(states.glob("*.state.*.tmp"))
    assert left_runs and left_tmps, "SIGKILL left them behind"
    r = subprocess.run([*argv, "inspect"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in left_runs + left_tmps)
    assert all(p.exists() for p in unrelated)


def test_a_restored_session_has_no_other_stop(kernel, tcg, tmp_path):
    with Session(kernel, tcg, restore=True, states=StateStore(tmp_path)) as s:
        with pytest.raises(LabError, match="starts at lab_ready"):
            s.boot_to(Stop(at="kernel_main"))


def test_a_breakpoint_stop_cannot_be_restored(tcg, kernel, tmp_path):
    """Why the lab parks the CPU before saving: saved straight from the breakpoint (QEMU's
    *debug* run state), the stream makes the restoring QEMU abort."""
    stream = tmp_path / "debug-state"
    with Session(kernel, tcg, restore=False, log_dir=tmp_path / "save-logs") as booted:
        booted.boot_to_ready()
        assert booted.qemu.qmp_cmd("query-status")["status"] == "debug"
        booted.qemu.save_state(stream)
    run = RunDir(tmp_path / "restore-logs")
    try:
        with QemuMachine(tcg, run, kernel=kernel, incoming=True) as q:
            with pytest.raises(LabError, match="invalid runstate transition: 'inmigrate' -> 'debug'"):
                q.load_state(stream)
    finally:
        run.close(failed=False)


def test_a_disk_image_boots(tmp_path, bios_kernel):
    """A disk the lab did not build (--image) has no state: it boots."""
    image = bios_kernel.with_name(f"bootimage-{bios_kernel.name}.bin")
    r = lab_cli("inspect", "--json", "--kernel", str(bios_kernel), "--image", str(image),
                env={"LAB_STATE_DIR": str(tmp_path / "states")})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["timings"]["restored"] is False
    assert not (tmp_path / "states").exists() or not list((tmp_path / "states").glob("*.state"))
