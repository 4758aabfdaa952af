"""Every installed QEMU (`lab qemus`: Debian's 7.2 and the 10.0 set-up unpacks), each run as a
user runs it: boots the lab kernel restored and fresh, saves and restores its ready state by
the migration its version has (file: from 8.2, fd: before), boots the microvm profile, and
fires the scenarios with recorded deviations, each judged against its own version's record.
Marked `matrix`: `.ci/run` runs this subset on every QEMU found."""

from __future__ import annotations

import json

import pytest

from lab.host import profiles, qemus
from lab.host.qemus import parse_version_text
from lab.machine.session import Session
from lab.runs.fire import fire_in_session
from lab.scenarios.deviations import applicable
from lab.scenarios.exceptions import get

from labtest import lab_cli

pytestmark = [pytest.mark.integration, pytest.mark.matrix]

FOUND = qemus.found()
NAMES = [q.name for q in FOUND]
#: Scenarios whose record differs between QEMU versions, and controls that deviate nowhere.
FIRES = ["np", "gp-nogate", "db-int1", "ss-noncanonical", "gp-noncanonical", "gp-msr", "pf-rsvd", "xm",
         "de", "pf-read"]


def test_lab_qemus_lists_every_qemu_with_its_version():
    r = lab_cli("qemus", "--json")
    assert r.returncode == 0, r.stderr
    listed = {q["name"]: q for q in json.loads(r.stdout)}
    assert set(listed) == set(NAMES) and "system" in listed
    for q in FOUND:
        assert listed[q.name]["version"] == q.version_str
        assert listed[q.name]["file_migration"] == (q.version >= (8, 2, 0))
    text = lab_cli("qemus")
    assert text.returncode == 0 and all(q.version_str in text.stdout for q in FOUND)


def test_unknown_qemu_is_one_line():
    r = lab_cli("inspect", "--qemu", "3.1", "--json")
    assert r.returncode == 2 and "unknown QEMU '3.1'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fresh", [False, True], ids=["restored", "fresh"])
def test_inspect_on_each_qemu(name, fresh, tmp_path):
    args = ["inspect", "--qemu", name, "--json"] + (["--fresh"] if fresh else [])
    r = lab_cli(*args, env={"LAB_STATE_DIR": str(tmp_path / "states")}, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    if not fresh:  # the second run restores the state the first made
        again = lab_cli(*args, env={"LAB_STATE_DIR": str(tmp_path / "states")}, timeout=120)
        assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.parametrize("name", NAMES)
def test_saved_state_by_the_migration_the_version_has(name, kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "states"))
    prof = profiles.load("tcg").with_qemu(name)
    for attempt in ("made", "restored"):
        with Session(kernel, prof, log_dir=tmp_path / attempt, keep_logs=True) as s:
            s.boot_to_ready()
            kind = s.qemu.migration_uri_kind
            assert s.restored is not None  # the first session makes the state, then restores it
            assert (s._made is not None) == (attempt == "made")
        stderr = (tmp_path / attempt / "qemu.stderr.log").read_text()
        assert "deprecated" not in stderr, stderr
    assert kind == ("file" if prof.qemu_build.version >= (8, 2, 0) else "fd")


@pytest.mark.parametrize("name", NAMES)
def test_microvm_boots_on_each_qemu(name):
    r = lab_cli("inspect", "--profile", "tcg-microvm", "--qemu", name, "--fresh", "--json", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("name", NAMES)
def test_fires_judged_by_their_own_version(name, kernel, tmp_path):
    prof = profiles.load("tcg").with_qemu(name)
    version = prof.qemu_build.version
    plan = [(get(n), "x86-interrupt") for n in FIRES]
    with Session(kernel, prof, log_dir=tmp_path, debug_log="int") as s:
        s.boot_to_ready()
        results = fire_in_session(s, plan, observer="gdb")  # its CR2 sentinel shows CR2 deviations
    assert len(results) == len(plan)
    for r in results:
        recorded = applicable(r.scenario.name, "tcg", version)
        assert r.observation.qemu == prof.qemu_build.version_str
        want = "DEVIATION" if recorded else "PASS"
        assert r.outcome == want, (r.scenario.name, r.outcome, r.note,
                                   [c.evidence for c in r.checks if c.verdict.value == "FAIL"])
        if recorded:  # the note names the version measured, whichever it is
            assert f"QEMU {prof.qemu_build.version_str} TCG:" in r.note, r.note


def test_qemu_path_names_a_binary():
    q = FOUND[-1]
    r = lab_cli("inspect", "--qemu", str(q.binary), "--json", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_set_up_keeps_a_complete_prefix():
    """lab/setup-qemu.sh is idempotent: with QEMU 10.0's prefix complete it changes nothing and
    says nothing (no apt, no download)."""
    import subprocess

    from lab.host.toolchain import REPO_ROOT

    stamp = qemus.prefix_root() / "10.0.2" / ".lab-complete"
    before = stamp.stat().st_mtime_ns if stamp.exists() else None
    r = subprocess.run(["bash", str(REPO_ROOT / "lab" / "setup-qemu.sh")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert stamp.is_file() and "10.0" in NAMES + [q.name for q in qemus.private()]
    if before is not None:
        assert r.stdout == "" and stamp.stat().st_mtime_ns == before
