"""`lab tasks --cpus N --cpu K`: a context switch on CPU K, seen from every vCPU.

The lab kernel on N CPUs; before and after each `on K switch` (the boot CPU asks AP K to
switch to the next task of AP K's own table, kernel/src/smp/switch.rs) every vCPU is read
through gdb (lab/target/cpus.py read_machine: one gdb thread per vCPU): its GS base, its
TSS.RSP0 (from the TSS its TR names) and the per-CPU area's `current` (at its GS base), and the
task `current` names (its name and `kstack_top`, from kernel memory). Two switches: to AP K's
worker and back to its idle context. The checks (lab/checks/cpu_switch.py) are a pure function
of these snapshots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lab.errors import GuestError, UserError
from lab.labkernel import contract
from lab.labkernel.layouts import PERCPU, TASK
from lab.machine.session import Session
from lab.target import shell
from lab.target.cpus import read_machine
from lab.x86.tss import TSS


@dataclass(frozen=True)
class CpuSnap:
    """One vCPU at one stop."""

    index: int
    gs_base: int  # the kernel's GS base (GS_BASE in ring 0)
    tss: int  # TR's base
    rsp0: int
    current: int  # PerCpu.current at the GS base
    task: str = ""  # the name of the task `current` points at
    kstack_top: int = 0  # that task's kernel stack top


@dataclass
class SwitchStep:
    """One `on K switch`: every CPU before and after, and the shell's line."""

    cpu: int
    before: list[CpuSnap]
    after: list[CpuSnap]
    line: dict = field(default_factory=dict)  # the `switch cpu=...` fields


@dataclass
class CpuSwitchObservation:
    profile: str
    cpus: int
    cpu: int
    steps: list[SwitchStep] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _task(gdb, address: int) -> tuple[str, int]:
    if not address:
        return "", 0
    t = TASK.decode(gdb.read_memory(address, TASK.size))
    return t["name"].to_bytes(16, "little").split(b"\0")[0].decode(errors="replace"), t["kstack_top"]


def snapshot(session: Session) -> list[CpuSnap]:
    """Every vCPU in long mode (the machine stopped)."""
    _, cpus = read_machine(session.gdb, percpu_size=PERCPU.size)
    out = []
    for c in cpus:
        if not c.long_mode or c.percpu is None or not c.state.tss:
            continue
        current = PERCPU.decode(c.percpu[:PERCPU.size])["current"]
        name, top = _task(session.gdb, current)
        out.append(CpuSnap(c.index, c.kernel_gs, c.cpu.tr.base, TSS.decode(c.state.tss[:TSS.size])["rsp0"],
                           current, name, top))
    return out


def observe(session: Session, cpu: int, switches: int = 2) -> CpuSwitchObservation:
    """`switches` times `on <cpu> switch`, every vCPU snapshot before and after each."""
    if session.symbols.lookup(contract.AP_TASKS_SYMBOL) is None:
        raise UserError(f"{session.kernel}: no {contract.AP_TASKS_SYMBOL} symbol; `lab tasks --cpu` needs the "
                        "lab kernel's per-CPU task tables")
    session.gdb.cont()
    session.serial.wait_prompt(10)
    session.gdb.interrupt()
    before = snapshot(session)
    obs = CpuSwitchObservation(session.profile.name, len(before), cpu)
    if not 0 < cpu < len(before):
        raise UserError(f"--cpu {cpu}: needs an application processor the kernel started (CPUs 1..N-1 of "
                        f"--cpus N > {cpu}; this machine runs {max(len(before), 1)})")
    for _ in range(switches):
        session.gdb.cont()
        reply = session.serial.command(f"on {cpu} switch", timeout=10)
        line = next((x for x in reply.splitlines() if x.startswith("switch cpu=")), None)
        if line is None:
            raise GuestError(f"`on {cpu} switch`: expected a 'switch cpu=' line, got {reply.strip()!r}")
        session.gdb.interrupt()
        after = snapshot(session)
        obs.steps.append(SwitchStep(cpu, before, after, shell.fields(line, "switch")))
        before = after
    return obs
