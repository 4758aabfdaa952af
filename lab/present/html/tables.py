"""The descriptor tables as pictures, from `lab inspect`'s JSON (lab/runs/inspect.py
InspectReport.to_json): the IDT as a 16x16 map (row = high nibble of the vector), coloured by
gate type, with DPL 3 gates outlined and the IST index written in the cell; the GDT and the
TSS, with an arrow from every stack pointer to the stack it points into."""

from __future__ import annotations

from lab.present.html.svg import COLORS, group, hexa, legend, path, rect, svg, text

CELL = 38


def gate_fill(row: dict | None) -> str:
    if row is None or not row.get("present", True):
        return COLORS["absent"]
    kind = row["type"].lower()
    return COLORS["interrupt"] if "interrupt" in kind else COLORS["trap"] if "trap" in kind else COLORS["other"]


def idt_map(rows: list[dict]) -> str:
    """rows: the JSON's `idt` (present gates; absent vectors are missing from it)."""
    by_vector = {r["vector"]: r for r in rows}
    x0, y0 = 34, 34
    parts = [text(x0 + 8 * CELL, 14, "IDT: 256 vectors, row = high nibble, column = low nibble",
                  size=12, anchor="middle", weight="bold")]
    for n in range(16):
        parts.append(text(x0 + n * CELL + CELL / 2, y0 - 6, f"{n:X}", size=11, anchor="middle", fill="#555"))
        parts.append(text(x0 - 6, y0 + n * CELL + CELL / 2 + 4, f"{n:X}0", size=11, anchor="end", fill="#555"))
    for v in range(256):
        r = by_vector.get(v)
        x, y = x0 + (v % 16) * CELL, y0 + (v // 16) * CELL
        if r is None:
            hover = f"vector {v} ({v:#04x}): not present"
            parts.append(group([rect(x, y, CELL, CELL, gate_fill(None), stroke="#ccc", hover=hover)],
                               class_="gate absent", data_vector=v))
            continue
        hover = (f"vector {v} ({v:#04x}) {r['mnemonic']}: {r['type']}, DPL {r['dpl']}, "
                 f"IST {r['ist'] or '-'}, selector {r['selector']:#06x}, handler {r['symbol'] or '?'} "
                 f"at {r['handler']:#x}")
        cell = [rect(x, y, CELL, CELL, gate_fill(r), hover=hover,
                     stroke="#000" if r["dpl"] == 3 else "#555", stroke_width=3 if r["dpl"] == 3 else 1),
                text(x + 3, y + 12, f"{v:02x}", size=9, fill="#222")]
        if r["ist"]:
            cell.append(text(x + CELL - 4, y + CELL - 5, f"IST{r['ist']}", size=9, anchor="end", weight="bold"))
        label = r["mnemonic"] if v < 32 else (r["symbol"] or "").removeprefix("isr_").split("+")[0]
        if label:
            cell.append(text(x + 3, y + 25, label[:6], size=9))
        parts.append(group(cell, class_="gate", data_vector=v, data_handler=hexa(r["handler"]),
                           data_symbol=r["symbol"]))
    y = y0 + 16 * CELL + 22
    parts += legend(x0, y, [(COLORS["interrupt"], "interrupt gate"), (COLORS["trap"], "trap gate"),
                            (COLORS["other"], "other type"), (COLORS["absent"], "not present")])
    parts.append(text(x0, y + 18, "thick outline: DPL 3 (int from ring 3 allowed)", size=11, fill="#444"))
    parts.append(text(x0, y + 32, "ISTn: the gate switches to TSS.ISTn; hover a cell for its handler",
                      size=11, fill="#444"))
    return svg(x0 + 16 * CELL + 10, y + 42, parts, label="IDT map", class_="idt")


def _stack_name(row: dict) -> str:
    """The stack a TSS pointer points into: its symbol, else its top's address."""
    p = row["points_into"]
    if p:
        return p[len("top of "):] if p.startswith("top of ") else p
    return f"below {row['value']:#x} (no symbol)"


def gdt_tss_picture(report: dict) -> str:
    """The GDT's slots on the left, the TSS's stack pointers in the middle, and the stacks they
    point into on the right, each pointer an arrow labelled with its value."""
    gdt, tss = report.get("gdt", []), [r for r in report.get("tss", []) if r["field"] != "iomap_base"]
    tr = report.get("registers", {}).get("tr", {})
    row = 24
    parts = [text(10, 16, f"GDT at {hexa(report['registers']['gdtr']['base'])}", size=12, weight="bold"),
             text(330, 16, f"TSS at {hexa(tr.get('base'))} (TR {hexa(tr.get('selector'), 4)})", size=12, weight="bold")]
    y = 26
    tss_y = None
    for d in gdt:
        kind = d["kind"] if d.get("count", 1) == 1 else f"null x{d['count']}"
        is_tss = d["kind"].startswith("tss")
        hover = f"selector {d['selector']:#06x}: {kind}, base {d['base']:#x}, limit {d['limit']:#x}, DPL {d['dpl']}, {d['flags']}"
        parts.append(group([rect(10, y, 280, row, COLORS["trap"] if is_tss else COLORS["handler"], hover=hover),
                            text(16, y + 16, f"{d['selector']:#06x} {kind[:18]}", size=11),
                            text(284, y + 16, f"DPL{d['dpl']}", size=11, anchor="end")],
                           class_="descriptor", data_selector=f"{d['selector']:#x}"))
        if is_tss and d["selector"] == tr.get("selector"):
            tss_y = y + row / 2
        y += row
    gdt_bottom = y
    stacks: dict[str, int] = {}
    for r in tss:
        if r["value"]:
            stacks.setdefault(_stack_name(r), len(stacks))
    y = 26
    for r in tss:
        hover = f"TSS.{r['field']} = {r['value']:#x}" + (f": {r['points_into']}" if r["points_into"] else "")
        parts.append(group([rect(330, y, 250, row, COLORS["cpu"] if r["value"] else COLORS["absent"], hover=hover),
                            text(336, y + 16, r["field"], size=11, weight="bold"),
                            text(574, y + 16, hexa(r["value"]), size=11, anchor="end")],
                           class_="tss-field", data_field=r["field"], data_value=hexa(r["value"])))
        if r["value"]:
            sy = 26 + stacks[_stack_name(r)] * (row * 2 + 8) + row
            parts.append(path(f"M580,{y + row / 2} C640,{y + row / 2} 640,{sy} 700,{sy}", stroke="#3182bd"))
        y += row
    if tss_y is not None:
        parts.append(path(f"M290,{tss_y} C310,{tss_y} 310,40 328,38", stroke="#e6550d"))
    for name, i in stacks.items():
        sy = 26 + i * (row * 2 + 8)
        parts.append(group([rect(700, sy, 330, row * 2, COLORS["stub"], hover=name),
                            text(706, sy + 14, "stack", size=10, fill="#555"),
                            text(706, sy + 30, name[:44], size=11)], class_="stack-box"))
    height = max(gdt_bottom, y, 26 + len(stacks) * (row * 2 + 8)) + 12
    return svg(1040, height, parts, label="GDT and TSS", class_="gdt-tss")
