"""Ring 3 on the live kernel (TCG): the syscall path, an interrupt and faults in ring 3, the
per-CPU area, and `lab frame`."""

from __future__ import annotations

import json

from lab.checks.base import Verdict
from lab.checks.ring3 import run
from lab.experiments.ring3 import observe

from labtest import lab_cli


def test_syscall_path_interrupt_and_faults(session):
    o = observe(session)
    checks, outcomes = run(o)
    failed = [(c.id, c.evidence) for c in checks if c.verdict is Verdict.FAIL and c.id != "ring3.fault-ac"]
    assert not failed, failed
    assert outcomes["ac"] in ("PASS", "DEVIATION")  # TCG has no #AC
    assert o.bench["per_s"] > 1000


def test_user_programs_end_as_expected(session):
    session.gdb.cont()
    session.serial.wait_prompt(10)
    assert "user exit name=badptr pid=1 code=-14" in session.serial.command("user run badptr")
    assert "vector=13" in session.serial.command("user run cli")
    assert session.serial.command("info").startswith("info version=")  # the kernel survived
    assert "unknown program 'nope'" in session.serial.command("user run nope")


def test_cli_pcpu(kernel):
    r = lab_cli("pcpu", "--kernel", str(kernel), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["fields"]["self_ptr"] == out["address"] and {c["verdict"] for c in out["checks"]} == {"PASS"}


def test_cli_frame_at_a_handler(kernel):
    r = lab_cli("frame", "--kernel", str(kernel), "--at", "isr_pf", "--shell", "user run kread", "--json")
    assert r.returncode == 0, r.stderr
    f = json.loads(r.stdout)
    assert f["vectors"] == [14] and f["error_code"] == 5
    assert [s["slot"] for s in f["slots"]] == ["error code", "RIP", "CS", "RFLAGS", "RSP", "SS"]
    assert f["slots"][2]["value"] == 0x23 and f["slots"][2]["note"] == "ring 3"


def test_cli_frame_refuses_a_stop_that_is_not_a_handler(kernel):
    r = lab_cli("frame", "--kernel", str(kernel), "--at", "schedule", "--shell", "yield")
    assert r.returncode == 2 and "which no present IDT gate names" in r.stderr and "Traceback" not in r.stderr


def test_cli_ring3_json(kernel):
    r = lab_cli("ring3", "--kernel", str(kernel), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["outcomes"]["kread"] == "PASS"
