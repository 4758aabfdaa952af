"""`lab timer --cpus N --cpu K ...`: each named application processor's own local APIC timer,
at its own rate, all at once (kernel/src/smp/ipi.rs `timers <ms> <cpu>:<hz> ...`).

Each window runs every named CPU's timer at the same time; CPU j of the list gets the rate
`rates[(i + j) % len(rates)]` in window i, so with two CPUs and two rates each CPU is measured
at each rate, and in every window the CPUs run *different* rates: a kernel whose APs shared one
timer (or one CPU's programming reached another's) shows it. An AP counts its timer interrupts
on `vector::IPI` (its per-CPU `ipis` count in the shell's `cpus` lines), so the counts before
and after each window tell whose interrupts moved: a CPU's own count moves by its ticks plus
the one IPI that woke it, every other CPU's by none.

Under icount (TCG: lab/experiments/timer.py) the AP's TSC reads QEMU's virtual clock, so each
window is judged by the guest's TSC and by virtual time; on KVM by the guest's TSC only (the
AP's ticks are counted inside its window, which no host-time bracket covers)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from lab.errors import GuestError, UserError
from lab.experiments.timer import TickWindow
from lab.machine.session import Session
from lab.target.shell import cpus_reply, numbers

#: The kernel's bound on a `timers` window (kernel/src/smp/ipi.rs cmd_timers).
MAX_WINDOW_MS = 10_000


@dataclass
class ApRate(TickWindow):
    """One AP's timer in one window, shaped like `timer.RateSample` for the rate checks."""
    cpu: int
    requested_hz: int
    configured_hz: int  # the APIC's rate for the initial count the kernel chose
    window_ms: int
    ticks: int
    tsc_cycles: int
    tsc_hz: int

    @property
    def source(self) -> str:
        return f"cpu{self.cpu}-apic"

    @property
    def label(self) -> str:
        return f"CPU {self.cpu}'s APIC timer"



@dataclass
class ApWindow:
    """One `timers` run: each CPU's timer, and every online CPU's interrupt count around it."""
    rates: list[ApRate]
    ipis_before: dict[int, int]
    ipis_after: dict[int, int]
    host_seconds: float

    def to_json(self) -> dict:
        d = asdict(self)
        for r, raw in zip(self.rates, d["rates"]):
            raw["guest_rate"] = r.guest_rate
        return d


@dataclass
class ApTimerObservation:
    profile: str
    cpus: list[int]
    online: int
    tsc_reference_hz: int | None
    windows: list[ApWindow] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        d["windows"] = [w.to_json() for w in self.windows]
        return d


def _ipis(session: Session) -> dict[int, int]:
    return {k: r["ipis"] for k, r in cpus_reply(session.serial.command("cpus", timeout=15)).items()}


def plan(cpus: list[int], rates: tuple[int, ...]) -> list[dict[int, int]]:
    """The windows: CPU j of `cpus` gets `rates[(i + j) % len(rates)]` in window i."""
    return [{k: rates[(i + j) % len(rates)] for j, k in enumerate(cpus)} for i in range(len(rates))]


def validate(cpus, window_ms: int, machine_cpus: int | None = None) -> None:
    """The run's arguments, before any VM starts (UserError: one line)."""
    if not cpus:
        raise UserError("--cpu: name at least one application processor")
    if any(k <= 0 for k in cpus):
        raise UserError(f"--cpu {min(cpus)}: the boot CPU's timers are what `lab timer` without --cpu measures; "
                        "--cpu names an application processor, 1 or more")
    if machine_cpus is not None and max(cpus) >= machine_cpus:
        raise UserError(f"the machine has no CPU {max(cpus)}: it has {machine_cpus} "
                        f"CPU{'s' if machine_cpus > 1 else ''} (--cpus N gives it N)")
    if window_ms > MAX_WINDOW_MS:
        raise UserError(f"--window {window_ms}: the kernel runs an AP's timer for at most {MAX_WINDOW_MS} ms")


def observe(session: Session, cpus: list[int], rates=(100, 250), window_ms: int = 500,
            tsc_reference_hz: int | None = None) -> ApTimerObservation:
    validate(cpus, window_ms)
    session.gdb.cont()
    session.serial.wait_prompt(10)
    before = _ipis(session)
    missing = [k for k in cpus if k not in before]
    if missing:
        raise UserError(f"the machine has no CPU {missing[0]} (CPUs online: {len(before)}; --cpus N starts N)")
    obs = ApTimerObservation(session.profile.name, list(cpus), len(before), tsc_reference_hz)
    for window in plan(list(cpus), tuple(rates)):
        line = f"timers {window_ms} " + " ".join(f"{k}:{hz}" for k, hz in window.items())
        t0 = time.perf_counter()
        out = session.serial.command(line, timeout=window_ms / 1000 + 15)
        seconds = time.perf_counter() - t0
        rows = {r["cpu"]: r for r in (numbers(x, "timer") for x in out.splitlines() if x.startswith("timer cpu="))}
        lost = sorted(set(window) - set(rows))
        if lost:
            raise GuestError(f"`{line}`: no timer line from CPU {lost[0]}: {out.strip()[-300:]!r}")
        after = _ipis(session)
        obs.windows.append(ApWindow(
            [ApRate(k, hz, rows[k]["rate"], window_ms, rows[k]["ticks"], rows[k]["tsc_cycles"], rows[k]["tsc_hz"])
             for k, hz in window.items()], before, after, seconds))
        before = after
    return obs
