"""Timer checks pass on plausible measurements and FAIL on wrong ones: each check, on each
reference clock (icount's virtual time, the host's), has a doctored observation that fails it."""

from __future__ import annotations

import pytest

from lab.checks.base import Verdict
from lab.checks.timer import run
from lab.experiments.timer import (ICOUNT_ARGS, ICOUNT_TSC_HZ, GateSample, OneShotSample, RateSample,
                                   TimerObservation, profile_for)
from lab.host.profiles import Profile

TSC_HZ = ICOUNT_TSC_HZ  # under icount the TSC counts virtual ns


def sample(hz=100, ticks=50, window_ms=500, source="pit", tsc_hz=TSC_HZ, cycles=None, reply_ticks=51,
           host=(0.505, 0.520)):
    """A `measure` window: `ticks` in `window_ms` by a kernel that calibrated the TSC at
    `tsc_hz`; `cycles` (default: the window at that rate) is what the TSC really counted."""
    cycles = tsc_hz * window_ms // 1000 if cycles is None else cycles
    return RateSample(source, hz, hz, window_ms, ticks, cycles, tsc_hz, reply_ticks, *host)


def obs(reference="virtual", **kw):
    o = TimerObservation("tcg", reference, TSC_HZ if reference == "virtual" else None,
                         rates=[sample(), sample(source="apic")], counts={"no-eoi": 1, "masked": 0},
                         oneshot=OneShotSample(20000, 1, 20300), apic_hz={"by_pit": 63_046_800, "by_tsc": 62_589_800},
                         gates=[GateSample("none", "interrupt", 0x46), GateSample("trap-gate", "trap", 0x246)])
    for k, v in kw.items():
        setattr(o, k, v)
    return {c.id: c.verdict for c in run(o)}


def test_good_measurements_pass_on_virtual_time():
    assert set(obs().values()) == {Verdict.PASS}


def test_good_measurements_pass_on_host_time():
    v = obs("host")
    assert v.pop("timer.tsc-calibration") is Verdict.SKIP  # the TSC's true rate is unknown there
    assert set(v.values()) == {Verdict.PASS}
    assert "timer.pit-host-rate-100hz" in v and "timer.pit-virtual-rate-100hz" not in v


#: A kernel that believes the PIT's input clock is twice the real one: its divisor gives half
#: the rate it reports, and its TSC calibration (against the same PIT) reads twice too high,
#: so its 500 ms window is 1 s long and holds 50 ticks, as a right kernel's would.
PIT_CONSTANT_2X = sample(ticks=50, tsc_hz=2 * TSC_HZ, cycles=TSC_HZ)
#: A kernel whose TSC calibration is twice too high but whose divisor is right: 100 ticks in
#: its 1 s long "500 ms".
TSC_CALIBRATION_2X = sample(ticks=100, tsc_hz=2 * TSC_HZ, cycles=TSC_HZ)


@pytest.mark.parametrize("reference, changes, check", [
    # rates by the guest TSC: a little off, twice, half (a wrong divisor), a wrong calibration
    ("virtual", dict(rates=[sample(ticks=46)]), "timer.pit-rate-100hz"),  # 8% slow
    ("virtual", dict(rates=[sample(ticks=53)]), "timer.pit-rate-100hz"),
    ("virtual", dict(rates=[sample(ticks=100)]), "timer.pit-rate-100hz"),  # divisor halved: 2x
    ("virtual", dict(rates=[sample(ticks=25)]), "timer.pit-rate-100hz"),  # divisor doubled: 0.5x
    ("virtual", dict(rates=[TSC_CALIBRATION_2X]), "timer.pit-rate-100hz"),
    ("virtual", dict(rates=[sample(source="apic", ticks=45)]), "timer.apic-rate-100hz"),
    ("virtual", dict(rates=[sample(source="apic", ticks=100)]), "timer.apic-rate-100hz"),
    ("host", dict(rates=[sample(ticks=25)]), "timer.pit-rate-100hz"),
    # rates by QEMU's virtual time: what the guest TSC cannot see
    ("virtual", dict(rates=[PIT_CONSTANT_2X]), "timer.pit-virtual-rate-100hz"),
    ("virtual", dict(rates=[sample(ticks=100)]), "timer.pit-virtual-rate-100hz"),
    ("virtual", dict(rates=[sample(ticks=25)]), "timer.pit-virtual-rate-100hz"),
    ("virtual", dict(rates=[sample(ticks=47)]), "timer.pit-virtual-rate-100hz"),
    ("virtual", dict(rates=[sample(source="apic", ticks=50, tsc_hz=TSC_HZ // 2, cycles=TSC_HZ // 4)]),
     "timer.apic-virtual-rate-100hz"),  # 50 ticks in 250 ms: 200/s
    # the TSC calibration against its true rate
    ("virtual", dict(rates=[PIT_CONSTANT_2X]), "timer.tsc-calibration"),
    ("virtual", dict(rates=[TSC_CALIBRATION_2X]), "timer.tsc-calibration"),
    ("virtual", dict(rates=[sample(tsc_hz=TSC_HZ // 2)]), "timer.tsc-calibration"),
    ("virtual", dict(rates=[sample(tsc_hz=TSC_HZ * 103 // 100)]), "timer.tsc-calibration"),
    # rates by host time (no icount): the bracket of the two round trips
    ("host", dict(rates=[sample(reply_ticks=40)]), "timer.pit-host-rate-100hz"),
    ("host", dict(rates=[sample(reply_ticks=102)]), "timer.pit-host-rate-100hz"),  # 2x
    ("host", dict(rates=[sample(reply_ticks=25)]), "timer.pit-host-rate-100hz"),  # 0.5x
    ("host", dict(rates=[sample(ticks=50, tsc_hz=2 * TSC_HZ, cycles=TSC_HZ, reply_ticks=51, host=(1.01, 1.03))]),
     "timer.pit-host-rate-100hz"),  # the wrong PIT constant, by host time
    ("host", dict(rates=[sample(source="apic", reply_ticks=60)]), "timer.apic-host-rate-100hz"),
    # the APIC timer's two calibrations
    ("virtual", dict(apic_hz={"by_pit": 70_000_000, "by_tsc": 62_500_000}), "timer.apic-calibration"),
    ("virtual", dict(apic_hz={"by_pit": 125_000_000, "by_tsc": 62_500_000}), "timer.apic-calibration"),
    ("host", dict(apic_hz={"by_pit": 31_250_000, "by_tsc": 62_500_000}), "timer.apic-calibration"),
    # the one-shot: one interrupt, on time
    ("virtual", dict(oneshot=OneShotSample(20000, 2, 20300)), "timer.apic-oneshot"),  # periodic
    ("virtual", dict(oneshot=OneShotSample(20000, 1, 23000)), "timer.apic-oneshot"),
    ("virtual", dict(oneshot=OneShotSample(20000, 1, 40000)), "timer.apic-oneshot"),  # count 2x
    ("virtual", dict(oneshot=OneShotSample(20000, 1, 10000)), "timer.apic-oneshot"),  # count 0.5x
    ("virtual", dict(oneshot=OneShotSample(20000, 0, 0)), "timer.apic-oneshot"),
    # the pitfalls
    ("virtual", dict(counts={"no-eoi": 0, "masked": 0}), "timer.no-eoi"),
    ("virtual", dict(counts={"no-eoi": 30, "masked": 0}), "timer.no-eoi"),
    ("virtual", dict(counts={"no-eoi": 1, "masked": 2}), "timer.masked"),
    ("virtual", dict(gates=[GateSample("none", "interrupt", 0x246), GateSample("trap-gate", "trap", 0x246)]),
     "timer.if-interrupt-gate"),
    ("virtual", dict(gates=[GateSample("none", "interrupt", 0x46), GateSample("trap-gate", "trap", 0x46)]),
     "timer.if-trap-gate"),
    ("virtual", dict(gates=[GateSample("none", "interrupt", 0x46), GateSample("trap-gate", "interrupt", 0x246)]),
     "timer.if-trap-gate"),
])
def test_wrong_measurements_fail(reference, changes, check):
    assert obs(reference, **changes)[check] is Verdict.FAIL


def test_a_wrong_pit_constant_fools_the_guest_tsc_but_not_virtual_time():
    """Why each rate has a second judge: the guest's own clocks agree with each other."""
    v = obs(rates=[PIT_CONSTANT_2X])
    assert v["timer.pit-rate-100hz"] is Verdict.PASS
    assert v["timer.pit-virtual-rate-100hz"] is Verdict.FAIL


@pytest.mark.parametrize("host", [(0.49, 0.52), (0.30, 0.52), (0.49, 0.80)])
def test_slow_serial_replies_widen_the_host_bracket_without_failing(host):
    assert obs("host", rates=[sample(reply_ticks=51, host=host)])["timer.pit-host-rate-100hz"] is Verdict.PASS


def test_edge_allowance_is_one_tick_plus_two_percent():
    for check in ("timer.pit-rate-1000hz", "timer.pit-virtual-rate-1000hz"):
        assert obs(rates=[sample(hz=1000, ticks=511)])[check] is Verdict.PASS   # +11 of 500
        assert obs(rates=[sample(hz=1000, ticks=512)])[check] is Verdict.FAIL


def _profile(accel="tcg", args=()):
    return Profile("p", "", "pc", accel, "qemu64", "128M", args=tuple(args))


def test_tcg_runs_under_icount_and_kvm_as_it_is():
    assert profile_for(_profile()).args == ICOUNT_ARGS
    assert profile_for(_profile(args=["-s"])).args == ("-s", *ICOUNT_ARGS)
    own = _profile(args=["-icount", "shift=3"])
    assert profile_for(own) is own  # a profile with its own icount keeps it
    kvm = _profile("kvm")
    assert profile_for(kvm) is kvm
