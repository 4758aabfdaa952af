"""Saved ready states (lab/machine/snapshot.py): a restored VM is the booted VM at lab_ready.

Each test keeps its states in its own directory, so the first restore of every test also
makes its state (one booted VM, parked, saved)."""

from __future__ import annotations

import json

import pytest

from lab.host.bootpath import BIOS, BOOT_PATHS
from lab.host.build import build_kernel
from lab.errors import GuestError, LabError
from lab.machine.qemu import QemuMachine
from lab.machine.rundir import RunDir
from lab.machine.session import Session, Stop
from lab.machine.snapshot import StateStore, park_at_ready

from labtest import lab_cli


@pytest.fixture(scope="module")
def bios_kernel():
    return build_kernel(quiet=True, boot=BIOS)


def _inspect(tmp_path, *args):
    r = lab_cli("inspect", "--json", *args, env={"LAB_STATE_DIR": str(tmp_path / "states")})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


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
    with pytest.raises(GuestError, match="not at lab_ready"):
        with Session(kernel, tcg, restore=True, states=store) as s:
            s.boot_to_ready()


def test_park_check_fails_off_the_ready_point(session):
    """Parking at an address the CPU is not at lets it run on: the check must say so."""
    ready = session.symbols.lookup("lab_ready").address
    with pytest.raises(GuestError, match="parking the CPU"):
        park_at_ready(session.gdb, session.qemu, ready + 0x10)


def test_a_corrupt_state_is_an_error_naming_it(kernel, tcg, tmp_path):
    store = StateStore(tmp_path)
    with Session(kernel, tcg, restore=True, states=store) as s:
        s.boot_to_ready()
    stream = next(tmp_path.glob("*.state"))
    stream.write_bytes(stream.read_bytes()[:4096])
    with pytest.raises(LabError, match=rf"load the state {stream}"):
        with Session(kernel, tcg, restore=True, states=store) as s:
            s.boot_to_ready()


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
