"""The kernel trials behind the tutorial texts' claims, on the real kernel: each trial's lines
parse, each judge decides from this run's observation, and altering that observation flips
the verdict (the judge weighs the measurement, nothing stored). `lab claims --seed` as a user
runs it. KVM where it is usable (here: nested, see README)."""

from __future__ import annotations

import copy
import json

import pytest

from lab.checks.claim_evidence import HOLDS, HOLDS_IF, REFUTED, UNMEASURED
from lab.checks.seedclaims import trialjudges as tj, tutorialjudges as tu
from lab.experiments import trial as trial_exp
from lab.host import profiles
from lab.machine.session import Session
from labtest import kvm_usable, lab_cli

KVM_OK, KVM_WHY = kvm_usable()
ALL4 = [(0, 0), (0, 6), (3, 0), (3, 6)]


@pytest.fixture(scope="module")
def tcg_trials(kernel, tmp_path_factory):
    with Session(kernel, profiles.load("tcg"), log_dir=tmp_path_factory.mktemp("trials-tcg")) as s:
        s.boot_to_ready()
        return trial_exp.observe(s)


def _flip(obs, getter, key, value):
    o = copy.deepcopy(obs)
    getter(o)[key] = value
    return o


# (judge, verdict on TCG as measured, alteration (getter, key, value), verdict after it)
LIVE = [
    (tj.pairs_table, HOLDS_IF, (lambda o: o.pairs[0], "vector", 0xB), REFUTED),
    (tj.any_fault_in_delivery_is_df, REFUTED, None, None),
    (tj.benign_first_serial, HOLDS, (lambda o: next(p for p in o.pairs if p["first"] == "ud"), "vector", 8), REFUTED),
    (tj.cr3_flushes_tlb, HOLDS_IF, (lambda o: o.tlb, "cr3_nonglobal", "stale"), REFUTED),
    (tj.global_survives_cr3, REFUTED, (lambda o: o.tlb, "cr3_global", "stale"), HOLDS),
    (tj.never_again_without_eoi, REFUTED, (lambda o: o.eoi, "then_low_same_high", []), HOLDS),
    (tj.only_higher_class_without_eoi, HOLDS, (lambda o: o.eoi, "eoi2", []), REFUTED),
    (tj.stacks_by_rule(ALL4), HOLDS, (lambda o: o.stacks[2], "entry_rsp", 0x1000), REFUTED),
    (tj.old_rsp_pushed, HOLDS, (lambda o: o.stacks[0], "saved_rsp", 0), REFUTED),
    (tj.cpu_swaps_gs, REFUTED, (lambda o: o.swapgs, "ring0_handler_gs", 1), HOLDS),
    (tj.swapgs_twice, HOLDS, (lambda o: o.swapgs, "after_one_gs", 0), REFUTED),
    (tu.frame_is_cpu_frame, REFUTED, None, None),
    (tu.call_aligned, REFUTED, None, None),
    (tu.pf_round_trip, HOLDS, (lambda o: o.tutorial[0], "returned", 0), REFUTED),
    (tu.any_vector_returns, REFUTED, (lambda o: o.tutorial[1], "returned", 1), HOLDS),
]


@pytest.mark.parametrize("judge, measured, alter, altered", LIVE, ids=[c[0].__name__ for c in LIVE])
def test_trial_judges_on_the_live_kernel(tcg_trials, judge, measured, alter, altered):
    verdict, evidence = judge(tcg_trials)
    assert verdict == measured, evidence
    if alter:
        assert judge(_flip(tcg_trials, *alter))[0] == altered


def test_tutorial_stub_reads_a_register_as_rip(tcg_trials):
    pf = next(t for t in tcg_trials.tutorial if t["vector"] == 14)
    ud = next(t for t in tcg_trials.tutorial if t["vector"] == 6)
    assert pf["read_rip"] == pf["saved_rax"] and pf["slot16"] == pf["fault_at"]
    assert pf["call_rsp"] % 16 == 8 and ud["call_rsp"] % 16 == 0
    assert ud["returned"] == 0 and ud["then_vector"] == 13 and ud["then_rip"] == ud["iretq_at"]


@pytest.mark.skipif(not KVM_OK, reason=f"KVM not usable here: {KVM_WHY}")
def test_trials_on_kvm(kernel, tmp_path):
    with Session(kernel, profiles.load("kvm"), log_dir=tmp_path, ready_timeout=30) as s:
        s.boot_to_ready()
        obs = trial_exp.observe(s)
    assert obs.accel == "kvm" and len(obs.pairs) == 16 and len(obs.stacks) == 4
    # The stacks and swapgs follow the manual on the host CPU too.
    assert tj.stacks_by_rule(ALL4)(obs)[0] == HOLDS
    assert tj.swapgs_twice(obs)[0] == HOLDS and tj.cpu_swaps_gs(obs)[0] == REFUTED
    assert tu.pf_round_trip(obs)[0] == HOLDS and tu.any_vector_returns(obs)[0] == REFUTED
    for judge in (tj.pairs_table, tj.cr3_flushes_tlb, tj.only_higher_class_without_eoi):
        assert judge(obs)[0] in (HOLDS, HOLDS_IF, REFUTED, UNMEASURED)


def test_claims_of_one_seed_text(kernel):
    r = lab_cli("claims", "--kernel", str(kernel), "--seed", "002", "--json", timeout=240)
    assert r.returncode == 0, r.stderr
    claims = {c["id"]: c for c in json.loads(r.stdout)}
    assert all(c["seed"] == "002_e6608577afa232f2.txt" for c in claims.values())
    assert claims["s002-eoi-never"]["verdict"] == "refuted"
    assert claims["s002-stub-frame"]["verdict"] == "refuted"
    assert claims["s002-stub-pf-return"]["verdict"] == "holds"
    assert any(e.startswith("TCG (QEMU ") for e in claims["s002-stub-align"]["evidence"])
    md = lab_cli("claims", "--kernel", str(kernel), "--seed", "003", "--markdown", timeout=240)
    assert md.returncode == 0, md.stderr
    assert "| s003-cpu-swapgs |" in md.stdout and "refuted" in md.stdout


def test_unknown_seed_is_one_line():
    r = lab_cli("claims", "--seed", "999")
    assert r.returncode == 2 and "unknown seed text" in r.stderr and "Traceback" not in r.stderr


def test_fire_with_the_tutorial_style(kernel):
    """Seed 002's stub as a handler style: on vectors with an error code the CPU's frame and the
    return check out like the other styles'; the handler the IDT names is the tutorial stub."""
    r = lab_cli("fire", "pf-write", "ss", "--kernel", str(kernel), "--style", "tutorial", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    runs = json.loads(r.stdout)
    assert [x["style"] for x in runs] == ["tutorial", "tutorial"]
    assert all(x["outcome"] == "PASS" for x in runs), [(x["scenario"], x["outcome"]) for x in runs]
    assert all(x["observation"]["delivered"]["style"] == "tutorial" for x in runs)
    bad = lab_cli("fire", "ud", "--kernel", str(kernel), "--style", "tutorial")
    assert bad.returncode == 2 and "error code" in bad.stderr and "Traceback" not in bad.stderr
