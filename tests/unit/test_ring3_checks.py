"""Syscall, ring-3 interrupt and ring-3 fault checks, on an observation recorded from the real
kernel (TCG): everything passes as recorded (the `ac` program is TCG's recorded deviation),
and each check FAILs when one fact is made wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lab.checks.base import Verdict
from lab.checks.ring3 import run
from lab.experiments.ring3 import Ring3Interrupt, Ring3Observation, SyscallObservation, UserFault

RECORDED = json.loads((Path(__file__).parent / "data" / "ring3_observation_tcg.json").read_text())


def load(mutate=None, profile=None) -> Ring3Observation:
    d = copy.deepcopy(RECORDED)
    if mutate:
        mutate(d)
    return Ring3Observation(profile or d["accel"], SyscallObservation(**d["syscall"]),
                            Ring3Interrupt(**d["interrupt"]), [UserFault(**f) for f in d["faults"]],
                            d["bench"], d["seconds"])


def verdicts(mutate=None, profile=None):
    checks, outcomes = run(load(mutate, profile))
    return {c.id: c.verdict for c in checks}, outcomes


def test_recorded_observation():
    v, outcomes = verdicts()
    assert {k for k, x in v.items() if x is not Verdict.PASS} == {"ring3.fault-ac"}
    assert outcomes == {"hlt": "PASS", "cli": "PASS", "kread": "PASS", "ac": "DEVIATION"}


def test_the_ac_deviation_is_a_failure_off_tcg():
    assert verdicts(profile="kvm")[1]["ac"] == "FAIL"


def step(name, reg, fn):
    def mutate(d):
        d["syscall"]["steps"][name][reg] = fn(d["syscall"]["steps"][name][reg])
    return mutate


def fault(program, fn):
    def mutate(d):
        fn(next(f for f in d["faults"] if f["program"] == program))
    return mutate


WRONG = [
    ("rcx-not-return-address", step("lab_syscall_entry", "rcx", lambda v: v - 2), "syscall.rcx-r11"),
    ("r11-not-user-rflags", step("lab_syscall_entry", "r11", lambda v: v ^ 1), "syscall.rcx-r11"),
    ("if-not-masked", step("lab_syscall_entry", "eflags", lambda v: v | 0x200), "syscall.fmask"),
    ("no-swapgs", step("lab_syscall_after_swapgs", "gs_base", lambda v: 0), "syscall.swapgs-entry"),
    ("user-rsp-wrong-slot", lambda d: d["syscall"]["percpu"].update(user_rsp=0), "syscall.user-rsp-slot"),
    ("kernel-stack-wrong", step("lab_syscall_after_stack", "rsp", lambda v: v - 16), "syscall.kernel-stack"),
    ("frame-r12-clobbered", lambda d: d["syscall"]["trap_frame"].update(r12=1), "syscall.trap-frame"),
    ("frame-user-ss-wrong", lambda d: d["syscall"]["trap_frame"].update(ss=0x10), "syscall.trap-frame"),
    ("no-swapgs-back", step("lab_syscall_sysret", "gs_base", lambda v: 0x11F040), "syscall.swapgs-exit"),
    ("interrupt-cs-kernel", lambda d: d["interrupt"]["stack"].__setitem__(1, 0x08), "ring3.interrupt"),
    ("interrupt-not-on-rsp0", lambda d: d["interrupt"].update(entry_rsp=d["interrupt"]["entry_rsp"] - 8), "ring3.interrupt"),
    ("pf-without-us-bit", fault("kread", lambda f: f["entry"]["stack"].__setitem__(0, 0x1)), "ring3.fault-kread"),
    ("pf-cr2-wrong", fault("kread", lambda f: f["entry"].update(cr2=0)), "ring3.fault-kread"),
    ("gp-rip-wrong", fault("hlt", lambda f: f["entry"]["stack"].__setitem__(1, 0x1000)), "ring3.fault-hlt"),
    ("gp-entry-rsp-wrong", fault("cli", lambda f: f.update(tss_rsp0=f["tss_rsp0"] + 16)), "ring3.fault-cli"),
    ("bench-short", lambda d: d["bench"].update(syscalls=99), "syscall.bench"),
]


@pytest.mark.parametrize("case, mutate, check", WRONG, ids=[w[0] for w in WRONG])
def test_wrong_observation_fails(case, mutate, check):
    assert verdicts(mutate)[0][check] is Verdict.FAIL


def test_every_check_has_a_failing_case():
    assert set(verdicts()[0]) - {"ring3.fault-ac"} == {w[2] for w in WRONG}
