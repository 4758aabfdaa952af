"""Baselines (lab/checks/baseline.py): the state built from inspect's rows, its file format, and
drift: one readable line for each kind of change, none for a rebuild that only moves code."""

from __future__ import annotations

import json

import pytest

from lab.checks.base import Verdict
from lab.checks.baseline import FORMAT, _order, alignment, drift, drift_check, dumps, loads, state, with_cpus
from lab.checks.waivers import apply_waivers

ISR, DF_TOP, NMI_TOP = 0x10069C, 0x10B000, 0x10C000


def _gate(vector, *, handler=ISR, symbol="isr", ist=0, dpl=0, type="interrupt", selector=8, present=True):
    return {"vector": vector, "mnemonic": {2: "NMI", 8: "#DF", 14: "#PF"}.get(vector, f"v{vector}"),
            "handler": handler, "symbol": symbol, "selector": selector, "type": type, "dpl": dpl,
            "present": present, "ist": ist}


def _seg(selector, kind, dpl=0, l=False, db=False, present=True, **extra):
    return {"selector": selector, "kind": kind, "dpl": dpl, "l": l, "db": db, "present": present,
            "base": 0, **extra}


def _slot(field, value, stack="", size=0):
    return {"field": field, "value": value, "stack": stack, "stack_size": size,
            "points_into": f"top of {stack}" if stack else ""}


def _rows(move=0, *, df_ist=1, df_dpl=0, df_type="interrupt", df_symbol="double_fault", pf=True, extra_gate=False,
          user_code=False, ist1=("df_stack", 4096, 0), ist2_present=True, code_l=True):
    """The rows inspect's JSON gives for a small kernel; `move` shifts every address (a rebuild
    that only moves code), the other keywords change one thing each."""
    idt = [_gate(2, handler=ISR + move, ist=2), _gate(8, handler=ISR + 0x40 + move, symbol=df_symbol,
                                                      ist=df_ist, dpl=df_dpl, type=df_type)]
    if pf:
        idt.append(_gate(14, handler=ISR + 0x80 + move, symbol="page_fault"))
    if extra_gate:
        idt.append(_gate(0x80, handler=ISR + 0xC0 + move, symbol="syscall_int", dpl=3, type="trap"))
    idt.append(_gate(20, present=False, handler=0, symbol=""))
    gdt = [_seg(0, "null"), _seg(8, "code", l=code_l), _seg(0x10, "data"),
           _seg(0x18, "code", dpl=3, l=True) if user_code else _seg(0x18, "null", present=False),
           _seg(0x28, "tss-busy", base=0x10D000 + move, symbol="tss")]
    name, size, off = ist1
    tss = [_slot("rsp0", 0), _slot("ist1", DF_TOP + move - off, name if not off else "", size if not off else 0)]
    if off:
        tss[-1]["points_into"] = f"df_stack+{size - off:#x}"
    if ist2_present:
        tss.append(_slot("ist2", NMI_TOP + move, "nmi_stack", 4096))
    tss.append({"field": "iomap_base", "value": 104, "points_into": ""})
    return idt, gdt, tss


BASE = state(*_rows())

# (case, the changed rows, words that must be in the drift)
CHANGES = [
    ("df-loses-its-ist", _rows(df_ist=0), ["vector 8 #DF: IST 1 -> 0 (double_fault)", "IST map IST1: removed"]),
    ("dpl", _rows(df_dpl=3), ["vector 8 #DF: DPL 0 -> 3 (double_fault)"]),
    ("gate-type", _rows(df_type="trap"), ["vector 8 #DF: type interrupt -> trap (double_fault)"]),
    ("handler-symbol", _rows(df_symbol="generic_isr"), ["vector 8 #DF: handler double_fault -> generic_isr"]),
    ("gate-removed", _rows(pf=False), ["vector 14 #PF: gate removed (was interrupt, DPL 0, IST 0, page_fault)"]),
    ("gate-added", _rows(extra_gate=True), ["vector 128 v128: gate added (trap, DPL 3, IST 0, syscall_int)"]),
    ("gdt-role", _rows(user_code=True), ["GDT 0x0018: null -> user code 64-bit, present False -> True"]),
    ("gdt-code-not-64-bit", _rows(code_l=False), ["GDT 0x0008: kernel code 64-bit -> kernel code 16-bit"]),
    ("tss-stack-shrank", _rows(ist1=("df_stack", 2048, 0)), ["TSS IST1: stack size 4096 -> 2048"]),
    ("tss-stack-loses-alignment", _rows(ist1=("df_stack", 4096, 8)),
     ["TSS IST1: top of df_stack -> df_stack+0xff8, stack size 4096 -> (none), align 16 -> 8"]),
    ("tss-stack-removed", _rows(ist2_present=False),
     ["TSS IST2: removed (was top of nmi_stack, stack size 4096, align 16)", "IST map IST2: stack nmi_stack -> none (0)"]),
]


@pytest.mark.parametrize("case, rows, words", CHANGES, ids=[c[0] for c in CHANGES])
def test_each_kind_of_change_is_drift_with_a_readable_line(case, rows, words):
    lines = drift(BASE, state(*rows))
    for w in words:
        assert any(w in line for line in lines), lines
    c = drift_check(BASE, state(*rows), "arch.json")
    assert c.id == "baseline.drift" and c.verdict is Verdict.FAIL
    assert "arch.json" in c.evidence[0] and set(lines) <= set(c.evidence)


@pytest.mark.parametrize("move", [0, 0x40, 0x1230, 0x10_0000])
def test_a_rebuild_that_only_moves_code_is_no_drift(move):
    """Moves keep the stacks 16-aligned (a move that does not is drift: the alignment case)."""
    assert drift(BASE, state(*_rows(move))) == []
    assert drift_check(BASE, state(*_rows(move)), "arch.json").verdict is Verdict.PASS


def test_a_handler_with_no_symbol_is_recorded_by_address_and_its_move_is_drift():
    rows = _rows(df_symbol="")
    assert state(*rows)["idt"]["8"]["handler"] == f"{ISR + 0x40:#x}"
    assert drift(state(*rows), state(*_rows(0x10, df_symbol=""))) == [
        f"vector 8 #DF: handler {ISR + 0x40:#x} -> {ISR + 0x50:#x}"]


def test_a_waiver_accepts_the_drift():
    c = drift_check(BASE, state(*_rows(df_ist=0)), "arch.json")
    (waived,), unused = apply_waivers([c], {"baseline.drift": "#DF moves to the kernel stack in this release"})
    assert waived.verdict is Verdict.WAIVED and waived.waived_from is Verdict.FAIL and unused == {}


def test_the_file_is_stable_one_line_per_entry_and_reads_back():
    text = dumps(BASE)
    assert text == dumps(state(*_rows(0x1230))) == dumps(loads(text))  # a move changes no byte
    assert loads(text) == BASE == json.loads(text)
    lines = text.splitlines()
    vectors = [line.split('"')[1] for line in lines if line.startswith('    "') and '"mnemonic"' in line]
    assert vectors == ["2", "8", "14"]  # numeric order, not "14" < "2"
    assert any(line.strip().startswith('"ist1": {"align": 16, "size": 4096, "top": "df_stack"}') for line in lines)


@pytest.mark.parametrize("pointer, align", [(0x10B000, 16), (0x10AFF8, 8), (0x10AFFC, 4), (0x10AFFF, 1), (0, 16)])
def test_alignment_up_to_16(pointer, align):
    assert alignment(pointer) == align


# (case, file text, words of the error)
BAD_FILES = [
    ("empty", "", "not JSON"),
    ("truncated", "{\n", "not JSON"),
    ("a list", "[]", "not a lab baseline"),
    ("no format", '{"idt": {}, "gdt": {}, "tss": {}, "ist_map": {}}', "not a lab baseline"),
    ("other format", json.dumps({"format": "lab-baseline 99"}), "not a lab baseline"),
    ("section missing", json.dumps({"format": FORMAT, "idt": {}, "gdt": {}, "tss": {}}), '"ist_map" must be'),
    ("entry not an object", json.dumps({"format": FORMAT, "idt": {"8": 1}, "gdt": {}, "tss": {}, "ist_map": {}}),
     '"idt" must be'),
    ("nested too deeply", "[" * 100_000 + "]" * 100_000, "not"),
]


@pytest.mark.parametrize("case, text, words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_corrupt_file_is_refused_saying_why(case, text, words):
    with pytest.raises(ValueError, match=words):
        loads(text)


def _smp(move=0, *, ap_ist1=("df_stack", 4096, 0), ap_df_ist=1, aps=(1,), boot_df_ist=1):
    """A boot CPU and APs whose TSS stacks are their own; `ap_*` change CPU 1's only."""
    boot = state(*_rows(move, df_ist=boot_df_ist))
    others = {}
    for k in aps:
        idt, gdt, tss = _rows(move, df_ist=ap_df_ist if k == 1 else 1, ist1=ap_ist1 if k == 1 else ("df_stack", 4096, 0))
        for r in tss:
            if r.get("stack"):
                r["stack"] = f"ap{k}_{r['stack']}"
        others[k] = state(idt, gdt, tss)
    return with_cpus(boot, others)


SMP_BASE = _smp()

# (case, the changed state, the drift it must be)
SMP_CHANGES = [
    ("ap-stack-shrank", _smp(ap_ist1=("df_stack", 2048, 0)), ["CPU 1 TSS IST1: stack size 4096 -> 2048"]),
    ("ap-gate-loses-its-ist", _smp(ap_df_ist=0), ["CPU 1 vector 8 #DF: IST 1 -> 0 (double_fault)"]),
    ("ap-not-started", _smp(aps=()), ["CPU 1 TSS IST1: removed", "CPU 1 TSS IST2: removed"]),
    ("an-ap-more", _smp(aps=(1, 2)), ["CPU 2 TSS IST1: added (top of ap2_df_stack, stack size 4096, align 16)"]),
]


@pytest.mark.parametrize("case, st, words", SMP_CHANGES, ids=[c[0] for c in SMP_CHANGES])
def test_each_cpus_state_drifts_on_its_own(case, st, words):
    lines = drift(SMP_BASE, st)
    for w in words:
        assert any(line.startswith(w) for line in lines), lines
    assert all(line.startswith("CPU ") for line in lines), lines  # the boot CPU did not change


def test_the_boot_cpus_change_is_not_repeated_for_a_cpu_that_kept_the_old_gate():
    assert drift(SMP_BASE, _smp(boot_df_ist=0)) == ["vector 8 #DF: IST 1 -> 0 (double_fault)",
                                                     "IST map IST1: removed (was vectors 8, stack df_stack)"]


def test_the_cpus_gates_are_recorded_only_where_they_differ_and_a_move_is_no_drift():
    assert "cpu_idt" not in SMP_BASE and "cpu_gdt" not in SMP_BASE
    assert set(SMP_BASE["cpu_tss"]) == {"cpu1 ist1", "cpu1 ist2"}
    assert _smp(ap_df_ist=0)["cpu_idt"] == {"cpu1 8": {**BASE["idt"]["8"], "ist": 0}}
    assert drift(SMP_BASE, _smp(0x1230)) == []
    text = dumps(SMP_BASE)
    assert loads(text) == SMP_BASE and '"cpu_tss": {' in text and '"cpu_idt"' not in text
    assert "cpu_tss" not in dumps(BASE)  # one CPU: no per-CPU sections


@pytest.mark.parametrize("keys, ordered", [
    (["ist1", "rsp0", "ist10x", "ist2"], ["rsp0", "ist1", "ist2", "ist10x"]),
    (["14", "2", "0x80", "8"], ["2", "8", "14", "0x80"]),
    (["cpu10 ist1", "cpu2 rsp0", "cpu2 ist1", "cpu1 8"], ["cpu1 8", "cpu2 rsp0", "cpu2 ist1", "cpu10 ist1"]),
])
def test_drift_lines_come_in_table_order(keys, ordered):
    assert sorted(keys, key=_order) == ordered
