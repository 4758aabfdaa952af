"""`lab syscall` / `lab ring3`: the first instructions after `syscall`, an interrupt taken in
ring 3, and exceptions raised by user programs, each stopped at and read with gdb.

The user programs (kernel/src/user.rs) are copied to `LAB_USER_BASE` in their own address
space; a label `lab_user_<prog>_<x>` in the kernel image is at LAB_USER_BASE + (label -
lab_user_<prog>) in the user's address space, where the lab puts its hardware breakpoints.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

import re

from lab.errors import GuestError, LabTimeout, UserError
from lab.machine.process import Deadline
from lab.machine.session import Session
from lab.labkernel.layouts import PERCPU
from lab.labkernel.layouts import TASK
from lab.target import shell
from lab.target.cpu import parse_info_registers, read_tss_rsp0
from lab.labkernel.contract import TIMER_VECTOR
from lab.x86.frames import GPRS, INTERRUPT_FRAME, QWORD, TRAP_FRAME, qwords
from lab.x86.idt import read_gate

STOP_TIMEOUT = 10.0
SLICE = 0.05  # how long one wait for gdb lasts before the serial console is looked at
SYSCALL_STEPS = ("lab_syscall_entry", "lab_syscall_after_swapgs", "lab_syscall_after_stack",
                 "syscall_dispatch", "lab_syscall_sysret")
SYSCALL_LEN = 2  # 0F 05
USER_FAULT = "lab_user_fault"
ARGS = ("rax", "rdi", "rsi", "rdx")  # the program sets these before its syscall
CLOBBERED = ("rcx", "r11")  # SYSCALL overwrites them (return RIP, RFLAGS)

#: User fault programs: (program, fault label, vector the manual says, error code, CR2)
USER_FAULTS = (
    ("hlt", "lab_user_hlt_fault", 13, 0, None),
    ("cli", "lab_user_cli_fault", 13, 0, None),
    ("kread", "lab_user_kread_fault", 14, 0x5, 0x100000),
    ("ac", "lab_user_ac_fault", 17, 0, None),
)


class ProgramEnded(GuestError):
    """A user program ended (its `user fault` or `user exit` line) before the stop awaited."""


@dataclass
class SyscallObservation:
    user: dict  # registers at the user's syscall instruction (after planting)
    sentinels: dict
    steps: dict = field(default_factory=dict)  # label -> registers at that stop
    percpu: dict = field(default_factory=dict)  # PERCPU decoded after the stack switch
    percpu_address: int = 0
    trap_frame: dict = field(default_factory=dict)
    fmask: int = 0
    kstack_top: int = 0
    result: dict = field(default_factory=dict)


@dataclass
class Ring3Interrupt:
    entry_rsp: int
    stack: list[int]
    tss_rsp0: int
    user_low: int
    user_high: int


@dataclass
class UserFault:
    program: str
    expected_vector: int
    expected_error: int
    expected_cr2: int | None
    fault_va: int
    entry: dict | None  # rsp, stack, cr2 at the expected handler, if it was entered
    tss_rsp0: int
    report: dict  # the kernel's `user fault` line


@dataclass
class Ring3Observation:
    accel: str  # tcg | kvm: which recorded deviations apply
    syscall: SyscallObservation | None = None
    interrupt: Ring3Interrupt | None = None
    faults: list[UserFault] = field(default_factory=list)
    bench: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    qemu: str = ""  # the QEMU's version: which recorded deviations apply
    unobserved: dict = field(default_factory=dict)  # part -> why it could not be observed

    def to_json(self) -> dict:
        return asdict(self)


class Ring3Lab:
    def __init__(self, s: Session) -> None:
        self.s, self.gdb, self.sym = s, s.gdb, s.symbols
        for name in ("LAB_USER_BASE", "LAB_FMASK", "PERCPU", USER_FAULT, *SYSCALL_STEPS):
            if self.sym.lookup(name) is None:
                raise UserError(f"{s.kernel}: no {name} symbol; this needs the lab kernel")
        self.user_base = int.from_bytes(self.sym.read("LAB_USER_BASE"), "little")
        self.fmask = int.from_bytes(self.sym.read("LAB_FMASK"), "little")

    def user_va(self, program: str, label: str) -> int:
        return self.user_base + self.sym.lookup(label).address - self.sym.lookup(f"lab_user_{program}").address

    def _regs(self) -> dict[str, int]:
        return self.gdb.registers()

    def _stop(self, what: str, program: str | None = None) -> dict:
        """The next stop, which must be a breakpoint. With `program`: waits in slices for the
        stop or the kernel's line saying the program ended, whichever comes first: a program
        that ends before the breakpoint raises ProgramEnded at once, not a timeout."""
        if program is None:
            stop = self.gdb.wait_stopped(STOP_TIMEOUT, what)
        else:
            deadline = Deadline(STOP_TIMEOUT, what)
            ended = re.compile(rf"user (?:fault|exit) name={re.escape(program)}\b[^\r\n]*")
            while True:
                try:
                    stop = self.gdb.wait_stopped(min(SLICE, max(deadline.remaining(), 0.001)), what)
                    break
                except LabTimeout:
                    m = ended.search(self.s.serial.tail())
                    if m:
                        self.gdb.interrupt()
                        raise ProgramEnded(f"{program} ended before {what}: the kernel reports "
                                           f"'{m.group(0)}'", logs=self.s.logs) from None
                    if deadline.expired():
                        raise
        if stop.get("reason") != "breakpoint-hit":
            raise GuestError(f"stopped ({stop.get('reason')}) while waiting for {what}", logs=self.s.logs)
        return stop

    def _percpu(self) -> tuple[int, dict]:
        addr = self.sym.lookup("PERCPU").address
        return addr, PERCPU.decode(self.gdb.read_memory(addr, PERCPU.size))

    def _tss_rsp0(self) -> int:
        return read_tss_rsp0(self.gdb.read_memory, self.s.qemu.hmp)

    def _finish(self, pattern: bytes, what: str) -> dict:
        """Continues to the kernel's result line and the next prompt, then stops the CPU."""
        self.gdb.cont()
        m = self.s.serial.expect(pattern + rb"[^\r\n]*\r?\n", STOP_TIMEOUT, what)
        self.s.serial.wait_prompt(STOP_TIMEOUT)
        self.gdb.interrupt()
        return shell.numbers(m.group(0).decode())

    def syscall(self, seed: int | None = None) -> SyscallObservation:
        """The CPU is stopped with the shell idle. Runs `hello` and follows its first syscall."""
        gdb = self.gdb
        user_bp = gdb.hbreak(f"*{self.user_va('hello', 'lab_user_hello_syscall'):#x}")
        self.s.serial.send_line("user run hello")
        gdb.cont()
        self._stop("the user program's syscall instruction", program="hello")
        rng = random.Random(seed)
        sentinels = {r: 0x5E00_0000_0000_0000 | (i << 40) | rng.getrandbits(32)
                     for i, r in enumerate(GPRS) if r not in ARGS and r != "rbp"}
        for reg, value in sentinels.items():
            gdb.mi(f"-data-evaluate-expression ${reg}={value:#x}")
        user = self._regs()
        gdb.delete_breakpoint(user_bp)
        obs = SyscallObservation(user=user, sentinels=sentinels, fmask=self.fmask)
        # One breakpoint per step, set and deleted in turn (the steps run in this order):
        # never more than the four KVM gives gdb.
        for name in SYSCALL_STEPS:
            bp = gdb.hbreak(f"*{self.sym.lookup(name).address:#x}")
            gdb.cont()
            stop = self._stop(f"{name}, the next step of the syscall path")
            gdb.delete_breakpoint(bp)
            if int(stop["bkptno"]) != bp:
                raise GuestError(f"stopped at breakpoint {stop['bkptno']}, not at {name}", logs=self.s.logs)
            regs = self._regs()
            obs.steps[name] = regs
            if name == "lab_syscall_after_stack":
                obs.percpu_address, obs.percpu = self._percpu()
            if name == "syscall_dispatch":
                obs.trap_frame = TRAP_FRAME.decode(gdb.read_memory(regs["rdi"], TRAP_FRAME.size))
                cur = obs.percpu.get("current") or self._percpu()[1]["current"]
                obs.kstack_top = TASK.read_field(gdb.read_memory, cur, "kstack_top")
        obs.result = self._finish(rb"user exit name=hello", "hello's exit")
        return obs

    def interrupt_in_ring3(self, hz: int = 100, max_stops: int = 200) -> Ring3Interrupt:
        """A timer tick that arrives while `spin` runs at CPL 3."""
        gdb = self.gdb
        idtr = parse_info_registers(self.s.qemu.hmp("info registers")).idtr
        gate = read_gate(gdb.read_memory, idtr.base, TIMER_VECTOR)
        self.s.serial.send_line(f"timer pit {hz}")
        self.s.serial.send_line("user run spin")
        bp = gdb.hbreak(f"*{gate.offset:#x}")
        found = None
        try:
            for _ in range(max_stops):
                gdb.cont()
                self._stop("a timer tick")
                regs = self._regs()
                stack = qwords(gdb.read_memory(regs["rsp"], INTERRUPT_FRAME.size))
                if stack[1] & 3 == 3:
                    found = Ring3Interrupt(regs["rsp"], stack, self._tss_rsp0(),
                                           self.user_base, self.user_base + 3 * 4096)
                    break
        finally:
            gdb.delete_breakpoint(bp)
        if found is None:
            raise GuestError(f"no timer tick interrupted ring 3 in {max_stops} ticks", logs=self.s.logs)
        self._finish(rb"user (?:exit|fault) name=spin", "spin's end")
        self.s.serial.send_line("timer stop")
        gdb.cont()
        self.s.serial.expect(rb"timer stopped", STOP_TIMEOUT, "the timer to stop")
        self.s.serial.wait_prompt(STOP_TIMEOUT)
        gdb.interrupt()
        return found

    def user_fault(self, program, label, vector, error, cr2) -> UserFault:
        """Runs a faulting program with breakpoints at the handler the IDT names for the
        expected vector and at `lab_user_fault` (every ring-3 fault ends there): whichever
        stops first says whether the expected vector arrived."""
        gdb = self.gdb
        idtr = parse_info_registers(self.s.qemu.hmp("info registers")).idtr
        gate = read_gate(gdb.read_memory, idtr.base, vector)
        entry_bp = gdb.hbreak(f"*{gate.offset:#x}")
        fault_bp = gdb.hbreak(f"*{self.sym.lookup(USER_FAULT).address:#x}")
        self.s.serial.send_line(f"user run {program}")
        gdb.cont()
        entry, rsp0 = None, 0
        try:
            stop = self._stop(f"{program}'s fault")
            if int(stop["bkptno"]) == entry_bp:
                regs = self._regs()
                raw = gdb.read_memory(regs["rsp"], 6 * QWORD)
                entry = {"rsp": regs["rsp"], "cr2": regs["cr2"],
                         "stack": qwords(raw)}
                rsp0 = self._tss_rsp0()
        finally:
            gdb.delete_breakpoint(entry_bp)
            gdb.delete_breakpoint(fault_bp)
        report = self._finish(rb"user fault name=" + program.encode(), f"{program}'s fault report")
        return UserFault(program, vector, error, cr2, self.user_va(program, label), entry, rsp0, report)

    def bench(self) -> dict:
        self.gdb.cont()
        self.s.serial.send_line("user run bench")
        m = self.s.serial.expect(rb"user (?:exit|fault) name=bench[^\r\n]*\r?\n", 60, "the syscall benchmark")
        self.s.serial.wait_prompt(STOP_TIMEOUT)
        self.gdb.interrupt()
        line = m.group(0).decode().strip()
        if line.startswith("user fault"):
            return {"fault": line}
        d = shell.numbers(line)
        d["per_s"] = d["syscalls"] / (d["tsc_cycles"] / d["tsc_hz"])
        return d


def observe(session: Session, seed: int | None = None) -> Ring3Observation:
    import time

    obs = Ring3Observation(session.profile.accel, qemu=session.profile.qemu_build.version_str)
    lab = Ring3Lab(session)
    t0 = time.monotonic()
    try:
        obs.syscall = lab.syscall(seed)
    except ProgramEnded as exc:  # e.g. a host's KVM that leaves SYSCALL at CPL 3
        obs.unobserved["syscall"] = exc.message
        session.serial.wait_prompt(STOP_TIMEOUT)
    obs.seconds["syscall_sequence"] = time.monotonic() - t0
    obs.interrupt = lab.interrupt_in_ring3()
    for program, label, vector, error, cr2 in USER_FAULTS:
        obs.faults.append(lab.user_fault(program, label, vector, error, cr2))
    obs.bench = lab.bench()
    return obs
