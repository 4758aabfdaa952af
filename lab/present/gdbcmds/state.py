"""The lab's gdb commands that read the stopped guest's state: the IDT, GDT and TSS, the
checks `lab inspect` runs, the per-CPU area, the tasks and the page tables. They call the same
readers, decoders, checks and table renderers as the CLI, so the CLI and gdb print the same
tables."""

from __future__ import annotations

from lab.errors import UserError
from lab.present.gdbcmds.live import LabCommand, LiveTarget, command, console, parse_range, symbols, view


@command
class LabIdt(LabCommand):
    """lab-idt [VECTOR|LO-HI]: the live IDT, decoded and resolved to symbols (as `lab inspect`)."""
    cmd = "lab-idt"

    def run(self, arg):
        from lab.present.render import idt_table
        from lab.present.rows import idt_rows

        lo, hi = parse_range(arg)
        rows = [r for r in idt_rows(view(), all_gates=True) if lo <= r["vector"] <= hi]
        console().print(idt_table(rows, title=f"IDT vectors {lo}-{hi}"))


@command
class LabGdt(LabCommand):
    """lab-gdt: the live GDT, decoded (as `lab inspect`)."""
    cmd = "lab-gdt"

    def run(self, arg):
        from lab.present.render import gdt_table
        from lab.present.rows import gdt_rows

        console().print(gdt_table(gdt_rows(view())))


@command
class LabTss(LabCommand):
    """lab-tss: the TSS that TR selects: RSP0-2, IST1-7 with the stacks they point into."""
    cmd = "lab-tss"

    def run(self, arg):
        from lab.present.render import tss_table
        from lab.present.rows import tss_rows

        console().print(tss_table(tss_rows(view())))


@command
class LabCheck(LabCommand):
    """lab-check: run every check `lab inspect` runs, now, on the live state."""
    cmd = "lab-check"

    def run(self, arg):
        from lab.checks.inspect import run_all
        from lab.present.render import checks_table

        console().print(checks_table(run_all(view())))


@command
class LabPcpu(LabCommand):
    """lab-pcpu: the per-CPU area (PERCPU), field by field."""
    cmd = "lab-pcpu"

    def run(self, arg):
        from lab.labkernel.layouts import PERCPU
        from lab.present.render import pcpu_table

        addr = symbols().lookup("PERCPU").address
        fields = PERCPU.decode(LiveTarget().read_memory(addr, PERCPU.size))
        console().print(pcpu_table(addr, fields, LiveTarget().registers().get("gs_base", 0)))


@command
class LabTasks(LabCommand):
    """lab-tasks: the kernel's tasks and each sleeping task's saved switch frame (as `lab tasks`)."""
    cmd = "lab-tasks"

    def run(self, arg):
        from lab.present.render import print_tasks
        from lab.experiments.tasks import TasksObservation, read_tasks

        obs = TasksObservation(profile="live")
        obs.tasks, obs.current = read_tasks(LiveTarget(), symbols())
        print_tasks(obs, console())


@command
class LabTranslate(LabCommand):
    """lab-translate ADDRESS|SYMBOL: walk the 4-level page tables from CR3 (as `lab translate`)."""
    cmd = "lab-translate"

    def run(self, arg):
        from lab.present.render import print_translation
        from lab.target.memory import phys_reader
        from lab.x86.paging import walk

        if not arg:
            raise UserError("usage: lab-translate ADDRESS|SYMBOL")
        va = symbols().require_address(arg)
        t = LiveTarget()
        print_translation(walk(t.registers()["cr3"], va, phys_reader(t.monitor)), console())
