"""Rich rendering of the report rows (lab.report) for terminals."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from lab.checks import Check, Verdict
from lab.report import InspectReport, gdt_rows, idt_rows, tss_rows

VERDICT_STYLE = {Verdict.PASS: "bold green", Verdict.FAIL: "bold red", Verdict.SKIP: "yellow"}


def _hex(v: int, width: int = 0) -> str:
    return f"{v:#0{width + 2}x}" if width else f"{v:#x}"


def idt_table(rows: list[dict], title: str = "IDT") -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("vec", "name", "handler", "symbol", "sel", "type", "DPL", "P", "IST"):
        t.add_column(col, justify="right" if col in ("vec", "DPL", "P", "IST") else "left")
    for r in rows:
        t.add_row(str(r["vector"]), r["mnemonic"], _hex(r["handler"], 16), r["symbol"],
                  _hex(r["selector"], 4), r["type"], str(r["dpl"]), str(int(r["present"])),
                  str(r["ist"]) if r["ist"] else "-")
    return t


def gdt_table(rows: list[dict], title: str = "GDT") -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("sel", "kind", "base", "limit", "DPL", "flags", "symbol", "raw"):
        t.add_column(col)
    for r in rows:
        t.add_row(_hex(r["selector"], 4), r["kind"], _hex(r["base"]), _hex(r["limit"]),
                  str(r["dpl"]), r["flags"], r.get("symbol", ""), r["raw"])
    return t


def tss_table(rows: list[dict], title: str = "TSS") -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("field", "value", "points into"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["field"], _hex(r["value"]), r["points_into"])
    return t


def checks_table(checks: list[Check], title: str = "Checks") -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("verdict", "tier", "check", "evidence"):
        t.add_column(col, overflow="fold")
    for c in checks:
        t.add_row(f"[{VERDICT_STYLE[c.verdict]}]{c.verdict.value}[/]", c.tier,
                  f"{c.id}\n[dim]{c.title}[/]", "\n".join(c.evidence))
    return t


def print_report(report: InspectReport, console: Console) -> None:
    v = report.view
    cpu = v.state.cpu
    console.print(f"[bold]{report.kernel}[/] profile={report.profile}  {report.ready_line}")
    console.print(f"IDTR base={cpu.idtr.base:#x} limit={cpu.idtr.limit:#x}   "
                  f"GDTR base={cpu.gdtr.base:#x} limit={cpu.gdtr.limit:#x}   "
                  f"TR={cpu.tr.selector:#06x} base={cpu.tr.base:#x} limit={cpu.tr.limit:#x}")
    absent = sum(1 for g in v.idt if not g.present)
    console.print(idt_table(idt_rows(v), title=f"IDT ({len(v.idt) - absent} present, {absent} not present)"))
    console.print(gdt_table(gdt_rows(v)))
    console.print(tss_table(tss_rows(v)))
    console.print(checks_table(report.checks))
    counts = {vd: sum(1 for c in report.checks if c.verdict is vd) for vd in Verdict}
    console.print(" ".join(f"[{VERDICT_STYLE[vd]}]{n} {vd.value}[/]" for vd, n in counts.items())
                  + f"   ({report.timings.get('total', 0):.3f} s)")
