"""Timer checks: rates against the configured rate, and the pitfalls (8259A datasheet: an
IRQ stays in service until EOI and blocks lower or equal priority; SDM vol. 3A §6.12.1.3:
interrupt gates clear IF, trap gates do not)."""

from __future__ import annotations

from lab.checks.base import Check, Checks, Verdict
from lab.x86.frames import RFLAGS_IF

TIER = "timer"
C = Checks(TIER)
#: Ticks a window may gain or lose at its two edges (a tick just before or after it), plus a
#: relative allowance for interrupt latency. Under icount the counts are exact to a tick; a
#: wrong divisor or calibration is off by far more (a factor of 2 is 50 ticks in 100).
EDGE_TICKS = 1
GUEST_TOLERANCE = 0.02
#: The host-clock window (no icount) is bracketed by the two serial round trips; the rate the
#: bracket allows must come within this of the configured one.
HOST_TOLERANCE = 0.10
#: Under icount the TSC runs at exactly ICOUNT_TSC_HZ; the kernel calibrates it over 10 ms of
#: PIT channel 2 (measured within 0.01%).
TSC_TOLERANCE = 0.01


def _label(sample) -> str:
    """What a rate's checks call its timer: the sample's own label, else its source (PIT, APIC)."""
    return getattr(sample, "label", None) or sample.source.upper()


def _ticks_ok(ticks: int, rate_hz: float, seconds: float) -> tuple[bool, float, float]:
    """Whether `ticks` is what `rate_hz` gives over `seconds`, within the edge and relative
    allowance; also the expected count and the allowance."""
    expected = rate_hz * seconds
    allowed = EDGE_TICKS + GUEST_TOLERANCE * expected
    return abs(ticks - expected) <= allowed, expected, allowed


def check_rate(sample) -> Check:
    ok, _, allowed = _ticks_ok(sample.ticks, sample.configured_hz, sample.window_ms / 1000)
    err = (sample.guest_rate - sample.configured_hz) / sample.configured_hz
    return C.result(f"timer.{sample.source}-rate-{sample.requested_hz}hz",
              f"{_label(sample)} at {sample.configured_hz} Hz, by the guest TSC",
              ok,
              [f"{sample.ticks} ticks in {sample.window_ms} ms (TSC) = {sample.guest_rate:.1f}/s, "
               f"error {err:+.2%}; allowed ±{allowed:.1f} ticks"])


def check_virtual_rate(sample, tsc_hz: int) -> Check:
    """The window's ticks against QEMU's virtual time: its TSC cycles at the TSC's true rate
    (icount: virtual ns), which the guest's calibration has no part in. A kernel whose PIT
    constant is wrong programs a wrong divisor *and* a wrong TSC calibration, and passes
    `check_rate`, but not this."""
    seconds = sample.tsc_cycles / tsc_hz
    ok, expected, allowed = _ticks_ok(sample.ticks, sample.configured_hz, seconds)
    rate = sample.reference_rate(tsc_hz)
    err = (rate - sample.configured_hz) / sample.configured_hz
    return C.result(f"timer.{sample.source}-virtual-rate-{sample.requested_hz}hz",
              f"{_label(sample)} at {sample.configured_hz} Hz, by QEMU's virtual clock (icount)",
              ok,
              [f"{sample.ticks} ticks in {seconds * 1000:.1f} ms of virtual time (TSC cycles at "
               f"{tsc_hz / 1e6:g} MHz) = {rate:.1f}/s, error {err:+.2%}; expected {expected:.1f} "
               f"±{allowed:.1f} ticks"])


def check_host_rate(sample) -> Check:
    """Without icount: the rate over host time. The window is known only between the two
    serial round trips, so the check asks whether any rate the bracket allows is within
    HOST_TOLERANCE of the configured one; a slow reply widens the bracket, it does not fail."""
    lo, hi = sample.host_rates
    hz = sample.configured_hz
    ok = lo <= hz * (1 + HOST_TOLERANCE) and hi >= hz * (1 - HOST_TOLERANCE)
    return C.result(f"timer.{sample.source}-host-rate-{sample.requested_hz}hz",
              f"{sample.source.upper()} at {hz} Hz, by the host clock",
              ok,
              [f"{sample.reply_ticks} ticks in {sample.host_seconds_min * 1000:.1f}-"
               f"{sample.host_seconds_max * 1000:.1f} ms of host time = {lo:.1f}-{hi:.1f}/s "
               f"(error {(lo - hz) / hz:+.2%} to {(hi - hz) / hz:+.2%}); allowed ±{HOST_TOLERANCE:.0%}"])


def check_tsc_calibration(obs) -> Check:
    """The kernel's TSC rate (calibrated against PIT channel 2) against the TSC's true rate,
    known under icount only."""
    title = "the TSC calibrated against the PIT runs at the TSC's true rate"
    if not obs.tsc_reference_hz or not obs.rates:
        return C.skip("timer.tsc-calibration", title, "no reference: the TSC's true rate is known under icount only")
    ref, hz = obs.tsc_reference_hz, obs.rates[0].tsc_hz
    err = (hz - ref) / ref
    return C.result("timer.tsc-calibration", title, abs(err) <= TSC_TOLERANCE,
              [f"{hz / 1e6:.3f} MHz by the PIT, {ref / 1e6:.3f} MHz by QEMU's virtual clock: "
               f"{err:+.2%}; allowed ±{TSC_TOLERANCE:.0%}"])


#: The APIC timer is calibrated over 10 ms against the PIT and, separately, the TSC.
CALIBRATION_TOLERANCE = 0.02
#: One-shot delay: calibration error plus interrupt latency.
ONESHOT_TOLERANCE = 0.05


def check_apic_calibration(obs) -> Check:
    c = obs.apic_hz
    if not c:
        return C.make("timer.apic-calibration", "APIC timer calibration", Verdict.SKIP, ("not measured",))
    diff = (c["by_pit"] - c["by_tsc"]) / c["by_tsc"]
    return C.result("timer.apic-calibration", "the APIC timer's rate agrees when calibrated against the PIT and the TSC",
              abs(diff) <= CALIBRATION_TOLERANCE,
              [f"{c['by_pit'] / 1e6:.3f} MHz by the PIT, {c['by_tsc'] / 1e6:.3f} MHz by the TSC: "
               f"{diff:+.2%}; allowed ±{CALIBRATION_TOLERANCE:.0%}"])


def check_oneshot(obs) -> Check:
    o = obs.oneshot
    if o is None:
        return C.make("timer.apic-oneshot", "APIC one-shot", Verdict.SKIP, ("not measured",))
    err = (o.delay_us - o.requested_us) / o.requested_us
    return C.result("timer.apic-oneshot", f"APIC one-shot: exactly one interrupt, {o.requested_us} us after arming",
              o.ticks == 1 and abs(err) <= ONESHOT_TOLERANCE,
              [f"{o.ticks} interrupt(s) in 3x the delay; delay {o.delay_us} us by the TSC, error {err:+.2%}; "
               f"allowed ±{ONESHOT_TOLERANCE:.0%}"])


def check_no_eoi(obs) -> Check:
    n = obs.counts.get("no-eoi")
    return C.result("timer.no-eoi", "no EOI: exactly one tick, then silence (IRQ0 stays in service)", n == 1,
              [f"{n} ticks from the timer's start to the end of the window"])


def check_masked(obs) -> Check:
    n = obs.counts.get("masked")
    return C.result("timer.masked", "IRQ0 masked: no ticks", n == 0,
              [f"{n} ticks from the timer's start to the end of the window"])


def pitfall_gate(obs, pitfall):
    """The gate measurement taken with the kernel's timer `pitfall` installed, or None."""
    return next((g for g in obs.gates if g.pitfall == pitfall), None)


def _check_gate_if(obs, check_id, title, pitfall, gate_type, want_if) -> Check:
    """The handler of the gate the `pitfall` run installed sees RFLAGS.IF = ``want_if``
    (SDM vol. 3A §6.12.1.3: an interrupt gate clears IF, a trap gate leaves it)."""
    g = pitfall_gate(obs, pitfall)
    if g is None:
        return C.make(check_id, title, Verdict.SKIP, ("not measured",))
    inside = bool(g.rflags & RFLAGS_IF)
    return C.result(check_id, title, g.gate_type == gate_type and inside == want_if,
              [f"gate type {g.gate_type}, RFLAGS {g.rflags:#x} at the handler: IF={int(inside)}"])


def check_interrupt_gate_if(obs) -> Check:
    return _check_gate_if(obs, "timer.if-interrupt-gate", "interrupt gate: IF=0 in the handler",
                          "none", "interrupt", want_if=False)


def check_trap_gate_if(obs) -> Check:
    return _check_gate_if(obs, "timer.if-trap-gate", "trap gate (pitfall): IF stays 1 in the handler",
                          "trap-gate", "trap", want_if=True)


def run(obs) -> list[Check]:
    checks = []
    for s in obs.rates:
        reference = check_virtual_rate(s, obs.tsc_reference_hz) if obs.tsc_reference_hz else check_host_rate(s)
        checks += [check_rate(s), reference]
    return checks + [check_tsc_calibration(obs), check_apic_calibration(obs), check_oneshot(obs), check_no_eoi(obs),
                     check_masked(obs), check_interrupt_gate_if(obs), check_trap_gate_if(obs)]


# -- each application processor's own local APIC timer (lab/experiments/timer_smp.py) -------

#: A tick already on its way as an AP stops its timer can be taken after the window closes,
#: at the AP's next `sti`: counted as an interrupt, not as a tick of the window. Seen on KVM
#: (the host's timer had fired as the guest wrote the initial count 0) and on TCG without
#: icount (TCG takes interrupts only between translation blocks, and the write and the `cli`
#: after it can share one).
STRAGGLER_TICKS = 1


def check_ap_own(window, index: int) -> Check:
    """In one window, each timed CPU's interrupt count moved by its own ticks plus the one IPI
    that woke it (plus at most one straggler tick), and every other CPU's by none: each CPU's
    timer interrupts that CPU alone."""
    rates = {r.cpu: r for r in window.rates}
    problems, lines = [], []
    for k in sorted(window.ipis_after):
        moved = window.ipis_after[k] - window.ipis_before.get(k, 0)
        want = rates[k].ticks + 1 if k in rates else 0
        lines.append(f"CPU {k}: +{moved}" + (f" ({rates[k].ticks} ticks at {rates[k].configured_hz} Hz + the wake-up"
                                             + (" + a straggler tick after the window)" if moved == want + 1 else ")")
                                             if k in rates else ""))
        if k not in rates and moved != 0:
            problems.append(f"CPU {k}'s interrupt count moved by {moved}: it ran no timer in this window, "
                            "so another CPU's timer interrupted it")
        elif k in rates and not want <= moved <= want + STRAGGLER_TICKS:
            problems.append(f"CPU {k}'s interrupt count moved by {moved}, not {want} (its own {rates[k].ticks} "
                            f"ticks plus the wake-up IPI, and at most {STRAGGLER_TICKS} straggler tick)")
    title = "each CPU's local APIC timer interrupts that CPU alone (" + \
        ", ".join(f"CPU {r.cpu} at {r.configured_hz} Hz" for r in window.rates) + ")"
    return C.problems(f"timer.cpu-own-{index + 1}", title, problems, "; ".join(lines))


def check_ap_rate(sample, exact: bool) -> Check:
    """`check_rate` for an AP's window. Without icount (`exact` False: KVM) a vCPU the host does
    not run loses ticks (the APIC latches one pending interrupt, the rest of the periods
    coalesce), so fewer ticks than the rate are a WARN, not a FAIL: the lab cannot tell a busy
    host from a slow timer there. More ticks than the rate are a FAIL on any accelerator."""
    check = check_rate(sample)
    _, expected, _ = _ticks_ok(sample.ticks, sample.configured_hz, sample.window_ms / 1000)
    if check.verdict is not Verdict.FAIL or exact or sample.ticks > expected:
        return check
    return C.warn(check.id, check.title, [*check.evidence,
                  "fewer ticks than the rate without icount: on KVM a vCPU the host did not run loses "
                  "them (one interrupt stays pending, the other periods coalesce), so this may be the "
                  "host, not the timer; under TCG `lab timer` runs under icount and tells them apart"])


def run_smp(obs) -> list[Check]:
    checks = []
    for i, w in enumerate(obs.windows):
        for r in w.rates:
            checks.append(check_ap_rate(r, exact=bool(obs.tsc_reference_hz)))
            checks.append(check_virtual_rate(r, obs.tsc_reference_hz) if obs.tsc_reference_hz else C.skip(
                f"timer.{r.source}-virtual-rate-{r.requested_hz}hz",
                f"{_label(r)} at {r.configured_hz} Hz, by QEMU's virtual clock (icount)",
                "no icount: the AP counts its ticks inside its window, which no host-time bracket covers; "
                "judged by the guest's TSC alone"))
        checks.append(check_ap_own(w, i))
    return checks
