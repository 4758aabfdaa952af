"""The report's other pictures, each from one run's JSON:

- `fatal_timeline`: a `lab probe` result (lab/runs/probe.py ProbeResult.to_json): each
  exception of the chain QEMU logged (`check_exception`), then the reset or the halt;
- `interval_histogram`: the timer's tick intervals (lab/experiments/timer.py, from the kernel's
  LAB_TICK_LOG), with the configured period marked;
- `page_walk`: one `lab translate` result (lab/x86/paging.py Translation.to_json);
- `matrix`: the matrix shape documented in README.md (`rows`, `columns`, `cells`)."""

from __future__ import annotations

import statistics

from lab.present.html.svg import COLORS, group, hexa, line, path, rect, svg, text


def fatal_timeline(result: dict) -> str:
    obs = result["observation"]
    chain = obs.get("chain")
    steps = list(chain) if chain is not None else []
    outcome = obs.get("outcome", "")
    ends_in_reset = "triple" in outcome
    if steps and steps[-1] == "triple fault":
        steps = steps[:-1]
    box_w, gap, y = 96, 34, 40
    parts = [text(10, 18, f"{result['probe']}: expected {result['expected']}, observed {outcome} "
                  f"({result['verdict']})", size=13, weight="bold")]
    x = 10
    events = [(s, "df" if s == "#DF" else "exception") for s in steps]
    if ends_in_reset:
        reason = (obs.get("shutdown") or {}).get("reason", "reset")
        events.append((f"reset ({reason})", "reset"))
    elif outcome:
        events.append((outcome, "ok"))
    if chain is None:
        parts.append(text(10, y + 24, "chain unavailable (QEMU logs exceptions only under TCG)", size=12))
    for i, (name, kind) in enumerate(events):
        w = max(box_w, 9 * len(name) + 20)
        hover = f"step {i + 1}: {name}"
        parts.append(group([rect(x, y, w, 40, COLORS[kind], hover=hover, rx=6),
                            text(x + w / 2, y + 25, name, size=13, anchor="middle", weight="bold",
                                 fill="#fff" if kind == "reset" else "#111")],
                           class_="event", data_name=name, data_step=i + 1))
        if i + 1 < len(events):
            parts.append(path(f"M{x + w},{y + 20} L{x + w + gap - 2},{y + 20}"))
        x += w + gap
    expected = " -> ".join(result.get("expected_chain", []))
    parts.append(text(10, y + 66, f"expected chain: {expected}", size=11, fill="#444"))
    if obs.get("df_frame"):
        f = obs["df_frame"]
        parts.append(text(10, y + 84, f"#DF handler entered on RSP {hexa(f.get('rsp'))} (IST top "
                          f"{hexa(obs.get('ist_top'))})", size=11, fill="#444"))
    return svg(max(x + 10, 600), y + 96, parts, label=f"fatal path of {result['probe']}", class_="timeline")


def interval_histogram(label: str, intervals_us: list[float], period_us: float | None, *,
                       bins: int = 24) -> str:
    """A histogram of tick intervals (µs) with the configured period as a dashed line."""
    w, h, x0, y0 = 560, 180, 50, 48
    parts = [text(10, 16, label, size=12, weight="bold")]
    if len(intervals_us) < 1:
        parts.append(text(x0, 40, "no interval: fewer than two ticks in the window", size=12))
        return svg(w + 80, 56, parts, label=label, class_="histogram")
    lo, hi = min(intervals_us), max(intervals_us)
    if period_us:
        lo, hi = min(lo, period_us), max(hi, period_us)
    # At least 2% of the period (or of the values) across, so a steady clock is a narrow peak.
    span = max(hi - lo, 0.02 * (period_us or hi), 1e-3)
    mid = (lo + hi) / 2
    lo, hi = mid - span * 0.55, mid + span * 0.55
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in intervals_us:
        counts[max(0, min(int((v - lo) / width), bins - 1))] += 1
    top = max(counts)
    bw = w / bins
    for i, c in enumerate(counts):
        if not c:
            continue
        bh = h * c / top
        a, b = lo + i * width, lo + (i + 1) * width
        parts.append(rect(x0 + i * bw, y0 + h - bh, bw - 1, bh, COLORS["interrupt"],
                          hover=f"{c} interval(s) of {a:.1f}-{b:.1f} µs", class_="bin", data_count=c))
    parts.append(line(x0, y0 + h, x0 + w, y0 + h))
    for frac in (0, 0.5, 1):
        v = lo + frac * (hi - lo)
        parts.append(text(x0 + frac * w, y0 + h + 14, f"{v:.1f}", size=10, anchor="middle"))
    parts.append(text(x0 + w / 2, y0 + h + 28, "interval between ticks (µs)", size=10, anchor="middle"))
    parts.append(text(x0 - 6, y0 + 8, str(top), size=10, anchor="end"))
    if period_us:
        px = x0 + (period_us - lo) / (hi - lo) * w
        right = px > x0 + 0.6 * w
        parts.append(line(px, y0 - 4, px, y0 + h, stroke="#d62728", width=1.5, dash="5 3"))
        parts.append(text(px + (-4 if right else 4), y0 + 4, f"configured period {period_us:.1f} µs", size=10,
                          fill="#d62728", anchor="end" if right else "start"))
    med = statistics.median(intervals_us)
    parts.append(text(10, 32, f"{len(intervals_us)} intervals: median {med:.1f} µs, "
                      f"min {min(intervals_us):.1f}, max {max(intervals_us):.1f}", size=11, fill="#333",
                      class_="interval-stats", data_count=len(intervals_us)))
    return svg(w + 80, y0 + h + 36, parts, label=label, class_="histogram")


#: The 4-level walk: each level's index is 9 bits of the address (SDM vol. 3A §4.5).
VA_FIELDS = (("PML4", 39), ("PDPT", 30), ("PD", 21), ("PT", 12))


def page_walk(t: dict) -> str:
    va = t["va"]
    parts = [text(10, 16, f"{va:#x} -> " + (f"{t['physical']:#x} ({t['page_size'] // 1024} KiB page)"
                  if t.get("physical") is not None else f"no translation: {t.get('fault')}")
                  + f"   CR3 {t['cr3']:#x}", size=12, weight="bold")]
    x = 10
    for name, shift in VA_FIELDS:
        idx = (va >> shift) & 0x1FF
        parts.append(group([rect(x, 28, 120, 34, COLORS["handler"], hover=f"bits {shift + 8}:{shift} = {idx}"),
                            text(x + 60, 42, f"{name} index", size=10, anchor="middle"),
                            text(x + 60, 57, f"{idx}", size=12, anchor="middle", weight="bold")]))
        x += 124
    parts.append(group([rect(x, 28, 120, 34, COLORS["gap"], hover="bits 11:0"),
                        text(x + 60, 42, "offset", size=10, anchor="middle"),
                        text(x + 60, 57, f"{va & 0xFFF:#x}", size=12, anchor="middle", weight="bold")]))
    y = 84
    for i, st in enumerate(t.get("steps", [])):
        hover = f"{st['level']}[{st['index']}] at physical {st['entry_address']:#x} = {st['entry']:#018x} ({st['flags']})"
        parts.append(group([rect(40, y, 660, 36, COLORS["cpu"], hover=hover),
                            text(48, y + 15, f"{st['level']}[{st['index']}]", size=12, weight="bold"),
                            text(48, y + 30, f"entry at {st['entry_address']:#x}", size=11),
                            text(330, y + 15, f"{st['entry']:#018x}", size=12),
                            text(330, y + 30, st["flags"][:52], size=10, fill="#333")],
                           class_="walk-step", data_entry_address=f"{st['entry_address']:#x}",
                           data_entry=f"{st['entry']:#x}"))
        if i + 1 < len(t["steps"]):
            parts.append(path(f"M30,{y + 18} C14,{y + 30} 14,{y + 48} 38,{y + 62}"))
        y += 46
    if t.get("physical") is not None:
        parts.append(group([rect(40, y, 660, 30, COLORS["stub"]),
                            text(48, y + 20, f"physical address {t['physical']:#x}", size=12, weight="bold")],
                           class_="physical", data_address=f"{t['physical']:#x}"))
        y += 36
    return svg(720, y + 6, parts, label=f"page walk of {va:#x}", class_="walk")


def matrix(data: dict) -> str:
    """`{"columns": [...], "rows": [...], "cells": [{"row", "column", "verdict", "detail"}]}`."""
    cols, rows = list(data["columns"]), list(data["rows"])
    cells = {(c["row"], c["column"]): c for c in data.get("cells", [])}
    cw, rh, x0, y0 = 120, 26, 230, 40
    parts = [text(10, 16, data.get("title", "matrix"), size=12, weight="bold")]
    for j, col in enumerate(cols):
        parts.append(text(x0 + j * cw + cw / 2, y0 - 8, str(col)[:16], size=11, anchor="middle", weight="bold"))
    for i, row in enumerate(rows):
        y = y0 + i * rh
        parts.append(text(x0 - 8, y + 17, str(row)[:34], size=11, anchor="end"))
        for j, col in enumerate(cols):
            c = cells.get((row, col))
            verdict = (c or {}).get("verdict", "")
            fill = COLORS.get(verdict.lower(), COLORS["absent"])
            hover = f"{row} / {col}: {verdict or 'not run'}" + (f": {c['detail']}" if c and c.get("detail") else "")
            parts.append(group([rect(x0 + j * cw, y, cw, rh, fill, hover=hover),
                                text(x0 + j * cw + cw / 2, y + 17, (verdict or "-")[:14], size=11, anchor="middle")],
                               class_="cell", data_row=row, data_column=col, data_verdict=verdict))
    return svg(x0 + len(cols) * cw + 10, y0 + len(rows) * rh + 10, parts, label="matrix", class_="matrix")
