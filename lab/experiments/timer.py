"""`lab timer`: tick rates against the configured rate, and the pitfalls, on the live kernel.

On TCG the VM runs under QEMU's icount (`ICOUNT_ARGS`): the vCPU's time is its instruction
count, 2**shift ns an instruction, and the TSC, the PIT and the APIC timer all run on that
virtual time. Without it they follow host time, while the vCPU runs only when the host lets
it: under load ticks arrive late and, once more than a period late, coalesce (the 8259's and
the APIC's IRR latch one edge each), and true rates read 20-45% low. Under icount a busy host
slows the run, not the guest's clocks. `sleep=off`: an idle vCPU's clock jumps to the next
timer deadline (QEMU: "a deterministic execution time, isolated from host latencies")
instead of following host time; with sleep=on an idle stretch lasts as long as the host
takes, so a one-shot falling due while the shell waits for its next line would be as late.

Each rate is one `measure <ms>` window: the kernel counts ticks while it spins for `ms` of
TSC time by its own calibration (the TSC against PIT channel 2), and reports the raw TSC
cycles that took. The checks judge the count twice:
- by the guest TSC: the cycles at the kernel's calibrated rate;
- by a reference the kernel did not calibrate: under icount QEMU's TSC counts virtual
  nanoseconds (its cpu_get_ticks() returns the icount clock), so the cycles at exactly
  `ICOUNT_TSC_HZ`; without icount (KVM), the host time between the `ticks` replies around
  the window, bracketed by the two serial round trips.
The IF checks stop at the timer handler the live IDT names and read RFLAGS there.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

from lab.errors import GuestError, UserError
from lab.host.profiles import Profile
from lab.labkernel.contract import APIC_HZ, PIT_HZ, TIMER_VECTOR, WINDOW_MS
from lab.labkernel.layouts import TICK_LOG, TICK_LOG_SYMBOL, tick_intervals
from lab.machine.session import Session
from lab.target import shell
from lab.target.cpu import parse_info_registers
from lab.x86.idt import read_gate

#: 2**7 = 128 ns of virtual time an instruction (7.8 MIPS): a 1000 Hz tick is ~7800
#: instructions, and the guest's 500 ms windows take less host time than without icount.
ICOUNT_SHIFT = 7
ICOUNT_ARGS = ("-icount", f"shift={ICOUNT_SHIFT},sleep=off")
#: Under icount, RDTSC reads QEMU's virtual clock in nanoseconds.
ICOUNT_TSC_HZ = 1_000_000_000


def uses_icount(profile: Profile) -> bool:
    return "-icount" in profile.args


def profile_for(profile: Profile) -> Profile:
    """The profile `lab timer` runs: a TCG profile gains `ICOUNT_ARGS` (unless it has its own
    -icount); KVM has no icount and is returned as it is. The saved ready state is keyed on
    the whole command line, so the icount VM has its own."""
    if not profile.is_tcg or uses_icount(profile):
        return profile
    return replace(profile, args=(*profile.args, *ICOUNT_ARGS))


class TickWindow:
    """What a window's rate checks read: `ticks` in `tsc_cycles` of a TSC the guest
    calibrated at `tsc_hz`."""
    ticks: int
    tsc_cycles: int
    tsc_hz: int

    @property
    def guest_rate(self) -> float:
        return self.ticks / (self.tsc_cycles / self.tsc_hz)

    def reference_rate(self, tsc_hz: int) -> float:
        """The window's rate by a TSC known to run at `tsc_hz`."""
        return self.ticks / (self.tsc_cycles / tsc_hz)


@dataclass
class RateSample(TickWindow):
    source: str  # "pit" | "apic"
    requested_hz: int
    configured_hz: int  # what the PIT divisor gives
    window_ms: int
    ticks: int  # in the guest's window
    tsc_cycles: int
    tsc_hz: int  # the guest's calibration
    reply_ticks: int  # between the two `ticks` replies around the window
    host_seconds_min: float  # host time from the first reply to sending the second command
    host_seconds_max: float  # host time from sending the first command to the second reply
    #: TSC cycles between consecutive ticks of the window (the kernel's LAB_TICK_LOG)
    intervals: list[int] = field(default_factory=list)

    @property
    def host_rates(self) -> tuple[float, float]:
        """The lowest and the highest rate the host-time bracket allows."""
        return self.reply_ticks / self.host_seconds_max, self.reply_ticks / self.host_seconds_min


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
    #: What the rates are judged against besides the guest TSC: "virtual" (icount: the TSC's
    #: cycles at exactly `tsc_reference_hz`) or "host" (perf_counter around the window).
    reference: str = "host"
    tsc_reference_hz: int | None = None
    rates: list[RateSample] = field(default_factory=list)
    oneshot: OneShotSample | None = None
    apic_hz: dict[str, int] = field(default_factory=dict)  # {"by_pit": .., "by_tsc": ..}
    counts: dict[str, int] = field(default_factory=dict)  # pitfall -> ticks in its window
    gates: list[GateSample] = field(default_factory=list)
    #: pitfall -> TSC cycles between the ticks of its window (LAB_TICK_LOG)
    intervals: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        for r, raw in zip(self.rates, d["rates"]):
            raw["guest_rate"], raw["host_rates"] = r.guest_rate, r.host_rates
            if self.tsc_reference_hz:
                raw["reference_rate"] = r.reference_rate(self.tsc_reference_hz)
            raw["intervals_us"] = [c * 1e6 / r.tsc_hz for c in r.intervals]
        tsc_hz = self.rates[0].tsc_hz if self.rates else None
        d["intervals_us"] = {p: [c * 1e6 / tsc_hz for c in cs] for p, cs in self.intervals.items()} if tsc_hz else {}
        return d


class TimerLab:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.serial = session.serial

    def cmd(self, line: str) -> str:
        return self.serial.command(line, timeout=15)

    def _ticks(self) -> int:
        return int(shell.fields(self.cmd("ticks"), "ticks")["count"])

    def tick_intervals(self) -> list[int]:
        """The TSC cycles between the ticks of the last `measure` window, read from the
        kernel's LAB_TICK_LOG with the CPU stopped (an idle shell: it waits for a line)."""
        gdb = self.s.gdb
        sym = self.s.symbols.lookup(TICK_LOG_SYMBOL)
        if sym is None:
            return []  # an older lab kernel: counts only
        gdb.interrupt()
        try:
            raw = gdb.read_memory(sym.address, TICK_LOG.size)
        finally:
            gdb.cont()
        return tick_intervals(raw)[1]

    def _ticks_timed(self) -> tuple[int, float, float]:
        """A `ticks` reply's count, with the host time before sending it and after its reply."""
        sent = time.perf_counter()
        count = self._ticks()
        return count, sent, time.perf_counter()

    def rate(self, hz: int, window_ms: int = 500, source: str = "pit") -> RateSample:
        self.cmd("timer pitfall none")
        start = f"timer pit {hz}" if source == "pit" else f"timer apic periodic {hz}"
        configured = int(shell.fields(self.cmd(start), start.rsplit(" ", 1)[0])["rate"])
        before, sent0, got0 = self._ticks_timed()
        m = shell.fields(self.cmd(f"measure {window_ms}"), "measure")
        after, sent1, got1 = self._ticks_timed()
        self.cmd("timer stop")
        return RateSample(source, hz, configured, window_ms, int(m["ticks"]), int(m["tsc_cycles"]),
                          int(m["tsc_hz"]), after - before, sent1 - got0, got1 - sent0,
                          self.tick_intervals())

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

    def count(self, pitfall: str, hz: int = 100, window_ms: int = 300) -> tuple[int, list[int]]:
        """Ticks from the timer's start to the end of a `window_ms` window (the first tick
        may come before the window opens), and the TSC cycles between the window's ticks."""
        self.cmd(f"timer pitfall {pitfall}")
        before = self._ticks()
        self.cmd(f"timer pit {hz}")
        self.cmd(f"measure {window_ms}")
        ticks = self._ticks() - before
        self.cmd("timer stop")
        self.cmd("timer pitfall none")
        return ticks, self.tick_intervals()

    def _mask_irq0(self) -> None:
        """Masks IRQ0 in the master 8259 (IMR, port 0x21) from QEMU's monitor, the CPU stopped.
        On a trap gate IF stays 1 through the timer handler, so a tick that falls due before
        the handler's EOI is taken at the EOI, inside the handler, which holds the kernel's PIC
        lock: the nested handler spins on that lock forever. Under icount sleep=off that
        happened every time the next shell line arrived (QEMU advances an idle guest's clock
        to the next deadline as its main loop takes the input); without icount, in 3 runs of
        20 on a busy host. `timer stop`, which the lab sends next, masks IRQ0 itself."""
        imr = int(self.s.qemu.hmp("i /b 0x21").rsplit("=", 1)[1], 16)
        self.s.qemu.hmp(f"o /b 0x21 {imr | 1:#x}")

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
        if pitfall == "trap-gate":
            self._mask_irq0()
        gdb.cont()
        self.serial.wait_prompt(10)
        self.cmd("timer stop")
        self.cmd("timer pitfall none")
        return GateSample(pitfall, gate.type_name, rflags)


def _span(r: range) -> str:
    return f"{r.start}-{r.stop - 1}"


def validate(rates, window_ms: int, *, apic_only: bool = False) -> None:
    """`lab timer`'s rates and window against what the kernel accepts, before any VM starts
    (one line): each rate runs the PIT and the APIC timer, or with --cpu only APs' APIC timers."""
    bounds, which = (APIC_HZ, "an AP's APIC timer") if apic_only else (PIT_HZ, "the PIT")
    for hz in rates:
        if hz not in bounds:
            raise UserError(f"--rate {hz}: the kernel runs {which} at {_span(bounds)} Hz")
    if window_ms not in WINDOW_MS:
        raise UserError(f"--window {window_ms}: the kernel measures {_span(WINDOW_MS)} ms")


def observe(session: Session, rates=(100, 250), window_ms: int = 500,
            oneshot_us: int = 20_000) -> TimerObservation:
    session.gdb.cont()
    session.serial.wait_prompt(10)
    lab = TimerLab(session)
    icount = uses_icount(session.profile)
    obs = TimerObservation(session.profile.name, "virtual" if icount else "host",
                           ICOUNT_TSC_HZ if icount else None)
    for source in ("pit", "apic"):
        for hz in rates:
            obs.rates.append(lab.rate(hz, window_ms, source))
    obs.apic_hz = lab.apic_calibration()
    obs.oneshot = lab.oneshot(oneshot_us)
    for pitfall in ("no-eoi", "masked"):
        obs.counts[pitfall], obs.intervals[pitfall] = lab.count(pitfall)
    for pitfall in ("none", "trap-gate"):
        obs.gates.append(lab.gate(pitfall))
    return obs
