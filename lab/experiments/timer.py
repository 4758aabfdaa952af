"""`lab timer`: tick rates against the configured rate, and the pitfalls, on the live kernel.

Rates are measured two ways in one exchange:
- guest clock: the kernel's `measure <ms>` counts ticks over a TSC-timed window (the TSC is
  calibrated against PIT channel 2);
- host clock: the tick counts in the `ticks` lines just before and after that window, divided
  by the host time between those two replies (perf_counter).
The IF checks stop at the timer handler the live IDT names and read RFLAGS there.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from lab.errors import GuestError
from lab.labkernel.contract import TIMER_VECTOR
from lab.machine.session import Session
from lab.target import shell
from lab.target.cpu import parse_info_registers
from lab.x86.idt import read_gate

@dataclass
class RateSample:
    source: str  # "pit" | "apic"
    requested_hz: int
    configured_hz: int  # what the PIT divisor gives
    window_ms: int
    ticks: int  # in the guest's window
    tsc_cycles: int
    tsc_hz: int
    host_ticks: int  # between the two `ticks` replies
    host_seconds: float

    @property
    def guest_rate(self) -> float:
        return self.ticks / (self.tsc_cycles / self.tsc_hz)

    @property
    def host_rate(self) -> float:
        return self.host_ticks / self.host_seconds


@dataclass
class OneShotSample:
    requested_us: int
    ticks: int  # from arming to the end of a window three times as long
    delay_us: int  # TSC from arming to the interrupt


@dataclass
class GateSample:
    pitfall: str
    gate_type: str
    rflags: int


@dataclass
class TimerObservation:
    profile: str
    rates: list[RateSample] = field(default_factory=list)
    oneshot: OneShotSample | None = None
    apic_hz: dict[str, int] = field(default_factory=dict)  # {"by_pit": .., "by_tsc": ..}
    counts: dict[str, int] = field(default_factory=dict)  # pitfall -> ticks in its window
    gates: list[GateSample] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        for r, raw in zip(self.rates, d["rates"]):
            raw["guest_rate"], raw["host_rate"] = r.guest_rate, r.host_rate
        return d


class TimerLab:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.serial = session.serial

    def cmd(self, line: str) -> str:
        return self.serial.command(line, timeout=15)

    def _ticks(self) -> int:
        return int(shell.fields(self.cmd("ticks"), "ticks")["count"])

    def rate(self, hz: int, window_ms: int = 500, source: str = "pit") -> RateSample:
        self.cmd("timer pitfall none")
        start = f"timer pit {hz}" if source == "pit" else f"timer apic periodic {hz}"
        configured = int(shell.fields(self.cmd(start), start.rsplit(" ", 1)[0])["rate"])
        before = self._ticks()
        t0 = time.perf_counter()
        m = shell.fields(self.cmd(f"measure {window_ms}"), "measure")
        after = self._ticks()
        t1 = time.perf_counter()
        self.cmd("timer stop")
        return RateSample(source, hz, configured, window_ms, int(m["ticks"]), int(m["tsc_cycles"]),
                          int(m["tsc_hz"]), after - before, t1 - t0)

    def apic_calibration(self) -> dict[str, int]:
        f = shell.fields(self.cmd("timer apic calibrate"), "timer apic calibrate")
        return {"by_pit": int(f["hz_by_pit"]), "by_tsc": int(f["hz_by_tsc"])}

    def oneshot(self, us: int) -> OneShotSample:
        self.cmd("timer pitfall none")
        before = self._ticks()
        self.cmd(f"timer apic oneshot {us}")
        self.cmd(f"measure {max(3 * us // 1000, 1)}")
        after = shell.fields(self.cmd("ticks"), "ticks")
        self.cmd("timer stop")
        return OneShotSample(us, int(after["count"]) - before, int(after["oneshot_delay_us"]))

    def count(self, pitfall: str, hz: int = 100, window_ms: int = 300) -> int:
        """Ticks from the timer's start to the end of a `window_ms` window (the first tick
        may come before the window opens)."""
        self.cmd(f"timer pitfall {pitfall}")
        before = self._ticks()
        self.cmd(f"timer pit {hz}")
        self.cmd(f"measure {window_ms}")
        ticks = self._ticks() - before
        self.cmd("timer stop")
        self.cmd("timer pitfall none")
        return ticks

    def gate(self, pitfall: str, hz: int = 100) -> GateSample:
        """Stops at the timer handler's first instruction and reads RFLAGS there."""
        gdb = self.s.gdb
        self.cmd(f"timer pitfall {pitfall}")
        gdb.interrupt()
        self.serial.send_line(f"timer pit {hz}")
        gdb.cont()
        # The kernel's reply, not the echo of the command (which would match too early).
        self.serial.expect(rb"timer pit requested=\d+ rate=[^\r\n]*\r?\n", 10, "the timer to start")
        gdb.interrupt()
        idtr = parse_info_registers(self.s.qemu.hmp("info registers")).idtr
        gate = read_gate(gdb.read_memory, idtr.base, TIMER_VECTOR)
        bp = gdb.hbreak(f"*{gate.offset:#x}")
        gdb.cont()
        gdb.wait_stopped(10, "the timer handler")
        rflags = gdb.registers()["eflags"]
        gdb.delete_breakpoint(bp)
        gdb.cont()
        self.serial.wait_prompt(10)
        self.cmd("timer stop")
        self.cmd("timer pitfall none")
        return GateSample(pitfall, gate.type_name, rflags)


def observe(session: Session, rates=(100, 250), window_ms: int = 500,
            oneshot_us: int = 20_000) -> TimerObservation:
    session.gdb.cont()
    session.serial.wait_prompt(10)
    lab = TimerLab(session)
    obs = TimerObservation(session.profile.name)
    for source in ("pit", "apic"):
        for hz in rates:
            obs.rates.append(lab.rate(hz, window_ms, source))
    obs.apic_hz = lab.apic_calibration()
    obs.oneshot = lab.oneshot(oneshot_us)
    for pitfall in ("no-eoi", "masked"):
        obs.counts[pitfall] = lab.count(pitfall)
    for pitfall in ("none", "trap-gate"):
        obs.gates.append(lab.gate(pitfall))
    return obs
