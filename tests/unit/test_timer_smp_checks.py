"""Each AP's own local APIC timer (lab/experiments/timer_smp.py, lab/checks/timer.py run_smp):
plausible windows pass; a doctored window fails the check it breaks: a rate off, another CPU's
count moving (its timer reached a CPU that ran none), a CPU's count moving by more than its
own ticks."""

from __future__ import annotations

import pytest

from lab.checks.base import Verdict
from lab.checks.timer import run_smp
from lab.errors import UserError
from lab.experiments.timer import ICOUNT_TSC_HZ
from lab.experiments.timer_smp import ApRate, ApTimerObservation, ApWindow, plan, validate


def window(rates: dict[int, tuple[int, int]], moved: dict[int, int] | None = None, window_ms=500) -> ApWindow:
    """`rates`: cpu -> (hz, ticks); every online CPU 0-3 moves by its ticks + 1 unless `moved` says."""
    cycles = ICOUNT_TSC_HZ * window_ms // 1000
    aps = [ApRate(k, hz, hz, window_ms, ticks, cycles, ICOUNT_TSC_HZ) for k, (hz, ticks) in rates.items()]
    before = {k: 10 * k for k in range(4)}
    delta = {k: (rates[k][1] + 1 if k in rates else 0) for k in range(4)} | (moved or {})
    return ApWindow(aps, before, {k: before[k] + delta[k] for k in range(4)}, 0.7)


def verdicts(*windows, reference=ICOUNT_TSC_HZ) -> dict[str, Verdict]:
    o = ApTimerObservation("tcg", [1, 3], 4, reference, list(windows))
    return {c.id: c.verdict for c in run_smp(o)}


GOOD = ({1: (100, 49), 3: (250, 124)}, {1: (250, 124), 3: (100, 49)})


def test_good_windows_pass():
    v = verdicts(*(window(w) for w in GOOD))
    assert set(v.values()) == {Verdict.PASS}
    assert {"timer.cpu1-apic-rate-100hz", "timer.cpu3-apic-virtual-rate-250hz", "timer.cpu-own-1",
            "timer.cpu-own-2"} <= set(v)


def test_without_icount_the_virtual_check_is_skipped_not_passed():
    v = verdicts(window(GOOD[0]), reference=None)
    assert v["timer.cpu1-apic-virtual-rate-100hz"] is Verdict.SKIP
    assert v["timer.cpu1-apic-rate-100hz"] is Verdict.PASS


@pytest.mark.parametrize("w, failing", [
    (window({1: (100, 25), 3: (250, 124)}), "timer.cpu1-apic-rate-100hz"),  # half the rate
    (window({1: (100, 49), 3: (250, 250)}), "timer.cpu3-apic-virtual-rate-250hz"),  # twice
    (window(GOOD[0], moved={2: 5}), "timer.cpu-own-1"),  # CPU 2 ran no timer, yet was interrupted
    (window(GOOD[0], moved={0: 1}), "timer.cpu-own-1"),  # the boot CPU too
    (window(GOOD[0], moved={1: 49 + 1 + 124}), "timer.cpu-own-1"),  # CPU 3's ticks landed on CPU 1
    (window(GOOD[0], moved={3: 0}), "timer.cpu-own-1"),  # CPU 3's count never moved
    (window(GOOD[0], moved={1: 49 + 1 + 2}), "timer.cpu-own-1"),  # two ticks beyond the window
])
def test_a_wrong_window_fails_its_check(w, failing):
    v = verdicts(w)
    assert v[failing] is Verdict.FAIL, v


def test_the_plan_gives_each_cpu_each_rate_and_different_rates_at_once():
    assert plan([1, 3], (100, 250)) == [{1: 100, 3: 250}, {1: 250, 3: 100}]
    assert plan([2], (100, 250)) == [{2: 100}, {2: 250}]
    assert plan([1, 2, 3], (50,)) == [{1: 50, 2: 50, 3: 50}]


@pytest.mark.parametrize("cpus, window_ms, machine, message", [
    ([0], 500, 4, "--cpu 0: the boot CPU's timers"),
    ([1, 4], 500, 4, "the machine has no CPU 4: it has 4 CPUs"),
    ([1], 500, 1, "the machine has no CPU 1: it has 1 CPU "),
    ([1], 20_000, 2, "--window 20000: the kernel runs an AP's timer for at most 10000 ms"),
])
def test_bad_arguments_are_one_line_before_any_vm(cpus, window_ms, machine, message):
    with pytest.raises(UserError) as e:
        validate(cpus, window_ms, machine)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("ticks, reference, verdict", [
    (25, ICOUNT_TSC_HZ, Verdict.FAIL),  # half the rate, under icount: the timer is slow
    (25, None, Verdict.WARN),  # the same without icount: a busy host loses ticks too
    (100, None, Verdict.FAIL),  # twice the rate: no host makes a timer faster
    (49, None, Verdict.PASS),
])
def test_without_icount_too_few_ticks_warn_and_too_many_fail(ticks, reference, verdict):
    v = verdicts(window({1: (100, ticks), 3: (250, 124)}), reference=reference)
    assert v["timer.cpu1-apic-rate-100hz"] is verdict, v


def test_one_straggler_tick_after_the_window_is_allowed():
    """KVM: a tick on its way as the AP stops its timer is taken after the window (measured)."""
    v = verdicts(window(GOOD[0], moved={1: 49 + 1 + 1}))
    assert v["timer.cpu-own-1"] is Verdict.PASS
