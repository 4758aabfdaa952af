"""The lab kernel's per-CPU checks (lab/checks/smp_labkernel.py) on data laid out as
kernel/src/smp lays it out: each CPU's GS base its own `PERCPU`/`AP_PERCPU[k-1]` with a matching
self pointer, each CPU's current task one of its own table (`TASKS`, `AP_TASKS[k-1]`), AP k's TSS
`AP_TSS[k-1]` naming the stacks `LAB_AP_STACKS` declares. Swapping two CPUs' GS bases (which the
generic tier cannot see), a wrong self pointer, one task current on two CPUs, an AP running
another CPU's task and an AP whose NMI stack (or RSP0) is another's each FAIL."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from lab.checks import smp, smp_labkernel
from lab.checks.base import Verdict
from lab.labkernel import contract
from lab.labkernel.layouts import AP_STACKS_DECL, AP_TASK_SLOTS, PERCPU, TASK
from lab.target.symbols import Symbol, Symbols
from lab.x86.tss import TSS
from test_smp_checks import cpu

PERCPU_AT, AP_PERCPU_AT, TASKS_AT, AP_TSS_AT, DECL_AT = 0x120000, 0x121000, 0x122000, 0x123000, 0x124000
AP_TASKS_AT = 0x125000
BASE, STRIDE = 0x1000000, 0x16000
TOPS = {"run_top": 0x5000, "rsp0_top": 0x8000, "double_fault_top": 0xB000, "nmi_top": 0xE000,
        "machine_check_top": 0x11000, "worker_top": 0x16000}


def symbols() -> Symbols:
    decl = AP_STACKS_DECL.encode(base=BASE, stride=STRIDE, **TOPS)
    syms = [Symbol(contract.PERCPU_SYMBOL, PERCPU_AT, 64, "object", ".bss"),
            Symbol(contract.AP_PERCPU_SYMBOL, AP_PERCPU_AT, 7 * 64, "object", ".bss"),
            Symbol(contract.TASKS_SYMBOL, TASKS_AT, 8 * TASK.size, "object", ".bss"),
            Symbol(contract.AP_TSS_SYMBOL, AP_TSS_AT, 7 * TSS.size, "object", ".bss"),
            Symbol(contract.AP_STACKS_SYMBOL, DECL_AT, AP_STACKS_DECL.size, "object", ".rodata"),
            Symbol(contract.AP_TASKS_SYMBOL, AP_TASKS_AT, 7 * AP_TASK_SLOTS * TASK.size, "object", ".bss")]
    return Symbols(syms, section_data={".rodata": (DECL_AT, decl)})


def area(k: int) -> int:
    return PERCPU_AT if k == 0 else AP_PERCPU_AT + (k - 1) * 64


def ap_task(k: int, slot: int) -> int:
    """AP k's task `slot` (0: its idle context, 1: its worker) in AP_TASKS[k-1]."""
    return AP_TASKS_AT + ((k - 1) * AP_TASK_SLOTS + slot) * TASK.size


def lab_cpu(k: int, *, gs: int | None = None, self_ptr: int | None = None, current: int | None = None,
            nmi: int | None = None, rsp0: int | None = None):
    block = BASE + (k - 1) * STRIDE
    kw = {} if k == 0 else {"tss_at": AP_TSS_AT + (k - 1) * TSS.size, "rsp0": rsp0 or block + TOPS["rsp0_top"],
                            "ist": (block + TOPS["double_fault_top"], nmi or block + TOPS["nmi_top"])}
    c = cpu(k, gs=area(k) if gs is None else gs, **kw)
    if k:  # the #MC stack too (IST3): the fixture's TSS has IST1 and IST2 only
        raw = bytearray(c.state.tss)
        raw[TSS.offset("ist3"):TSS.offset("ist3") + 8] = struct.pack("<Q", block + TOPS["machine_check_top"])
        c = dataclasses.replace(c, state=dataclasses.replace(c.state, tss=bytes(raw)))
    cur = (TASKS_AT if k == 0 else ap_task(k, 0)) if current is None else current
    percpu = PERCPU.encode(current=cur, self_ptr=c.kernel_gs if self_ptr is None else self_ptr)
    return dataclasses.replace(c, percpu=percpu)


def checks(cpus) -> dict:
    return {c.id: c for c in smp_labkernel.run(smp.views(cpus, symbols()), symbols())}


def test_the_kernels_own_layout_passes():
    found = checks([lab_cpu(k) for k in range(4)])
    assert set(found) == {"smp.percpu-own", "smp.stacks-declared"}
    assert all(c.verdict is Verdict.PASS for c in found.values()), {i: c.evidence for i, c in found.items()}
    assert "CPU 0 0x120000 current TASKS task 0" in found["smp.percpu-own"].evidence[0]
    assert "CPU 2 0x121040 current AP_TASKS[1] task 0" in found["smp.percpu-own"].evidence[0]


def test_an_ap_running_its_worker_passes():
    """After `on 1 switch`: CPU 1's current is its worker, its RSP0 the worker's stack top."""
    worker = {"current": ap_task(1, 1), "rsp0": BASE + TOPS["worker_top"]}
    found = checks([lab_cpu(k, **(worker if k == 1 else {})) for k in range(4)])
    assert all(c.verdict is Verdict.PASS for c in found.values()), {i: c.evidence for i, c in found.items()}
    assert "CPU 1 0x121000 current AP_TASKS[0] task 1" in found["smp.percpu-own"].evidence[0]


BROKEN = [
    ("GS bases swapped between CPUs 1 and 2", {1: {"gs": area(2)}, 2: {"gs": area(1)}}, "smp.percpu-own",
     "CPU 1: GS base 0x121040 is CPU 2's area (AP_PERCPU[1]), not its own (0x121000)"),
    ("a self pointer naming another area", {3: {"self_ptr": area(1)}}, "smp.percpu-own",
     "CPU 3: the area's self pointer is 0x121000, not its address 0x121080"),
    ("one task current on two CPUs", {2: {"current": ap_task(1, 0)}}, "smp.percpu-own",
     "CPU 1 and CPU 2 both run the task at 0x125000"),
    ("current not a task", {0: {"current": TASKS_AT + 4}}, "smp.percpu-own", "CPU 0: current 0x122004 is no TASKS entry"),
    ("an AP running the boot CPU's task", {1: {"current": TASKS_AT + TASK.size}}, "smp.percpu-own",
     "CPU 1: current 0x122048 is no AP_TASKS[0] entry: it is in CPU 0's (TASKS) task table"),
    ("an AP running another AP's task", {3: {"current": ap_task(2, 1)}}, "smp.percpu-own",
     "CPU 3: current 0x1250d8 is no AP_TASKS[2] entry: it is in CPU 2's (AP_TASKS[1]) task table"),
    ("an AP's RSP0 another AP's worker stack", {2: {"rsp0": BASE + TOPS["worker_top"]}}, "smp.stacks-declared",
     "CPU 2: RSP0 0x1016000 is not the top of its declared rsp0 stack (0x101e000)"),
    ("an AP's NMI stack not its own", {2: {"nmi": BASE + TOPS["nmi_top"]}}, "smp.stacks-declared",
     "CPU 2: IST2 0x100e000 is not the top of its declared nmi stack (0x1024000)"),
]


@pytest.mark.parametrize("what, changes, check_id, evidence", BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_layout_fails(what, changes, check_id, evidence):
    found = checks([lab_cpu(k, **changes.get(k, {})) for k in range(4)])
    assert found[check_id].verdict is Verdict.FAIL, (what, found[check_id].evidence)
    assert any(evidence in line for line in found[check_id].evidence), found[check_id].evidence


def test_swapped_gs_bases_pass_the_generic_tier_and_fail_here():
    cpus = [lab_cpu(0), lab_cpu(1, gs=area(2)), lab_cpu(2, gs=area(1))]
    generic = {c.id: c for c in smp.run(smp.views(cpus, symbols()))}
    assert generic["smp.gs-distinct"].verdict is Verdict.PASS
    assert checks(cpus)["smp.percpu-own"].verdict is Verdict.FAIL


def test_another_kernel_gets_none_of_these():
    assert smp_labkernel.run(smp.views([cpu(0), cpu(1)], Symbols.empty()), Symbols.empty()) == []
    assert smp_labkernel.percpu_bytes(Symbols.empty()) == 0 and smp_labkernel.percpu_bytes(symbols()) == 64


# -- the per-CPU claims (lab/checks/claim_judges_smp.py): change the evidence, the verdict follows

def _claim(claim_id: str, ev) -> str:
    from lab.checks.claims import CLAIMS

    return next(c for c in CLAIMS if c.id == claim_id).judge(ev)[0]


def _ev(cpus=None, triple=None):
    from lab.checks.claims import Evidence

    ev = Evidence()
    ev.smp = (smp.views(cpus if cpus is not None else [lab_cpu(k) for k in range(4)], symbols()), triple)
    return ev


def test_own_gs_area_claim_follows_the_evidence():
    from lab.checks.claims import HOLDS, REFUTED, UNMEASURED, Evidence

    assert _claim("percpu-own-gs", _ev()) == HOLDS
    assert _claim("percpu-own-gs", _ev([lab_cpu(0), lab_cpu(1, gs=area(2)), lab_cpu(2, gs=area(2))])) == REFUTED
    assert _claim("percpu-own-gs", _ev([lab_cpu(0), lab_cpu(1, self_ptr=area(2))])) == REFUTED
    assert _claim("percpu-own-gs", _ev([lab_cpu(0)])) == UNMEASURED
    assert _claim("percpu-own-gs", Evidence()) == UNMEASURED


def test_own_tss_claim_follows_the_evidence():
    from lab.checks.claims import HOLDS, REFUTED

    assert _claim("percpu-own-tss", _ev()) == HOLDS
    assert _claim("percpu-own-tss", _ev([lab_cpu(0), lab_cpu(1), lab_cpu(2, nmi=BASE + TOPS["nmi_top"])])) == REFUTED


def test_triple_fault_claim_follows_the_evidence():
    from lab.checks.claims import HOLDS, REFUTED, UNMEASURED
    from lab.experiments.smp_probe import ApTripleFault

    down = ApTripleFault(1, 4, "tcg", whole_machine_down=True, shutdown={"guest": True, "reason": "guest-reset"})
    assert _claim("triple-fault-one-cpu", _ev(triple=down)) == REFUTED
    assert _claim("triple-fault-one-cpu", _ev(triple=dataclasses.replace(down, whole_machine_down=False))) == HOLDS
    assert _claim("triple-fault-one-cpu", _ev(triple=dataclasses.replace(down, whole_machine_down=None))) == UNMEASURED
    assert _claim("triple-fault-one-cpu", _ev()) == UNMEASURED
