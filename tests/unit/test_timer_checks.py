"""Timer checks pass on plausible measurements and FAIL on wrong ones."""

from __future__ import annotations

import pytest

from lab.checks.base import Verdict
from lab.checks.timer import run
from lab.experiments.timer import GateSample, OneShotSample, RateSample, TimerObservation

TSC_HZ = 2_600_000_000


def sample(hz=100, ticks=50, host_ticks=51, host_s=0.505, window_ms=500, source="pit"):
    return RateSample(source, hz, hz, window_ms, ticks, TSC_HZ * window_ms // 1000, TSC_HZ, host_ticks, host_s)


def obs(**kw):
    o = TimerObservation("tcg", rates=[sample(), sample(source="apic")], counts={"no-eoi": 1, "masked": 0},
                         oneshot=OneShotSample(20000, 1, 20300), apic_hz={"by_pit": 63_046_800, "by_tsc": 62_589_800},
                         gates=[GateSample("none", "interrupt", 0x46), GateSample("trap-gate", "trap", 0x246)])
    for k, v in kw.items():
        setattr(o, k, v)
    return {c.id: c.verdict for c in run(o)}


def test_good_measurements_pass():
    assert set(obs().values()) == {Verdict.PASS}


@pytest.mark.parametrize("changes, check", [
    (dict(rates=[sample(ticks=46)]), "timer.pit-rate-100hz"),      # 8% slow by the TSC
    (dict(rates=[sample(ticks=53)]), "timer.pit-rate-100hz"),
    (dict(rates=[sample(host_ticks=40)]), "timer.pit-host-rate-100hz"),
    (dict(rates=[sample(source="apic", ticks=45)]), "timer.apic-rate-100hz"),
    (dict(rates=[sample(source="apic", host_ticks=60)]), "timer.apic-host-rate-100hz"),
    (dict(oneshot=OneShotSample(20000, 2, 20300)), "timer.apic-oneshot"),
    (dict(oneshot=OneShotSample(20000, 1, 23000)), "timer.apic-oneshot"),
    (dict(oneshot=OneShotSample(20000, 0, 0)), "timer.apic-oneshot"),
    (dict(apic_hz={"by_pit": 70_000_000, "by_tsc": 62_500_000}), "timer.apic-calibration"),
    (dict(counts={"no-eoi": 0, "masked": 0}), "timer.no-eoi"),
    (dict(counts={"no-eoi": 30, "masked": 0}), "timer.no-eoi"),
    (dict(counts={"no-eoi": 1, "masked": 2}), "timer.masked"),
    (dict(gates=[GateSample("none", "interrupt", 0x246), GateSample("trap-gate", "trap", 0x246)]),
     "timer.if-interrupt-gate"),
    (dict(gates=[GateSample("none", "interrupt", 0x46), GateSample("trap-gate", "trap", 0x46)]),
     "timer.if-trap-gate"),
    (dict(gates=[GateSample("none", "interrupt", 0x46), GateSample("trap-gate", "interrupt", 0x246)]),
     "timer.if-trap-gate"),
])
def test_wrong_measurements_fail(changes, check):
    assert obs(**changes)[check] is Verdict.FAIL


def test_edge_allowance_is_one_tick_plus_two_percent():
    assert obs(rates=[sample(hz=1000, ticks=511)])["timer.pit-rate-1000hz"] is Verdict.PASS   # +11 of 500
    assert obs(rates=[sample(hz=1000, ticks=512)])["timer.pit-rate-1000hz"] is Verdict.FAIL
