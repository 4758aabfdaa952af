"""Patterns of real, healthy kernels, each shown by a tiny kernel of the test's own
(tests/integration/tinykernels.py: a Multiboot stub that enters long mode, builds its own IDT,
GDT and TSS and halts at `tiny_ready`), inspected by `lab inspect --kernel tiny.elf --at
tiny_ready` under real QEMU and gdb: each is WARN or INFO with its reason, the run exits 0,
and a control beside each, a kernel where the CPU will misbehave, still FAILs with exit 1."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from labtest import lab_cli
from tinykernels import (DF, NMI, NX_PAGE, STOP, UNMAPPED_PAGE, VC, VC_STACK_PAGE, Gate, TinySpec,
                         tiny_kernel)

HEALTHY = TinySpec()
VC_TOP = VC_STACK_PAGE + 0x1000  # its page is left unmapped
NON_CANONICAL = 0x0000_8000_0000_0000


def _ist(*slots):
    return tuple(slots) + (0,) * (7 - len(slots))


def _vc_on_ist3(spec: TinySpec = HEALTHY) -> TinySpec:
    return dataclasses.replace(spec.with_gates(v29=Gate(ist=3)), ist=_ist("df_stack_top", "nmi_stack_top", VC_TOP),
                               unmapped=(VC_STACK_PAGE,))


def _inspect(tmp_path, spec: TinySpec, *args: str, status: int) -> dict:
    elf = tiny_kernel(tmp_path, "tiny", spec)
    r = lab_cli("inspect", "--kernel", str(elf), "--at", STOP, *args, "--json", timeout=60)
    assert r.returncode == status, r.stderr + r.stdout[-3000:]
    return json.loads(r.stdout)


def _checks(report: dict) -> dict[str, dict]:
    return {c["id"]: c for c in report["checks"]}


def test_the_tiny_kernel_passes_every_check(tmp_path):
    report = _inspect(tmp_path, HEALTHY, status=0)
    assert report["ready"].startswith(f"stopped at {STOP}")
    assert {c["verdict"] for c in report["checks"]} == {"PASS"}, _checks(report)
    assert report["sev"] == "SEV is not enabled"


# (case, spec, check, verdict, words of the evidence)
PATTERNS = [
    ("rsp0-zero-no-ring3", dataclasses.replace(HEALTHY, rsp0=0), "tss.stack-alignment", "INFO",
     ("RSP0 is 0", "0xfffffffffffffff8", "no code can run outside ring 0", "never loads RSP0")),
    ("df-on-ist0", HEALTHY.with_gates(v8=Gate(ist=0)), "idt.df-ist", "WARN",
     ("IST=0", "kernel stack overflow", "triple-fault")),
    ("vc-stack-unmapped-without-sev", _vc_on_ist3(), "tss.stacks-mapped", "WARN",
     ("IST3 (vector 29 #VC)", "is not mapped", "only an SEV-ES guest raises #VC", "SEV is not enabled")),
    ("handlers-built-at-run-time", dataclasses.replace(HEALTHY.with_gates(**{f"v{v}": Gate() for v in range(32, 48)}),
                                                       runtime_stubs=tuple(range(32, 48))),
     "idt.handler-symbol", "INFO", ("vectors 32-47", "16 handlers at 0x200200-0x2002f0", "inside no symbol",
                                    "mapped executable memory", "run time")),
    ("ist-8-off-16", dataclasses.replace(HEALTHY, ist=_ist("df_stack_top", "nmi_stack_top - 8")),
     "tss.stack-alignment", "WARN", ("IST2", "8 bytes off 16", "aligns RSP down", "SDM §6.14.2")),
    # user code descriptors (or SYSCALL) but the CPU in ring 0 at the stop: RSP0 is hit only
    # once the kernel runs ring 3, so a WARN that says so
    ("rsp0-zero-user-code-ring0-now", dataclasses.replace(HEALTHY, rsp0=0, user_segments=True),
     "tss.stack-alignment", "WARN", ("RSP0 is 0: the first interrupt or exception in ring 3 would push its frame at "
                                     "0xfffffffffffffff8", "CPL 0 at the stop", "GDT 0x0020: present code, DPL 3")),
    ("rsp0-zero-syscall-ring0-now", dataclasses.replace(HEALTHY, rsp0=0, syscall=True), "tss.stack-alignment", "WARN",
     ("RSP0 is 0: the first interrupt or exception in ring 3", "EFER.SCE=1")),
    ("rsp0-unmapped-user-code-ring0-now", dataclasses.replace(HEALTHY, rsp0=VC_TOP, unmapped=(VC_STACK_PAGE,),
                                                              user_segments=True),
     "tss.stacks-mapped", "WARN", ("RSP0", "is not mapped", "the first interrupt or exception in ring 3 would fault")),
    ("rsp0-8-off-16-with-ring3", dataclasses.replace(HEALTHY, rsp0="rsp0_stack_top - 8", user_segments=True),
     "tss.stack-alignment", "WARN", ("RSP0", "8 bytes off 16", "aligns RSP down")),
]


@pytest.mark.parametrize("case, spec, check, verdict, words", PATTERNS, ids=[p[0] for p in PATTERNS])
def test_a_healthy_pattern_is_graded_and_the_run_exits_0(tmp_path, case, spec, check, verdict, words):
    checks = _checks(_inspect(tmp_path, spec, status=0))
    c = checks[check]
    assert c["verdict"] == verdict, c
    text = " ".join(c["evidence"])
    assert all(w in text for w in words), c["evidence"]
    assert not [i for i, x in checks.items() if x["verdict"] == "FAIL"], checks


# (case, spec, the check that FAILs, words of its evidence)
CONTROLS = [
    # the same kernels stopped in ring 3 (CS 0x23): the next interrupt loads RSP0
    ("rsp0-zero-in-ring3", dataclasses.replace(HEALTHY, rsp0=0, user_segments=True, ring3=True), "tss.stack-alignment",
     ("RSP0 is 0: the CPU would push the frame at 0xfffffffffffffff8", "CPL 3 at the stop (CS 0x0023)")),
    ("rsp0-unmapped-in-ring3", dataclasses.replace(HEALTHY, rsp0=VC_TOP, unmapped=(VC_STACK_PAGE,), user_segments=True,
                                                   ring3=True), "tss.stacks-mapped", ("RSP0", "is not mapped", "CPL 3")),
    ("df-not-present", HEALTHY.with_gates(v8=Gate(ist=1, present=False)), "idt.df-ist",
     ("is not present", "triple fault")),
    ("df-stack-unmapped", dataclasses.replace(_vc_on_ist3(), ist=_ist(VC_TOP, "nmi_stack_top", VC_TOP)),
     "tss.stacks-mapped", ("IST1 (vector 8 #DF)", "is not mapped")),
    ("nmi-stack-unmapped", dataclasses.replace(HEALTHY, ist=_ist("df_stack_top", VC_TOP), unmapped=(VC_STACK_PAGE,)),
     "tss.stacks-mapped", ("IST2 (vector 2 NMI)", "is not mapped")),
    ("vc-and-nmi-share-an-unmapped-stack", _vc_on_ist3(HEALTHY.with_gates(v2=Gate(ist=3))), "tss.stacks-mapped",
     ("IST3 (vector 2 NMI, 29 #VC)", "is not mapped")),
    ("handler-unmapped", dataclasses.replace(HEALTHY.with_gates(v6=Gate(handler=UNMAPPED_PAGE)),
                                             unmapped=(UNMAPPED_PAGE,)), "idt.handler-mapped",
     ("vector 6 (#UD)", f"{UNMAPPED_PAGE:#x} is not mapped")),
    ("handler-no-execute", dataclasses.replace(HEALTHY.with_gates(v6=Gate(handler=NX_PAGE)), nx=(NX_PAGE,)),
     "idt.handler-mapped", ("vector 6 (#UD)", "no-execute page")),
    ("ist-non-canonical", dataclasses.replace(HEALTHY, ist=_ist(NON_CANONICAL, "nmi_stack_top")), "tss.stack-alignment",
     ("IST1 0x800000000000 is not canonical",)),
]


@pytest.mark.parametrize("case, spec, check, words", CONTROLS, ids=[c[0] for c in CONTROLS])
def test_the_control_still_fails_and_exits_1(tmp_path, case, spec, check, words):
    checks = _checks(_inspect(tmp_path, spec, status=1))
    c = checks[check]
    assert c["verdict"] == "FAIL", c
    text = " ".join(c["evidence"])
    assert all(w in text for w in words), c["evidence"]


def test_every_pattern_at_once_is_a_healthy_kernel(tmp_path):
    """RSP0 0 with no ring 3, #DF on IST 0, #VC on an unmapped IST stack, IRQ stubs built at
    run time and an NMI stack 8 bytes off: exit 0, nothing FAILs."""
    spec = dataclasses.replace(
        HEALTHY.with_gates(v8=Gate(ist=0), v29=Gate(ist=3), **{f"v{v}": Gate() for v in range(32, 48)}),
        rsp0=0, ist=_ist(0, "nmi_stack_top - 8", VC_TOP), unmapped=(VC_STACK_PAGE,),
        runtime_stubs=tuple(range(32, 48)))
    report = _inspect(tmp_path, spec, status=0)
    v = {i: c["verdict"] for i, c in _checks(report).items()}
    assert v == {**{i: "PASS" for i in v}, "tss.stack-alignment": "WARN", "idt.df-ist": "WARN",
                 "tss.stacks-mapped": "WARN", "idt.handler-symbol": "INFO"}, v
    assert report["summary"] == {"PASS": len(v) - 4, "FAIL": 0, "WARN": 3, "INFO": 1, "SKIP": 0, "WAIVED": 0}
    alignment = _checks(report)["tss.stack-alignment"]["evidence"]
    assert alignment[0].startswith("WARN: IST2") and alignment[1].startswith("INFO: RSP0 is 0"), alignment


@pytest.fixture
def stripped_with_stub_map(tmp_path):
    """The tiny kernel without its symbols, beside Debian's kind of /boot/System.map: one line."""
    from lab.target.symbols import Symbols

    elf = tiny_kernel(tmp_path, "tiny", HEALTHY)
    stop = Symbols.from_elf(elf).lookup(STOP).address
    stripped = tmp_path / "tiny-stripped.elf"
    subprocess.run(["strip", "-o", stripped, elf], check=True)
    stub = tmp_path / "System.map-6.1.0-57-amd64"
    stub.write_text("ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n")
    return elf, stripped, stub, stop


def test_a_system_map_stub_is_said_in_one_line(stripped_with_stub_map):
    _, stripped, stub, stop = stripped_with_stub_map
    r = lab_cli("inspect", "--kernel", str(stripped), "--symbols", str(stub), "--at", hex(stop), "--json")
    assert r.returncode == 0, r.stderr
    c = _checks(json.loads(r.stdout))["idt.handler-symbol"]
    assert c["verdict"] == "SKIP"
    assert c["evidence"] == [f"System.map {stub} holds 1 symbol: not a real symbol table (Debian ships a "
                             f"one-line stub; the real one is in the -dbg package)"]


def test_a_real_system_map_still_fails_a_handler_with_no_code(tmp_path):
    """Control: with the kernel's real map (`nm -n`), a gate to unmapped memory outside every
    symbol FAILs, as with the ELF's own table."""
    from lab.target.symbols import Symbols

    elf = tiny_kernel(tmp_path, "tiny", dataclasses.replace(HEALTHY.with_gates(v6=Gate(handler=UNMAPPED_PAGE)),
                                                            unmapped=(UNMAPPED_PAGE,)))
    stop = Symbols.from_elf(elf).lookup(STOP).address
    system_map = tmp_path / "System.map"
    system_map.write_text(subprocess.run(["nm", "-n", elf], capture_output=True, text=True, check=True).stdout)
    r = lab_cli("inspect", "--kernel", str(elf), "--symbols", str(system_map), "--at", hex(stop), "--json")
    assert r.returncode == 1, r.stderr
    c = _checks(json.loads(r.stdout))["idt.handler-symbol"]
    assert c["verdict"] == "FAIL" and "inside no symbol and not mapped" in c["evidence"][0], c
