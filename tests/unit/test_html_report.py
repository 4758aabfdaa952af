"""The report's pictures and the compact terminal forms, without QEMU, from hand-made JSON of
the runs' shapes: each number drawn is the one given, the gap and the stack switch follow
from the given RSPs, kinds are told apart, nothing is fetched or run, and wrong input shows."""

from __future__ import annotations

import re

import pytest

from lab.present.compact import group_gates, vector_list
from lab.present.html.charts import interval_histogram, matrix, page_walk
from lab.present.html.page import kind_of, render
from lab.present.html.stack import stack_picture, stub_slots
from lab.present.html.tables import idt_map
from lab.x86.frames import TRAP_FRAME

CS, SS, RFLAGS, RIP = 0x8, 0x10, 0x216, 0x104969


def fire(before_rsp: int, *, error_code: bool = True, ist: int = 0, ist_top: int | None = None,
         stub: bool = False) -> dict:
    """A fire result as lab/runs/fire.py writes it: the CPU frame below the (aligned) origin."""
    origin = ist_top if ist else before_rsp
    top = origin & ~0xF
    names = (["error code"] if error_code else []) + ["RIP", "CS", "RFLAGS", "RSP", "SS"]
    values = {"error code": 3, "RIP": RIP, "CS": CS, "RFLAGS": RFLAGS, "RSP": before_rsp, "SS": SS}
    entry = top - 8 * len(names)
    stack = [{"address": entry + 8 * i, "value": values[n], "slot": n, "note": ""} for i, n in enumerate(names)]
    trap = None
    if stub:
        base = top - 5 * 8 - TRAP_FRAME.offset("rip")
        trap = {"address": base, **{f.name: 0x5E00 + i for i, f in enumerate(TRAP_FRAME.fields)}}
    return {"scenario": "pf-write", "style": "stub" if stub else "x86-interrupt", "vector": 14,
            "outcome": "PASS", "note": "", "seconds": 0.03, "stack": stack, "checks": [],
            "observation": {"before": {"rsp": before_rsp}, "entry": {"rsp": entry},
                            "gate": {"ist": ist, "symbol": "isr_pf", "type": "interrupt"},
                            "ist_top": ist_top, "trap_frame": trap, "delivered": None}}


def slots(svg: str) -> list[tuple[int, int, str]]:
    return [(int(a, 16), int(v, 16), s) for a, v, s in
            re.findall(r'data-address="(0x[0-9a-f]+)" data-value="(0x[0-9a-f]+)" data-slot="([^"]+)"', svg)]


@pytest.mark.parametrize("before, gap", [(0x154BD8, 8), (0x154BD0, 0), (0x154BDF, 15), (0x154BD1, 1)])
def test_the_gap_is_the_interrupted_rsp_minus_the_frames_top(before, gap):
    svg = stack_picture(fire(before))
    if gap:
        assert f'data-bytes="{gap}"' in svg and f"gap: {gap} bytes" in svg
        assert f"aligned down to 16: {before & ~0xF:#x}" in svg
    else:
        assert "data-bytes" not in svg and "already 16-byte aligned" in svg


def texts(svg: str) -> list[tuple[float, float, int, str, str]]:
    """(x, y, font size, anchor, words) of every text element."""
    return [(float(x), float(y), int(size), anchor, t) for x, y, size, anchor, t in
            re.findall(r'<text x="([\d.]+)" y="([\d.]+)" font-size="(\d+)" text-anchor="(\w+)"[^>]*>([^<]*)</text>', svg)]


#: A monospace glyph's advance, as a fraction of the font size (DejaVu Sans Mono: 0.602).
GLYPH = 0.61


@pytest.mark.parametrize("before", [0x154BD8, 0x154BD1, 0x154BDF])
def test_the_gap_row_has_its_address_and_its_words_fit_its_box(before):
    svg = stack_picture(fire(before))
    gap = re.search(r'<g class="gap" data-bytes="(\d+)" data-address="(0x[0-9a-f]+)">(.*?)</g>', svg)
    assert gap is not None
    top = before & ~0xF  # the frame's top: SS sits just below it... the gap starts at SS's top
    assert int(gap.group(2), 16) == fire(before)["stack"][-1]["address"] + 8 < top + 16
    box = re.search(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', gap.group(3))
    x0, w = float(box.group(1)), float(box.group(2))
    inside = [t for t in texts(gap.group(3)) if x0 <= t[0] < x0 + w]
    assert inside and all(t[0] + len(t[4]) * t[2] * GLYPH <= x0 + w for t in inside), inside
    assert any(t[4] == gap.group(2) for t in texts(gap.group(3))), "the gap row's address"


@pytest.mark.parametrize("error_code", [True, False])
def test_the_entry_rsp_arrow_crosses_no_note(error_code):
    """The arrow to the entry RSP starts below the last slot's note (RIP's symbol when the
    vector pushes no error code), so it strikes through no text."""
    result = fire(0x154BD8, error_code=error_code)
    result["stack"][1 if error_code else 0]["note"] = "lab_fault_pf_write"
    svg = stack_picture(result)
    d = re.search(r'<path d="M([\d.]+),([\d.]+) L([\d.]+),([\d.]+)" stroke="#1f77b4"', svg)
    x1, y1, x2, y2 = map(float, d.groups())
    for x, y, size, anchor, words in texts(svg):
        if words and not words.startswith("RSP at the handler"):
            width = len(words) * size * GLYPH
            left = x - width if anchor == "end" else x
            right, top, bottom = left + width, y - size, y + 8  # descenders, and clearance
            crosses_x = min(x1, x2) < right and max(x1, x2) > left
            # the segment's y at the text's horizontal extent
            ys = [y1 + (y2 - y1) * (min(max(px, min(x1, x2)), max(x1, x2)) - x1) / (x2 - x1) for px in (left, right)]
            assert not (crosses_x and min(ys) < bottom and max(ys) > top), (words, (x, y), (x1, y1, x2, y2))


@pytest.mark.parametrize("vector, code, words", [
    (14, 0x3, "P W: protection violation, write, supervisor mode"),
    (14, 0x0, "page not present, read, supervisor mode"),
    (14, 0x15, "P US ID: protection violation, read, user mode, instruction fetch"),
    (13, 0x0, "no selector"),
    (13, 0x12, "IDT index 2 (vector 2)"),
    (11, 0x19, "GDT index 3 (selector 0x18), EXT"),
])
def test_the_error_code_is_decoded_by_its_vectors_layout(vector, code, words):
    result = fire(0x154BD8)
    result["vector"] = vector
    result["stack"][0]["value"] = code
    assert words in stack_picture(result)


def test_the_legend_names_only_the_kinds_drawn():
    legend = lambda svg: set(re.findall(r">(alignment gap|pushed by the CPU|pushed by the stub|interrupted stack)<", svg))
    assert legend(stack_picture(fire(0x154BD8))) == {"alignment gap", "pushed by the CPU"}
    assert legend(stack_picture(fire(0x154BD0))) == {"pushed by the CPU"}
    assert legend(stack_picture(fire(0x154BD8, stub=True))) == {"alignment gap", "pushed by the CPU", "pushed by the stub"}
    assert "interrupted stack" in legend(stack_picture(fire(0x154BD8, ist=1, ist_top=0x160000)))


def test_every_picture_of_a_report_has_its_own_marker_id():
    page = render([("fire.json", [fire(0x154BD8), fire(0x154BD0), fire(0x154BD8, stub=True)])])
    ids = re.findall(r'<marker id="([^"]+)"', page)
    uses = set(re.findall(r'marker-end="url\(#([^)]+)\)"', page))
    assert len(ids) == 3 and len(set(ids)) == 3 and uses <= set(ids)


def test_the_picture_says_which_way_the_stack_grows_and_ties_the_saved_rsp():
    svg = stack_picture(fire(0x154BD8))
    assert "↑ higher addresses" in svg and "the stack grows down ↓" in svg
    assert "= the interrupted RSP" in svg
    switched = stack_picture(fire(0x154BD8, ist=1, ist_top=0x160000))
    assert "= the interrupted RSP" in switched and "(the red line)" not in switched


@pytest.mark.parametrize("error_code", [True, False])
def test_every_cpu_word_is_drawn_at_its_address_highest_first(error_code):
    r = fire(0x154BD8, error_code=error_code)
    drawn = slots(stack_picture(r))
    assert drawn == [(s["address"], s["value"], s["slot"]) for s in reversed(r["stack"])]
    assert drawn[0][2] == "SS" and drawn[-1][2] == ("error code" if error_code else "RIP")


def test_the_stub_rows_are_the_trap_frame_below_the_cpu_frame():
    r = fire(0x154BD8, stub=True)
    drawn = slots(stack_picture(r))
    trap = r["observation"]["trap_frame"]
    below = drawn[len(r["stack"]):]
    assert below == [(a, v, n) for a, v, n in stub_slots(trap, r["observation"]["entry"]["rsp"])]
    assert [n for _, _, n in below] == ["vector"] + ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp",
                                                     "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
    assert below[-1][0] == trap["address"]


def test_without_an_error_code_the_stub_pushed_its_own():
    r = fire(0x154BD8, error_code=False, stub=True)
    names = [n for _, _, n in slots(stack_picture(r))][len(r["stack"]):]
    assert names[:2] == ["error_code", "vector"]


def test_an_ist_gate_starts_the_frame_at_the_tss_slot():
    r = fire(0x154BD8, ist=2, ist_top=0x161000)
    svg = stack_picture(r)
    assert 'class="origin" data-address="0x161000"' in svg and "IST2: RSP := TSS.IST2 = 0x161000" in svg
    assert 'class="interrupted" data-address="0x154bd8"' in svg
    assert slots(svg)[0][0] == 0x161000 - 8


def test_a_handler_never_entered_is_said_not_drawn():
    r = fire(0x154BD8)
    r["observation"]["entry"], r["stack"] = None, []
    assert stack_picture(r).startswith("<p") and "no entry into isr_pf" in stack_picture(r)


def test_the_idt_map_has_256_cells_and_hover_names():
    rows = [{"vector": 14, "mnemonic": "#PF", "handler": 0x10A790, "symbol": "isr_pf", "selector": 8,
             "type": "interrupt", "dpl": 0, "present": True, "ist": 0},
            {"vector": 3, "mnemonic": "#BP", "handler": 0x109F30, "symbol": "isr_bp", "selector": 8,
             "type": "trap", "dpl": 3, "present": True, "ist": 0}]
    svg = idt_map(rows)
    assert svg.count('class="gate') == 256 and svg.count('class="gate absent"') == 254
    assert "<title>vector 14 (0x0e) #PF: interrupt, DPL 0, IST -, selector 0x0008, handler isr_pf at 0x10a790</title>" in svg
    assert 'stroke-width="3"' in svg  # DPL 3 outlined


def test_the_histogram_holds_every_interval():
    intervals = [10000.0] * 40 + [9000.0] * 5 + [12000.0]
    svg = interval_histogram("pit", intervals, 10000.0)
    bins = [int(c) for c in re.findall(r'class="bin" data-count="(\d+)"', svg)]
    assert sum(bins) == len(intervals) and max(bins) == 40
    assert "configured period 10000.0 µs" in svg and "median 10000.0" in svg
    assert "fewer than two ticks" in interval_histogram("no-eoi", [], 10000.0)


def test_the_page_walk_draws_each_level():
    t = {"va": 0x106710, "cr3": 0x121000, "physical": 0x106710, "page_size": 4096, "fault": None,
         "steps": [{"level": lv, "index": i, "entry_address": 0x121000 + 0x1000 * n + 8 * i,
                    "entry": 0x122023 + 0x1000 * n, "flags": "P RW"} for n, (lv, i) in
                   enumerate([("PML4", 0), ("PDPT", 0), ("PD", 0), ("PT", 262)])]}
    svg = page_walk(t)
    assert re.findall(r'data-entry-address="(0x[0-9a-f]+)"', svg) == [hex(s["entry_address"]) for s in t["steps"]]
    assert 'class="physical" data-address="0x106710"' in svg and ">262<" in svg


def test_the_matrix_colours_each_cell_by_verdict():
    svg = matrix({"columns": ["7.2", "10.0"], "rows": ["pf-write"],
                  "cells": [{"row": "pf-write", "column": "7.2", "verdict": "PASS"}]})
    assert 'data-column="7.2" data-verdict="PASS"' in svg and 'data-column="10.0" data-verdict=""' in svg


@pytest.mark.parametrize("data, kind", [
    ([fire(0x154BD8)], "fire"),
    ({"idt": [], "gdt": [], "tss": []}, "inspect"),
    ([{"probe": "control"}], "probe"),
    ([{"id": "x", "statement": "s", "verdict": "holds"}], "claims"),
    ([{"va": 1, "steps": []}], "translate"),
    ({"observation": {"rates": [], "gates": []}, "checks": []}, "timer"),
    ({"observation": {"tasks": [], "traces": []}, "checks": []}, "tasks"),
    ({"observation": {"cpu": 1, "steps": []}, "checks": []}, "cpu-switch"),
    ({"stop": "at x", "results": []}, "fire-agnostic"),
    ({"columns": [], "rows": [], "cells": []}, "matrix"),
    ({"kind": "matrix", "result": {}}, "matrix"),
    ({"checks": []}, "checks"),
    ({"something": 1}, "unknown"),
    ([], "unknown"),
])
def test_kind_of(data, kind):
    assert kind_of(data) == kind


def test_the_page_is_self_contained_and_escapes_the_guests_text():
    r = fire(0x154BD8)
    r["scenario"] = "<script>alert(1)</script>"
    html = render([("run.json", [r]), ("odd.json", {"something": "<b>"})])
    assert "<script" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html
    assert not re.search(r'(src|href)="(?!#)', html) and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


@pytest.mark.parametrize("text, vectors", [
    ("3", {3}), ("0-3,0x80", {0, 1, 2, 3, 128}), ("255", {255}), (" 8 , 14 ", {8, 14}),
])
def test_vector_list(text, vectors):
    assert vector_list(text) == vectors


@pytest.mark.parametrize("text", ["256", "5-3", "x", "1-", "-1"])
def test_vector_list_refuses(text):
    with pytest.raises(ValueError, match="--vectors"):
        vector_list(text)


def gate(v: int, symbol: str = "irq_entries_start", **kw) -> dict:
    return {"vector": v, "mnemonic": "", "handler": 0x1000 + 8 * v, "symbol": symbol, "selector": 0x10,
            "type": "interrupt", "dpl": 0, "present": True, "ist": 0, **kw}


@pytest.mark.parametrize("rows, expected", [
    # one handler array: grouped, up to +offset
    ([gate(32, "irq_entries_start")] + [gate(v, f"irq_entries_start+{8 * (v - 32):#x}") for v in range(33, 236)],
     [(32, 235, 204)]),
    # exceptions are never grouped
    ([gate(v) for v in range(0, 4)], [(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)]),
    # a differing DPL, IST, a gap in the vectors or another symbol breaks the run
    ([gate(40), gate(41, dpl=3), gate(42), gate(43), gate(45), gate(46, "asm_sysvec_x"), gate(47, ist=1)],
     [(40, 40, 1), (41, 41, 1), (42, 43, 2), (45, 45, 1), (46, 46, 1), (47, 47, 1)]),
    # no symbols (a stripped kernel): an array of 8-byte stubs is grouped, a stub elsewhere is not
    ([gate(v, "") for v in range(33, 40)] + [gate(40, "", handler=0x9000)] + [gate(41, "", handler=0x9000 + 100)],
     [(33, 39, 7), (40, 40, 1), (41, 41, 1)]),
    # one symbol-less handler beside a named one stays apart
    ([gate(50, ""), gate(51)], [(50, 50, 1), (51, 51, 1)]),
])
def test_group_gates(rows, expected):
    assert [(r["vector"], r.get("last_vector", r["vector"]), r.get("count", 1)) for r in group_gates(rows)] == expected


def frame(cs: int, switch: dict | None) -> dict:
    """`lab frame`'s JSON (lab/experiments/frame.py): a #PF from ring 3 or ring 0."""
    rsp = 0x168FD0
    names = ["error code", "RIP", "CS", "RFLAGS", "RSP", "SS"]
    values = [5, 0x10000000000, cs, 0x202, 0x10000003000, 0x1B]
    return {"symbol": "isr_pf", "vectors": [14], "mnemonic": "#PF", "rsp": rsp, "stack_switch": switch,
            "slots": [{"address": rsp + 8 * i, "slot": n, "value": v, "note": ""} for i, (n, v) in enumerate(zip(names, values))]}


def test_a_ring3_frame_starts_at_rsp0_beside_the_interrupted_stack():
    from lab.present.html.stack import frame_picture

    svg = frame_picture(frame(0x23, {"field": "rsp0", "rsp": 0x169000}))
    assert "RSP0: RSP := TSS.RSP0 (from ring 3) = 0x169000" in svg
    assert 'class="interrupted" data-address="0x10000003000"' in svg and "already 16-byte aligned" in svg
    assert kind_of(frame(0x23, None)) == "frame"
    same = frame_picture(frame(0x8, None))  # no switch: pushed below the saved RSP
    assert "interrupted RSP (no stack switch) = 0x10000003000" in same and 'class="interrupted"' not in same


def test_every_tss_stack_pointer_is_drawn_to_its_stack():
    from lab.present.html.tables import gdt_tss_picture

    tss = [{"field": "rsp0", "value": 0x169000, "points_into": "top of RSP0_STACK [0x165000-0x169000)"},
           {"field": "rsp1", "value": 0, "points_into": ""},
           {"field": "ist1", "value": 0x159000, "points_into": "top of DOUBLE_FAULT_STACK [0x155000-0x159000)"},
           {"field": "ist2", "value": 0xFFFFFE000000B000, "points_into": ""},
           {"field": "iomap_base", "value": 0x68, "points_into": ""}]
    report = {"registers": {"gdtr": {"base": 0x11C0A0}, "tr": {"selector": 0x28, "base": 0x11C028}},
              "gdt": [{"selector": 0x28, "kind": "tss-busy", "base": 0x11C028, "limit": 0x67, "dpl": 0,
                       "flags": "P", "count": 1}], "tss": tss}
    svg = gdt_tss_picture(report)
    assert re.findall(r'data-field="(\w+)" data-value="(0x[0-9a-f]+)"', svg) == [
        ("rsp0", "0x169000"), ("rsp1", "0x0"), ("ist1", "0x159000"), ("ist2", "0xfffffe000000b000")]
    assert svg.count('class="stack-box"') == 3 and "below 0xfffffe000000b000 (no symbol)" in svg
    assert svg.count("<path") == 3 + 1 + 1  # a pointer an arrow, TR's arrow, the marker's shape


def test_the_cpu_switch_table_marks_what_changed_and_only_that():
    snap = lambda k, rsp0, cur, task: {"index": k, "gs_base": 0x12D200 + 0x40 * k, "tss": 0, "rsp0": rsp0,
                                       "current": cur, "task": task, "kstack_top": rsp0}
    before = [snap(0, 0x181000, 0x133178, "shell"), snap(1, 0x1008000, 0x137000, "idle1")]
    after = [before[0], snap(1, 0x1016000, 0x137048, "worker1")]
    data = {"observation": {"profile": "tcg", "cpus": 2, "cpu": 1, "steps": [
        {"cpu": 1, "before": before, "after": after, "line": {"from": "idle1", "to": "worker1<b>"}}]}, "checks": []}
    html = render([("run", data)])
    assert 'data-kind="cpu-switch"' in html and "worker1&lt;b&gt;" in html
    assert html.count('class="mono changed"') == 2  # CPU 1's RSP0 and current; no GS base, nothing on CPU 0
    assert "0x1008000 &rarr; 0x1016000" in html and "idle1 0x137000 &rarr; worker1 0x137048" in html
