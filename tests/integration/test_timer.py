"""`lab timer` on the live kernel (TCG)."""

from __future__ import annotations

import json

import pytest

from lab.checks.base import Verdict
from lab.checks.timer import run
from lab.experiments.timer import observe

from labtest import lab_cli

# Rates are judged against the guest TSC and host time: a TCG vCPU that another worker's QEMU
# keeps off the CPU loses APIC ticks (36 of 40 seen), so these tests run alone.
pytestmark = pytest.mark.exclusive


def test_rates_and_pitfalls(session):
    o = observe(session, rates=(100, 500), window_ms=400)
    checks = run(o)
    assert not [c for c in checks if c.verdict is Verdict.FAIL], [(c.id, c.evidence) for c in checks if c.verdict is Verdict.FAIL]
    assert [(r.source, r.configured_hz) for r in o.rates] == [("pit", 100), ("pit", 500), ("apic", 100), ("apic", 500)]
    assert o.oneshot.ticks == 1
    assert o.counts == {"no-eoi": 1, "masked": 0}


def test_shell_survives_the_no_eoi_pitfall(session):
    session.gdb.cont()
    session.serial.wait_prompt(10)
    session.serial.command("timer pitfall no-eoi")
    session.serial.command("timer pit 100")
    assert session.serial.command("info").startswith("info version=")  # console polled, not IRQ4
    session.serial.command("timer stop")
    before = int(session.serial.command("ticks").split("count=")[1].split()[0])
    session.serial.command("timer pitfall none")
    session.serial.command("timer pit 200")
    session.serial.command("measure 100")
    after = int(session.serial.command("ticks").split("count=")[1].split()[0])
    assert after - before >= 15, "the timer did not recover after the withheld EOI was sent"


def test_cli_timer_json(kernel):
    """The CLI's contract: JSON with every check, and an exit status that agrees with the
    verdicts. The rates themselves are judged by test_rates_and_pitfalls: on a busy host a
    200 ms window can lose a tick or two, which is what the checks are there to show."""
    r = lab_cli("timer", "--kernel", str(kernel), "--json", "--rate", "250", "--window", "200")
    assert r.returncode in (0, 1), r.stderr
    out = json.loads(r.stdout)
    failed = [c["id"] for c in out["checks"] if c["verdict"] == "FAIL"]
    assert r.returncode == (1 if failed else 0), failed
    assert {c["id"] for c in out["checks"]} >= {"timer.pit-rate-250hz", "timer.apic-rate-250hz", "timer.apic-oneshot",
                                                "timer.no-eoi", "timer.if-trap-gate"}


def test_cli_timer_bad_rate_is_reported_by_the_kernel(session):
    session.gdb.cont()
    session.serial.wait_prompt(10)
    assert "error: rate must be 19-100000 Hz" in session.serial.command("timer pit 5")
