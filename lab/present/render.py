"""Rich rendering of the report rows (lab.present.rows) for terminals."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.checks.base import Check, Verdict

from lab.present.compact import group_gates
from lab.present.rows import cpu_rows, gdt_rows, idt_rows, shared_rows, tss_rows
from lab.x86.vectors import mnemonic

VERDICT_STYLE = {Verdict.PASS: "bold green", Verdict.FAIL: "bold red", Verdict.WARN: "bold yellow",
                 Verdict.INFO: "blue", Verdict.SKIP: "dim", Verdict.WAIVED: "magenta"}
#: Always counted in a summary line, even at zero; the other verdicts only when present.
ALWAYS_COUNTED = (Verdict.PASS, Verdict.FAIL)


def _hex(v: int, width: int = 0) -> str:
    return f"{v:#0{width + 2}x}" if width else f"{v:#x}"


def idt_table(rows: list[dict], title: str = "IDT") -> Table:
    """rows: lab.present.rows idt_rows, perhaps grouped (compact.group_gates). The symbol column
    only when some handler has one; a group's handlers as the first and the stride."""
    t = Table(title=title, title_justify="left", collapse_padding=True, pad_edge=False)
    symbols = any(r["symbol"] for r in rows)
    cols = ("vec", "name", "handler") + (("symbol",) if symbols else ()) + ("sel", "type", "DPL", "P", "IST")
    for col in cols:
        # identifiers (a symbol, a hex address) are never split mid-word; long ones fold only
        # when nothing else is left to shrink
        t.add_column(col, justify="right" if col in ("vec", "DPL", "P", "IST") else "left",
                     overflow="fold", no_wrap=col in ("symbol", "handler", "type"))
    for r in rows:
        vec, name, handler = str(r["vector"]), r["mnemonic"], _hex(r["handler"])
        if r.get("count", 1) > 1:
            vec, name = f"{r['vector']}-{r['last_vector']}", f"x{r['count']}"
            handler += f" +{r['stride']:#x} each" if r.get("stride") else ""
        elif r["vector"] >= 32:
            name = ""  # "IRQ/INT <v>" says no more than the vector
        cells = [vec, name, handler] + ([escape(r["symbol"])] if symbols else [])
        t.add_row(*cells, _hex(r["selector"], 4), r["type"], str(r["dpl"]), str(int(r["present"])),
                  str(r["ist"]) if r["ist"] else "-")
    return t


def gdt_table(rows: list[dict], title: str = "GDT") -> Table:
    """The symbol column only when some descriptor's base has one."""
    t = Table(title=title, title_justify="left")
    symbols = any(r.get("symbol") for r in rows)
    for col in ("sel", "kind", "base", "limit", "DPL", "flags") + (("symbol",) if symbols else ()) + ("raw",):
        t.add_column(col, overflow="fold")
    for r in rows:
        sel = _hex(r["selector"], 4)
        if r.get("count", 1) > 1:  # a folded run of null descriptors
            sel = f"{sel}-{_hex(r['last_selector'], 4)}"
        kind = r["kind"] if r.get("count", 1) == 1 else f"null x{r['count']}"
        t.add_row(sel, kind, _hex(r["base"]), _hex(r["limit"]), str(r["dpl"]), r["flags"],
                  *([escape(r.get("symbol", ""))] if symbols else []), r["raw"])
    return t


def tss_table(rows: list[dict], title: str = "TSS") -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("field", "value", "points into"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["field"], _hex(r["value"]), escape(r["points_into"]))
    return t


#: A 64-bit address (0x + 16 digits) and a cell's borders: the width of one CPU's column.
CPU_COLUMN = 21
#: The field column ("KERNEL_GS_BASE") and the outer borders.
FIELD_COLUMN = 19


def cpus_tables(rows: list[dict], shared: dict, width: int) -> list[Table]:
    """The CPUs side by side, one column each, as many per table as `width` holds (3 at 80
    columns, 4 at 120): state, TR, its TSS's stacks, IDTR, GDTR and the GS bases. The first
    title says what the CPUs in long mode share."""
    per = max(1, (width - FIELD_COLUMN) // CPU_COLUMN)
    said = ", ".join(f"{k} {v}" for k, v in shared.items()) or "no CPU in long mode"
    ist_used = sorted({n for r in rows for n, v in (r["tss"] or {}).items() if n.startswith("ist") and v})
    fields = [("state", lambda r: ("long mode" if r["long_mode"] else "not started") + (", hlt" if r["halted"] else "")),
              ("TR", lambda r: _hex(r["tr"]["selector"], 4)),
              ("TSS", lambda r: _hex(r["tr"]["base"]) if r["tr"]["selector"] else "-"),
              ("RSP0", lambda r: _hex(r["tss"]["rsp0"]) if r["tss"] else "-"),
              *((n.upper(), lambda r, n=n: _hex(r["tss"][n]) if r["tss"] else "-") for n in ist_used),
              ("IDTR", lambda r: f"{_hex(r['idtr']['base'])}/{_hex(r['idtr']['limit'])}"),
              ("GDTR", lambda r: f"{_hex(r['gdtr']['base'])}/{_hex(r['gdtr']['limit'])}"),
              ("GS_BASE", lambda r: _hex(r["gs_base"])), ("KERNEL_GS_BASE", lambda r: _hex(r["kernel_gs_base"]))]
    tables = []
    for at in range(0, len(rows), per):
        chunk = rows[at:at + per]
        title = f"CPUs ({len(rows)}; {said})" if at == 0 else None
        t = Table(title=title, title_justify="left")
        t.add_column("field")
        for r in chunk:
            t.add_column(f"CPU {r['cpu']}", overflow="fold")
        for name, value in fields:
            t.add_row(name, *(value(r) for r in chunk))
        tables.append(t)
    return tables


def checks_table(checks: list[Check], title: str = "Checks") -> Table:
    t = Table(title=title, title_justify="left")
    # identifiers whole (the check column is as wide as its longest id; its title wraps), the
    # evidence wraps at words
    longest = max((len(c.id) for c in checks), default=5)
    t.add_column("verdict", no_wrap=True)
    t.add_column("tier", no_wrap=True)
    t.add_column("check", min_width=longest, overflow="fold")
    t.add_column("evidence", overflow="fold")
    for c in checks:  # evidence is data, never markup
        t.add_row(f"[{VERDICT_STYLE[c.verdict]}]{c.verdict.value}[/]", c.tier,
                  f"{c.id}\n[dim]{escape(c.title)}[/]", escape("\n".join(c.evidence)))
    return t


def verdict_line(checks: list[Check]) -> str:
    """"12 PASS 0 FAIL 1 WARN 2 INFO": PASS and FAIL always, the others when there are any."""
    counts = {vd: sum(1 for c in checks if c.verdict is vd) for vd in Verdict}
    return " ".join(f"[{VERDICT_STYLE[vd]}]{n} {vd.value}[/]" for vd, n in counts.items()
                    if n or vd in ALWAYS_COUNTED)


def print_report(report, console: Console, *, vectors: set[int] | None = None) -> None:
    """The tables and checks of `lab inspect`: every present gate with identical neighbours
    grouped, or exactly the `vectors` asked for (absent ones included)."""
    v = report.view
    cpu = v.state.cpu
    console.print(f"[bold]{report.kernel}[/] profile={report.profile}  {report.ready_line}")
    console.print(f"IDTR base={cpu.idtr.base:#x} limit={cpu.idtr.limit:#x}   "
                  f"GDTR base={cpu.gdtr.base:#x} limit={cpu.gdtr.limit:#x}   "
                  f"TR={cpu.tr.selector:#06x} base={cpu.tr.base:#x} limit={cpu.tr.limit:#x}")
    absent = sum(1 for g in v.idt if not g.present)
    title = f"IDT ({len(v.idt) - absent} present, {absent} not present)"
    if vectors is None:
        rows = group_gates(idt_rows(v))
    else:
        rows = [r for r in idt_rows(v, all_gates=True) if r["vector"] in vectors]
        title += f", {len(rows)} selected"
    if not v.idt:  # none loaded, or not readable: the checks say which (idt.loaded, state.readable)
        console.print("IDT: none read (no IDT loaded yet, or it cannot be read: see the checks)")
    else:
        console.print(idt_table(rows, title=title))
    console.print(gdt_table(gdt_rows(v)))
    console.print(tss_table(tss_rows(v)))
    if getattr(report, "cpus", None):
        for table in cpus_tables(cpu_rows(report.cpus), shared_rows(report.cpus), console.width):
            console.print(table)
    console.print(checks_table(report.checks))
    for id, reason in getattr(report, "unused_waivers", {}).items():
        console.print(f"[yellow]unused waiver[/] {escape(id)}: no FAIL or WARN to waive "
                      f"({escape(reason)})")
    console.print(verdict_line(report.checks) + f"   ({report.timings.get('total', 0):.3f} s)")


OUTCOME_STYLE = {"PASS": "bold green", "FAIL": "bold red", "DEVIATION": "bold yellow", "STALE": "bold magenta",
                 "SKIP": "dim"}
#: How a fire's note is introduced, by its outcome (lab/checks/deviation.py).
NOTE_LABEL = {"DEVIATION": "recorded deviation", "STALE": "stale record", "FAIL": "not recorded"}


def print_fire(result, symbols, console: Console) -> None:
    from rich.panel import Panel
    from rich.console import Group

    obs = result.observation
    rows = result.stack_rows(symbols)
    stack = Table(title=f"stack at {escape(obs.gate['symbol'])} entry", title_justify="left")
    for col in ("address", "value", "slot", ""):
        stack.add_column(col, overflow="fold")
    for r in rows:
        stack.add_row(_hex(r["address"]), f"{r['value']:#018x}", r["slot"], escape(r["note"]))
    parts = [stack] if rows else [f"[yellow]no entry into {obs.gate['symbol']} "
                                  f"(delivered: {obs.delivered['vector'] if obs.delivered else 'nothing'})[/]"]
    parts.append(checks_table(result.checks, title="checks"))
    if result.note:
        parts.append(f"[yellow]{NOTE_LABEL.get(result.outcome, 'note')}:[/] {escape(result.note)}")
    title = (f"{result.scenario.name} ({escape(result.scenario.summary)}) · vector {obs.vector} · "
             f"{obs.style} · [{OUTCOME_STYLE[result.outcome]}]{result.outcome}[/] · "
             f"{result.seconds * 1000:.0f} ms")
    console.print(Panel(Group(*parts), title=title, title_align="left"))


def print_injections(results, console: Console, stop_line: str) -> None:
    t = Table(title=f"lab fire --agnostic: {escape(stop_line)}", title_justify="left")
    for col in ("injection", "vector", "gate", "outcome", "failed checks", "ms"):
        t.add_column(col, no_wrap=col in ("injection", "outcome", "ms"), overflow="fold")
    for r in results:
        o = r.observation
        vector = f"{r.injection.vector} {mnemonic(r.injection.vector)}"
        if o is None:
            t.add_row(r.injection.name, vector, "-", f"[{OUTCOME_STYLE['SKIP']}]SKIP[/]", escape(r.skipped), "")
            continue
        gate = o.gate["type"] + (f", IST{o.gate['ist']}" if o.gate["ist"] else "")
        failed = ", ".join(c.id for c in r.checks if c.verdict is Verdict.FAIL)
        t.add_row(r.injection.name, vector, gate,
                  f"[{OUTCOME_STYLE[r.outcome]}]{r.outcome}[/]", failed, f"{o.seconds * 1000:.0f}")
    console.print(t)
    for r in results:
        if r.outcome == "FAIL" or (len(results) == 1 and r.observation is not None):
            console.print(checks_table(r.checks, title=f"{r.injection.name}: {escape(r.injection.description)}"))
    counts = {k: sum(1 for r in results if r.outcome == k) for k in ("PASS", "FAIL", "SKIP")}
    console.print(" ".join(f"[{OUTCOME_STYLE[k]}]{n} {k}[/]" for k, n in counts.items() if n or k != "SKIP"))


def print_probes(results, console: Console) -> None:
    """results: (Probe, ProbeObservation, checks, verdict) tuples."""
    t = Table(title="lab probe", title_justify="left")
    for col in ("probe", "expected", "observed", "chain", "verdict", "ms"):
        t.add_column(col, no_wrap=col in ("probe", "verdict", "ms"), overflow="fold")
    for p, obs, checks, v in results:
        chain = " -> ".join(obs.chain) if obs.chain is not None else "unavailable (not TCG)"
        t.add_row(p.name, p.expected, obs.outcome, escape(chain),
                  f"[{VERDICT_STYLE[v]}]{v.value}[/]", f"{obs.seconds * 1000:.0f}")
    console.print(t)
    for p, obs, checks, v in results:
        if len(results) == 1 or v is Verdict.FAIL:
            console.print(checks_table(checks, title=f"{p.name}: {escape(p.summary)}"))
            if obs.last_state:
                console.print("[dim]CPU state at the last delivered exception (QEMU -d int):[/]")
                console.print(escape("\n".join(obs.last_state)))


def print_translation(t, console: Console) -> None:
    title = (f"{t.va:#x} -> {t.physical:#x} ({t.page_size // 1024} KiB page)" if t.physical is not None
             else f"{t.va:#x}: no translation: {t.fault}")
    table = Table(title=f"{title}   CR3={t.cr3:#x}", title_justify="left")
    for col in ("level", "index", "entry at (phys)", "entry", "flags"):
        table.add_column(col, overflow="fold")
    for st in t.steps:
        table.add_row(st.level, str(st.index), _hex(st.entry_address), f"{st.entry:#018x}", st.flags)
    console.print(table)


def print_tasks(obs, console: Console) -> None:
    t = Table(title="tasks (read from kernel memory, layout checked against DWARF)", title_justify="left")
    for col in ("id", "name", "state", "rsp", "kstack_top", "cr3", "switches", "saved frame (r15 r14 r13 r12 rbp rbx)", "returns to"):
        t.add_column(col, overflow="fold")
    for v in obs.tasks:
        f = v.fields
        frame = " ".join(f"{v.frame[k]:#x}" for k in ("r15", "r14", "r13", "r12", "rbp", "rbx")) if v.frame else "(running)"
        t.add_row(str(f["id"]), v.name, v.state, _hex(f["rsp"]), _hex(f["kstack_top"]), _hex(f["cr3"]),
                  str(f["switches"]), frame, escape(v.ret_symbol))
    console.print(t)
    for n, tr in enumerate(obs.traces, 1):
        jumps = [(a, b) for (_, a), (_, b) in zip(tr.steps, tr.steps[1:]) if abs(b - a) not in (0, 8)]
        console.print(f"switch {n}: task@{tr.prev['address']:#x} -> task@{tr.next['address']:#x}: "
                      f"{len(tr.steps) - 1} instructions, RSP jumps {', '.join(f'{a:#x}->{b:#x}' for a, b in jumps)}, "
                      f"CR3 {tr.cr3_before:#x}->{tr.cr3_after:#x}")


def frame_table(f: dict) -> Table:
    """The frame at a handler's first instruction (lab.frame.decode_at_stop)."""
    t = Table(title=f"{f['mnemonic']} frame at {escape(f['symbol'])} (vector {f['vectors'][0]}), RSP {f['rsp']:#x}",
              title_justify="left")
    for col in ("address", "slot", "value", "note"):
        t.add_column(col, overflow="fold")
    for r in f["slots"]:
        t.add_row(f"{r['address']:#x}", r["slot"], f"{r['value']:#018x}", escape(r["note"]))
    return t


def pcpu_table(address: int, fields: dict, gs_base: int) -> Table:
    from lab.labkernel.layouts import PERCPU

    t = Table(title=f"PERCPU at {address:#x} (GS_BASE now {gs_base:#x})", title_justify="left")
    for col in ("offset", "field", "value"):
        t.add_column(col, overflow="fold")
    for f in PERCPU.fields:
        t.add_row(f"{f.offset:#04x}", f.name, f"{fields[f.name]:#x}")
    return t
