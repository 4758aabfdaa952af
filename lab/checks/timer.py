"""Timer checks: rates against the configured rate, and the pitfalls (8259A datasheet: an
IRQ stays in service until EOI and blocks lower or equal priority; SDM vol. 3A §6.12.1.3:
interrupt gates clear IF, trap gates do not)."""

from __future__ import annotations

from lab.checks.base import Check, Checks, Verdict, verdict
from lab.x86.frames import RFLAGS_IF

TIER = "timer"
C = Checks(TIER)
#: Ticks a window may gain or lose at its two edges, plus a relative allowance for the
#: emulated PIT's and TSC's timing on a loaded host.
EDGE_TICKS = 1
GUEST_TOLERANCE = 0.02
#: The host-clock window includes two serial round trips and command handling.
HOST_TOLERANCE = 0.10




def check_rate(sample) -> Check:
    expected = sample.configured_hz * sample.window_ms / 1000
    allowed = EDGE_TICKS + GUEST_TOLERANCE * expected
    err = (sample.guest_rate - sample.configured_hz) / sample.configured_hz
    return C.result(f"timer.{sample.source}-rate-{sample.requested_hz}hz",
              f"{sample.source.upper()} at {sample.configured_hz} Hz, by the guest TSC",
              abs(sample.ticks - expected) <= allowed,
              [f"{sample.ticks} ticks in {sample.window_ms} ms (TSC) = {sample.guest_rate:.1f}/s, "
               f"error {err:+.2%}; allowed ±{allowed:.1f} ticks"])


def check_host_rate(sample) -> Check:
    err = (sample.host_rate - sample.configured_hz) / sample.configured_hz
    return C.result(f"timer.{sample.source}-host-rate-{sample.requested_hz}hz",
              f"{sample.source.upper()} at {sample.configured_hz} Hz, by the host clock",
              abs(err) <= HOST_TOLERANCE,
              [f"{sample.host_ticks} ticks in {sample.host_seconds * 1000:.1f} ms of host time = "
               f"{sample.host_rate:.1f}/s, error {err:+.2%}; allowed ±{HOST_TOLERANCE:.0%}"])


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
        checks += [check_rate(s), check_host_rate(s)]
    return checks + [check_apic_calibration(obs), check_oneshot(obs), check_no_eoi(obs),
                     check_masked(obs), check_interrupt_gate_if(obs), check_trap_gate_if(obs)]
