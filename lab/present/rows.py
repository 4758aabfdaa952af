"""Rows for the IDT, GDT and TSS tables: one builder, used by the rich renderer, the JSON
output and the gdb commands, so all of them show the same thing."""

from __future__ import annotations

from lab.checks.view import View
from lab.x86.tss import IST_NAMES, RSP_NAMES


def idt_rows(v: View, *, all_gates: bool = False) -> list[dict]:
    rows = []
    for g in v.idt:
        if not (g.present or all_gates):
            continue
        rows.append({
            "vector": g.vector, "mnemonic": g.mnemonic, "handler": g.offset,
            "symbol": v.symbols.describe(g.offset) if g.present else "",
            "symbol_mangled": v.symbols.describe_mangled(g.offset) if g.present else "",
            "selector": g.selector, "type": g.type_name, "dpl": g.dpl,
            "present": g.present, "ist": g.ist,
        })
    return rows


#: A run of at least this many null descriptors is folded into one row (one JSON object with
#: `count`): a GDT whose limit spans thousands of empty slots stays readable.
NULL_RUN_FOLD = 3


def gdt_rows(v: View) -> list[dict]:
    rows = []
    for d in v.gdt:
        row = {"selector": d.selector, "kind": d.kind, "base": d.base, "limit": d.limit,
               "dpl": d.dpl, "present": bool(d.present), "l": d.l, "db": d.db, "g": d.g,
               "flags": d.flags_str, "raw": d.raw[::-1].hex()}
        if d.kind.startswith("tss"):
            row["symbol"] = v.symbols.describe(d.base)
            row["symbol_mangled"] = v.symbols.describe_mangled(d.base)
        rows.append(row)
    return _fold_null_runs(rows)


def _fold_null_runs(rows: list[dict]) -> list[dict]:
    """Consecutive null descriptors after the mandatory first one, NULL_RUN_FOLD or more of
    them, as one row with `count` and `last_selector`; shorter runs stay slot by slot."""
    out: list[dict] = []
    run: list[dict] = []

    def flush() -> None:
        if len(run) >= NULL_RUN_FOLD:
            out.append({**run[0], "count": len(run), "last_selector": run[-1]["selector"]})
        else:
            out.extend(run)
        run.clear()

    for row in rows:
        foldable = row["kind"] == "null" and row["selector"] != 0
        if not (foldable and run and row["selector"] == run[-1]["selector"] + 8):
            flush()
        (run if foldable else out).append(row)
    flush()
    return out


def tss_rows(v: View) -> list[dict]:
    if v.tss is None:
        return []
    rows = [{"field": name, "value": val} for name, val in zip(RSP_NAMES, v.tss.rsp)]
    rows += [{"field": name, "value": val} for name, val in zip(IST_NAMES, v.tss.ist)]
    for row in rows:
        ptr = row["value"]
        stack = v.symbols.stack_ending_at(ptr) if ptr else None
        row["points_into"] = f"top of {stack.display}" if stack else (v.symbols.describe(ptr) if ptr else "")
        row["stack"], row["stack_size"] = (stack.display, stack.size) if stack else ("", 0)
    rows.append({"field": "iomap_base", "value": v.tss.iomap_base, "points_into": ""})
    return rows


def cpu_rows(cpus) -> list[dict]:
    """One row per CPU (lab/checks/smp.py CpuView): its table registers, TR, the stacks in its
    TSS and its GS bases."""
    rows = []
    for c in cpus:
        cpu = c.cpu.cpu
        tss = c.view.tss
        rows.append({
            "cpu": c.cpu.index, "thread": c.cpu.thread, "long_mode": c.cpu.long_mode,
            "halted": c.cpu.halted, "cpl": c.cpu.cpl,
            "rip": cpu.values.get("RIP", cpu.values.get("EIP")), "cr3": cpu.values.get("CR3"),
            "idtr": {"base": cpu.idtr.base, "limit": cpu.idtr.limit},
            "gdtr": {"base": cpu.gdtr.base, "limit": cpu.gdtr.limit},
            "tr": {"selector": cpu.tr.selector, "base": cpu.tr.base, "limit": cpu.tr.limit},
            "tss": None if tss is None else {"rsp0": tss.rsp[0],
                                             **{name: v for name, v in zip(IST_NAMES, tss.ist)}},
            "gs_base": c.cpu.gs_base, "kernel_gs_base": c.cpu.kernel_gs_base,
        })
    return rows


#: What `shared_rows` compares across the CPUs in long mode.
SHARED_FIELDS = (("idtr", lambda r: (r["idtr"]["base"], r["idtr"]["limit"])),
                 ("gdtr", lambda r: (r["gdtr"]["base"], r["gdtr"]["limit"])),
                 ("tss", lambda r: r["tr"]["base"]), ("cr3", lambda r: r["cr3"]),
                 ("gs_base", lambda r: r["gs_base"]))


def shared_rows(cpus) -> dict:
    """{field: "shared" | "per-cpu"} over the CPUs in long mode (empty: none is)."""
    rows = [r for r in cpu_rows(cpus) if r["long_mode"]]
    if not rows:
        return {}
    return {name: "shared" if len({key(r) for r in rows}) == 1 else "per-cpu" for name, key in SHARED_FIELDS}
