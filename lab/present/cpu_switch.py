"""`lab tasks --cpu K`: every CPU's TSS.RSP0, per-CPU current and GS base before and after each
switch on CPU K, the changed cells marked, and the checks."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _change(before: str, after: str) -> str:
    return before if before == after else f"[bold yellow]{before} -> {after}[/]"


def switch_table(step, i: int) -> Table:
    """One row per CPU: its GS base, TSS.RSP0 and current task (name and address), each
    `before -> after` where the switch changed it."""
    after = {s.index: s for s in step.after}
    t = Table(title=f"switch {i + 1}: on {step.cpu} switch ({step.line.get('from', '?')} -> "
                    f"{step.line.get('to', '?')})", title_justify="left")
    for col in ("CPU", "GS base", "TSS.RSP0", "current"):
        t.add_column(col, no_wrap=col != "current")
    for b in step.before:
        a = after.get(b.index)
        cur = lambda s: f"{s.task} {s.current:#x}"
        if a is None:
            t.add_row(str(b.index), f"{b.gs_base:#x}", f"{b.rsp0:#x} -> not read", f"{cur(b)} -> not read")
            continue
        t.add_row(str(b.index) + (" *" if b.index == step.cpu else ""), _change(f"{b.gs_base:#x}", f"{a.gs_base:#x}"),
                  _change(f"{b.rsp0:#x}", f"{a.rsp0:#x}"), _change(cur(b), cur(a)))
    return t


def print_cpu_switch(obs, console: Console) -> None:
    for i, step in enumerate(obs.steps):
        console.print(switch_table(step, i))
    console.print(f"* the CPU that switched; a changed value is shown before -> after ({obs.cpus} CPUs, {obs.profile})")
