"""`lab probe`: the fatal paths, each in a fresh VM.

For a probe the lab boots a new guest (-no-reboot; on TCG also `-d int,cpu_reset`), queues
the probe's shell command while the CPU is stopped at `lab_ready`, then:

- triple-fault probes: waits for QMP `SHUTDOWN` (reason `guest-reset`; -no-reboot turns the
  reset into an exit);
- the double fault and the control: stops at the #DF handler the live IDT names, reads the
  frame the CPU pushed on the IST stack, then reads the kernel's report (and, for the
  control, the restarted shell's answer to `info`).

On TCG the exception chain and the CPU state at the last delivered exception come from QEMU's
log; on KVM the verdict comes from QMP and serial alone and the chain is "unavailable".
Every wait is bounded; a probe that neither resets nor reports is "hung".
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.target import qemu_log
from lab.errors import LabError, LabTimeout, TimeoutTooShort
from lab.machine.process import patient
from lab.machine.session import Session
from lab.host.profiles import Profile
from lab.scenarios.probes import DOUBLE_FAULT_HALT, SURVIVES, TRIPLE_FAULT, Probe
from lab.target.cpu import parse_info_registers
from lab.x86.idt import read_gate
from lab.x86.frames import ERROR_FRAME, qwords
from lab.x86.tss import TSS
from lab.x86.vectors import DF, mnemonic

HUNG = "hung"
BOOT_STACK = "BOOT_STACK"
GUARD_BYTES = 4096
RECURSE = "lab_recurse"


@dataclass
class ProbeObservation:
    probe: str
    profile: str
    outcome: str = HUNG  # TRIPLE_FAULT | DOUBLE_FAULT_HALT | SURVIVES | HUNG
    shutdown: dict | None = None  # the QMP SHUTDOWN event's data
    chain: list[str] | None = None  # None: unavailable (not TCG)
    last_state: list[str] = field(default_factory=list)
    df_frame: dict | None = None  # at the #DF handler: rsp, stack (error code, RIP, CS, RFLAGS, RSP, SS)
    ist_top: int | None = None
    guard: tuple[int, int] | None = None  # the boot stack's guard page [start, end)
    recurse: tuple[int, int] | None = None  # lab_recurse's [start, end)
    report: str | None = None  # the kernel's DOUBLE FAULT line
    after: str | None = None  # the control: the restarted shell's `info` line
    evidence: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def run_probe(kernel: Path, profile: Profile, probe: Probe, *, log_dir: Path | None = None,
              timeout: float = 10.0, restore: bool = True,
              ready_timeout: float | None = None) -> ProbeObservation:
    t0 = time.monotonic()
    obs = ProbeObservation(probe.name, profile.name)
    debug_log = "int,cpu_reset" if profile.is_tcg else None
    session = Session(kernel, profile, log_dir=log_dir, debug_log=debug_log,
                      ready_timeout=ready_timeout or max(timeout, 10.0), restore=restore)
    with session as s:
        s.boot_to_ready()
        sym = s.symbols.lookup(BOOT_STACK)
        if sym is not None:
            obs.guard = (sym.address, sym.address + GUARD_BYTES)
        rec = s.symbols.lookup(RECURSE)
        if rec is not None:
            obs.recurse = (rec.address, rec.end)
        log_start = _log_size(s)
        s.qemu.drain_events()
        bp = None
        if probe.expected != TRIPLE_FAULT:
            cpu = parse_info_registers(s.gdb.monitor("info registers"))
            gate = read_gate(s.gdb.read_memory, cpu.idtr.base, DF)
            if gate.ist:
                obs.ist_top = TSS.read_field(s.gdb.read_memory, cpu.tr.base, f"ist{gate.ist}")
            bp = s.gdb.hbreak(f"*{gate.offset:#x}")
        s.serial.send_line(probe.command)
        s.gdb.cont()
        try:
            if bp is None:
                _wait_reset(s, obs, timeout)
            else:
                _double_fault(s, obs, bp, probe, timeout)
        except TimeoutTooShort:
            raise  # the lab's timeout (exit 3), not the guest's
        except LabTimeout as exc:
            obs.outcome = HUNG
            obs.evidence.append(f"{exc.message}; serial tail:\n{s.serial.tail(800).strip()}")
        if s.qemu.proc.poll() is None and obs.outcome == TRIPLE_FAULT:
            s.qemu.wait_exit(timeout)  # QEMU flushes its log as it exits
        if profile.is_tcg:  # read before the session removes its run directory
            text = _log_text(s, log_start)
            obs.chain = qemu_log.chain(qemu_log.parse(text), mnemonic)
            obs.last_state = qemu_log.state_at_last_event(text)
    obs.seconds = time.monotonic() - t0
    return obs


def _log_size(s: Session) -> int:
    path = s.run.log("qemu.log")
    return path.stat().st_size if path.exists() else 0


def _log_text(s: Session, start: int) -> str:
    path = s.run.log("qemu.log") if s.run else None
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(start)
        return f.read().decode(errors="replace")


INTERNAL_ERROR = "accelerator internal error"


STOP_THEN_SHUTDOWN = 0.5  # a reset's STOP is followed by SHUTDOWN at once


def reset_or_stop(s: Session, timeout: float) -> tuple[dict | None, str | None]:
    """How the machine ended: (QMP SHUTDOWN's data, None) when it reset (a reset's STOP is
    followed by SHUTDOWN at once), or (None, QEMU's run state) when it stopped without one
    (e.g. "internal-error": the accelerator could not go on). LabTimeout when neither came."""
    event = patient(lambda t: s.qemu.wait_event(("SHUTDOWN", "STOP"), t), timeout, USUAL, "a reset or stop")
    if event["event"] == "STOP":
        try:
            event = s.qemu.wait_event("SHUTDOWN", STOP_THEN_SHUTDOWN)
        except LabTimeout:
            # Stopped without a shutdown. Ask why only now: a QMP command sent while QEMU
            # shuts down deadlocks QEMU 7.2's monitor cleanup.
            return None, s.qemu.qmp_cmd("query-status")["status"]
    return event.get("data", {}), None


def _wait_reset(s: Session, obs: ProbeObservation, timeout: float) -> None:
    shutdown, status = reset_or_stop(s, timeout)
    if shutdown is None:
        obs.outcome = INTERNAL_ERROR if status == "internal-error" else f"stopped ({status})"
        obs.evidence.append(f"QMP STOP, status {status} (see qemu.stderr.log)")
        return
    obs.shutdown = shutdown
    obs.outcome = TRIPLE_FAULT if obs.shutdown.get("reason") == "guest-reset" else \
        f"shutdown ({obs.shutdown.get('reason')})"
    obs.evidence.append(f"QMP SHUTDOWN {obs.shutdown}")


#: The bound the lab itself gives each wait (`--timeout`'s default): a shorter `--timeout`
#: that expires on what then comes within this is the lab's timeout, not a hung guest.
USUAL = 10.0


def _expect(s: Session, pattern: bytes, timeout: float, what: str):
    return patient(lambda t: s.serial.expect(pattern, t, what), timeout, USUAL, what)


def _double_fault(s: Session, obs: ProbeObservation, bp: int, probe: Probe, timeout: float) -> None:
    try:
        patient(lambda t: s.gdb.wait_stopped(t, "the #DF handler"), timeout, USUAL, "the #DF handler")
    except TimeoutTooShort:
        raise
    except LabError:
        # No #DF handler: did the guest reset instead?
        _wait_reset(s, obs, 1.0)
        return
    regs = s.gdb.registers()
    raw = s.gdb.read_memory(regs["rsp"], ERROR_FRAME.size)
    obs.df_frame = {"rsp": regs["rsp"], "stack": qwords(raw)}
    s.gdb.delete_breakpoint(bp)
    s.gdb.cont()
    m = _expect(s, rb"DOUBLE FAULT [^\r\n]*\r?\n", timeout, "the kernel's double-fault report")
    obs.report = m.group(0).decode().strip()
    if probe.expected == SURVIVES:
        _expect(s, rb"shell restarted", timeout, "the shell to restart")
        patient(s.serial.wait_prompt, timeout, USUAL, "the shell's prompt")
        obs.after = patient(lambda t: s.serial.command("info", t), timeout, USUAL, "the shell's answer to info")
        obs.outcome = SURVIVES if obs.after.startswith("info version=") else HUNG
    else:
        _expect(s, rb"HALTED after double fault", timeout, "the kernel to halt")
        obs.outcome = DOUBLE_FAULT_HALT
    obs.evidence.append(obs.report)
