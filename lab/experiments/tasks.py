"""`lab tasks`: the kernel's tasks read from its memory, each sleeping task's saved switch
frame decoded, and one context switch traced instruction by instruction.

Layouts: `TASK`, `SWITCH_FRAME` and `PERCPU` are the kernel's (kernel/src/task.rs, percpu.rs),
declared once in lab/labkernel/layouts.py and checked against the DWARF the compiler emitted
for those structs. `lab tasks --cpu K` is lab/experiments/cpu_switch.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.errors import GuestError, UserError
from lab.machine.session import Session
from lab.target import shell
from lab.target.cpu import read_tss_rsp0
from lab.labkernel.layouts import PERCPU, SWITCH_FRAME, TASK
from lab.target.dwarf import dwarf_layout

STATES = {0: "unused", 1: "runnable", 2: "running", 3: "dead"}
TASK_STACK_SIZE = 16 * 1024
SWITCH_TO, SWITCH_STACK = "lab_switch_to", "lab_switch_to_stack"
SCHEDULE, TASK_START = "schedule", "lab_task_start"
TASK_STACKS = "TASK_STACKS"


def _stack_low(symbols, top: int) -> int | None:
    """The bottom of the stack whose top is `top`: one element of the TASK_STACKS array, or
    the whole stack object (BOOT_STACK)."""
    loc = symbols.resolve(top - 1)
    if loc is None:
        return None
    if loc.symbol.name == TASK_STACKS:
        return top - TASK_STACK_SIZE
    return loc.symbol.address


def read_tasks(gdb, symbols) -> tuple[list["TaskView"], int]:
    """Every used task and PERCPU.current, read from kernel memory (the CPU stopped). `gdb` is
    anything with read_memory(address, length): the lab's MI client or gdb's own Python."""
    base = symbols.lookup("TASKS")
    raw = gdb.read_memory(base.address, base.size)
    views = []
    for i in range(len(raw) // TASK.size):
        fields = TASK.decode(raw[i * TASK.size:(i + 1) * TASK.size])
        if fields["state"] == 0:
            continue
        v = TaskView(base.address + i * TASK.size, fields, stack_low=_stack_low(symbols, fields["kstack_top"]))
        if v.state != "running":
            v.frame = SWITCH_FRAME.decode(gdb.read_memory(fields["rsp"], SWITCH_FRAME.size))
            v.ret_symbol = symbols.describe(v.frame["ret"])
        views.append(v)
    percpu = symbols.lookup("PERCPU")
    current = PERCPU.decode(gdb.read_memory(percpu.address, PERCPU.size))["current"]
    return views, current


@dataclass
class TaskView:
    address: int
    fields: dict
    frame: dict | None = None  # the saved SwitchFrame, for tasks that are not running
    ret_symbol: str = ""
    stack_low: int | None = None  # lowest address of the task's own kernel stack

    @property
    def name(self) -> str:
        return self.fields["name"].to_bytes(16, "little").split(b"\0")[0].decode(errors="replace")

    @property
    def state(self) -> str:
        return STATES.get(self.fields["state"], f"?{self.fields['state']}")


@dataclass
class SwitchTrace:
    prev: dict
    next: dict
    steps: list[tuple[int, int]]  # (pc, rsp) before each instruction, then after the last
    stack_pc: int  # address of the instruction that loads the new RSP
    cr3_before: int
    cr3_after: int
    current_after: int
    rsp0_after: int


@dataclass
class TasksObservation:
    profile: str
    layouts: dict = field(default_factory=dict)  # struct -> {"declared": ..., "dwarf": ...}
    tasks: list[TaskView] = field(default_factory=list)
    current: int = 0
    rsp0: int = 0
    traces: list[SwitchTrace] = field(default_factory=list)
    rates: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class TasksLab:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.gdb = session.gdb
        self.sym = session.symbols
        for name in ("TASKS", "PERCPU", SWITCH_TO, SCHEDULE):
            if self.sym.lookup(name) is None:
                raise UserError(f"{session.kernel}: no {name} symbol; `lab tasks` needs the lab kernel")

    def _read(self, name: str, size: int | None = None) -> bytes:
        s = self.sym.lookup(name)
        return self.gdb.read_memory(s.address, size or s.size)

    def tss_rsp0(self) -> int:
        return read_tss_rsp0(self.gdb.read_memory, self.gdb.monitor)

    def read(self) -> tuple[list[TaskView], int]:
        """Every used task (the CPU must be stopped) and PERCPU.current."""
        return read_tasks(self.gdb, self.sym)

    def trace_switches(self, count: int, max_steps: int = 64) -> list[SwitchTrace]:
        """Stops at `lab_switch_to` `count` times (the shell's `yield` drives the switches) and
        single-steps each switch until it returns into the next task."""
        gdb = self.gdb
        start = self.sym.lookup(SWITCH_TO)
        stack_pc = self.sym.lookup(SWITCH_STACK).address
        bp = gdb.hbreak(f"*{start.address:#x}")
        self.s.serial.send_line("yield")
        traces = []
        try:
            for _ in range(count):
                gdb.cont()
                gdb.wait_stopped(10, "lab_switch_to")
                regs = gdb.registers()
                prev = TASK.decode(gdb.read_memory(regs["rdi"], TASK.size))
                nxt = TASK.decode(gdb.read_memory(regs["rsi"], TASK.size))
                steps = [(regs["rip"], regs["rsp"])]
                cr3_before = regs["cr3"]
                while start.address <= steps[-1][0] < start.end and len(steps) <= max_steps:
                    gdb.mi("-exec-step-instruction")
                    gdb.wait_stopped(5, "one instruction of lab_switch_to")
                    r = gdb.registers()
                    steps.append((r["rip"], r["rsp"]))
                if len(steps) > max_steps:
                    raise GuestError(f"lab_switch_to did not return within {max_steps} instructions")
                r = gdb.registers()
                current = PERCPU.decode(self._read("PERCPU", PERCPU.size))["current"]
                traces.append(SwitchTrace(prev | {"address": regs["rdi"]}, nxt | {"address": regs["rsi"]},
                                          steps, stack_pc, cr3_before, r["cr3"], current, self.tss_rsp0()))
        finally:
            gdb.delete_breakpoint(bp)
        gdb.cont()
        self.s.serial.expect(rb"yield switches=\d+", 10, "the shell's yield to finish")
        self.s.serial.wait_prompt(10)
        gdb.interrupt()
        return traces


def observe(session: Session) -> TasksObservation:
    """Spawns two threads and a process, lets every task run once, then reads and traces."""
    session.gdb.cont()
    session.serial.wait_prompt(10)
    for line in ("spawn thread alpha", "spawn thread beta", "spawn process gamma", "yield"):
        session.serial.command(line)
    session.gdb.interrupt()
    lab = TasksLab(session)
    obs = TasksObservation(session.profile.name)
    for struct, decl in (("Task", TASK), ("SwitchFrame", SWITCH_FRAME), ("PerCpu", PERCPU)):
        obs.layouts[struct] = {"declared": {"size": decl.size, "members": {f.name: f.offset for f in decl.fields}},
                               "dwarf": None}
        found = dwarf_layout(session.kernel, struct)
        if found:
            obs.layouts[struct]["dwarf"] = {"size": found[0], "members": found[1]}
    obs.tasks, obs.current = lab.read()
    obs.rsp0 = lab.tss_rsp0()
    # shell -> alpha (thread), beta -> gamma (process: CR3 changes), gamma -> shell (back).
    obs.traces = lab.trace_switches(4)
    obs.rates = switch_rates(session)
    return obs


def switch_rates(session: Session, window_ms: int = 300, preempt_hz: int = 1000) -> dict:
    """Context switches per second by the guest's TSC: cooperative (`yield` in a loop) and
    preemptive (the timer at `preempt_hz`, every tick switching). The CPU is stopped at the
    idle shell, its prompt already read."""
    session.gdb.cont()
    cmd = lambda line: session.serial.command(line, timeout=15)
    coop = shell.numbers(cmd(f"switches {window_ms}"))
    cmd(f"timer pit {preempt_hz}")
    cmd("sched preempt on")
    pre = shell.numbers(cmd(f"measure {window_ms}"))
    cmd("sched preempt off")
    cmd("timer stop")
    session.gdb.interrupt()
    seconds = lambda d: d["tsc_cycles"] / d["tsc_hz"]
    return {"window_ms": window_ms, "cooperative_switches": coop["count"],
            "cooperative_per_s": coop["count"] / seconds(coop),
            "preempt_timer_hz": preempt_hz, "preempt_ticks": pre["ticks"],
            "preempt_switches": pre["switches"], "preempt_per_s": pre["switches"] / seconds(pre)}
