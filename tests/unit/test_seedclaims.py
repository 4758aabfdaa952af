"""The tutorial texts' claims are decided by the kernel trials' evidence: from replies recorded
on the real kernel (TCG and the nested KVM here) each judge gives its verdict, and altering the
observation the judge weighs flips it. Table-driven: (judge, alteration, verdict)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lab.checks.claim_evidence import HOLDS, HOLDS_IF, REFUTED, UNMEASURED, Evidence
from lab.checks import seedclaims
from lab.checks.seedclaims import backends, trialjudges as tj, tutorialjudges as tu
from lab.checks.seedclaims.s004 import error_code_must_go
from lab.errors import GuestError, UserError
from lab.experiments.trial import TRIALS, TrialObservation, parse, parse_line

DATA = Path(__file__).parent / "data"


def observation(backend: str, mutate=None) -> TrialObservation:
    raw = json.loads((DATA / f"trial_replies_{backend}.json").read_text())
    obs = TrialObservation(raw["accel"], raw["qemu_version"], raw["cpu"])
    for name in TRIALS:
        parse(name, raw["replies"][name], obs)
    if mutate:
        mutate(obs)
    return obs


def pair(obs, first, cause):
    return next(p for p in obs.pairs if p["first"] == first and p["cause"] == cause)


def stack(obs, cpl, ist):
    return next(s for s in obs.stacks if s["from"] == cpl and s["ist"] == ist)


def tut(obs, vector):
    return next(t for t in obs.tutorial if t["vector"] == vector)


def setp(getter, key, value):
    def mutate(obs):
        getter(obs)[key] = value
    return mutate


ud_np = lambda o: pair(o, "ud", "not-present")
de_pf = lambda o: pair(o, "de", "pf-stack")
ALL4 = [(0, 0), (0, 6), (3, 0), (3, 6)]

# (judge of one TrialObservation, backend, alteration or None, expected verdict)
CASES = [
    (tj.pairs_table, "tcg", None, HOLDS_IF),
    (tj.pairs_table, "tcg", setp(ud_np, "vector", 8), REFUTED),
    (tj.pairs_table, "kvm", None, REFUTED),
    (tj.any_fault_in_delivery_is_df, "tcg", None, REFUTED),
    (tj.any_fault_in_delivery_is_df, "kvm", None, HOLDS),
    (tj.any_fault_in_delivery_is_df, "kvm", setp(de_pf, "vector", 14), REFUTED),
    (tj.benign_first_serial, "tcg", None, HOLDS),
    (tj.benign_first_serial, "tcg", setp(ud_np, "vector", 8), REFUTED),
    (tj.cr3_flushes_tlb, "tcg", None, HOLDS_IF),
    (tj.cr3_flushes_tlb, "tcg", setp(lambda o: o.tlb, "cr3_nonglobal", "stale"), REFUTED),
    (tj.cr3_flushes_tlb, "kvm", None, UNMEASURED),
    (tj.global_survives_cr3, "tcg", None, REFUTED),
    (tj.global_survives_cr3, "tcg", setp(lambda o: o.tlb, "cr3_global", "stale"), HOLDS),
    (tj.global_survives_cr3, "tcg", setp(lambda o: o.tlb, "no_event", "fresh"), UNMEASURED),
    (tj.never_again_without_eoi, "tcg", None, REFUTED),
    (tj.never_again_without_eoi, "tcg", setp(lambda o: o.eoi, "then_low_same_high", []), HOLDS),
    (tj.only_higher_class_without_eoi, "tcg", None, HOLDS),
    (tj.only_higher_class_without_eoi, "kvm", None, REFUTED),
    (tj.only_higher_class_without_eoi, "tcg", setp(lambda o: o.eoi, "eoi1", 0x58), REFUTED),
    (tj.only_higher_class_without_eoi, "tcg", setp(lambda o: o.eoi, "first", []), UNMEASURED),
    (tj.stacks_by_rule(ALL4), "tcg", None, HOLDS),
    (tj.stacks_by_rule(ALL4), "kvm", None, HOLDS),
    (tj.stacks_by_rule([(3, 0)]), "tcg", setp(lambda o: stack(o, 3, 0), "entry_rsp", 0x1000), REFUTED),
    (tj.stacks_by_rule([(0, 6), (3, 6)]), "tcg", setp(lambda o: stack(o, 3, 6), "entry_rsp", 0x12cff8), REFUTED),
    (tj.old_rsp_pushed, "tcg", None, HOLDS),
    (tj.old_rsp_pushed, "tcg", setp(lambda o: stack(o, 0, 0), "saved_rsp", 0x160a30), REFUTED),
    (tj.cpl_in_cs, "tcg", None, HOLDS),
    (tj.cpl_in_cs, "tcg", setp(lambda o: stack(o, 3, 0), "saved_cs", 0x20), REFUTED),
    (tj.cpu_swaps_gs, "tcg", None, REFUTED),
    (tj.cpu_swaps_gs, "kvm", setp(lambda o: o.swapgs, "ring3_handler_gs", 0x222200000000), HOLDS),
    (tj.swapgs_twice, "tcg", None, HOLDS),
    (tj.swapgs_twice, "tcg", setp(lambda o: o.swapgs, "after_two_gs", 0x222200000000), REFUTED),
    (tu.frame_is_cpu_frame, "tcg", None, REFUTED),
    (tu.frame_is_cpu_frame, "tcg", lambda o: tut(o, 14).update(read_rip=tut(o, 14)["slot16"]), HOLDS),
    (tu.frame_is_cpu_frame, "tcg", setp(lambda o: tut(o, 14), "calls", 0), UNMEASURED),
    (tu.call_aligned, "tcg", None, REFUTED),
    (tu.call_aligned, "kvm", lambda o: tut(o, 14).update(call_rsp=tut(o, 14)["call_rsp"] + 8), HOLDS),
    (tu.pf_round_trip, "tcg", None, HOLDS),
    (tu.pf_round_trip, "tcg", setp(lambda o: tut(o, 14), "rax_after", 0), REFUTED),
    (tu.any_vector_returns, "tcg", None, REFUTED),
    (tu.any_vector_returns, "tcg", setp(lambda o: tut(o, 6), "returned", 1), HOLDS),
    (error_code_must_go, "tcg", None, HOLDS),
    (error_code_must_go, "tcg", setp(lambda o: tut(o, 6), "returned", 1), REFUTED),
]


@pytest.mark.parametrize("judge, backend, mutate, expected", CASES,
                         ids=[f"{c[0].__name__}-{c[1]}-{'altered' if c[2] else 'as-measured'}-{c[3]}" for c in CASES])
def test_trial_judge(judge, backend, mutate, expected):
    verdict, evidence = judge(observation(backend, mutate))
    assert verdict == expected, evidence
    assert evidence and all(isinstance(e, str) for e in evidence)


def test_every_trial_line_parses():
    for backend in ("tcg", "kvm"):
        o = observation(backend)
        assert len(o.pairs) == 16 and len(o.stacks) == 4 and len(o.tutorial) == 2
        assert o.tlb and o.swapgs and "then_low_same_high" in o.eoi and "in_service" in o.eoi
        assert o.backend.startswith(backend.upper() + " (QEMU 7.")


@pytest.mark.parametrize("text, expected", [
    ("trial eoi first=0x52 then=0x62,0x58 none=-", {"first": 0x52, "then": [0x62, 0x58], "none": []}),
    ("trial pair error=-1 vector=0xd cause=pf-stack", {"error": -1, "vector": 13, "cause": "pf-stack"}),
    ("trial tlb cr3_global=stale pcid=0", {"cr3_global": "stale", "pcid": 0}),
])
def test_parse_line(text, expected):
    assert parse_line(text) == expected


@pytest.mark.parametrize("reply", ["trial tlb pcid=0", "error: unknown trial 'x'\ntrial done name=tlb"])
def test_a_broken_reply_is_the_guests_failure(reply):
    with pytest.raises(GuestError):
        parse("tlb", reply, TrialObservation("tcg", "7.2.22", "qemu64"))


@pytest.mark.parametrize("per, expected", [
    ([("TCG", HOLDS, ["a"]), ("KVM", HOLDS, ["a"])], (HOLDS, ["TCG, KVM: a"])),
    ([("TCG", REFUTED, ["a"]), ("KVM", REFUTED, ["b"])], (REFUTED, ["TCG: a", "KVM: b"])),
    ([("TCG", HOLDS, ["a"]), ("KVM", REFUTED, ["b"])], (HOLDS_IF, ["only on TCG; refuted on KVM", "TCG: a", "KVM: b"])),
    ([("TCG", REFUTED, ["a"]), ("KVM", UNMEASURED, ["why"])], (REFUTED, ["TCG: a", "KVM: cannot decide: why"])),
    ([("KVM", UNMEASURED, ["why"])], (UNMEASURED, ["KVM: cannot decide: why"])),
])
def test_fold(per, expected):
    assert backends.fold(per) == expected


def test_on_trials_folds_over_every_backend():
    ev = Evidence(trials={"tcg": observation("tcg"), "kvm": observation("kvm")})
    judge = backends.on_trials(tj.only_higher_class_without_eoi)
    verdict, evidence = judge(ev)
    assert verdict == HOLDS_IF and evidence[0].startswith("only on TCG (QEMU 7.")
    assert judge(Evidence())[0] == UNMEASURED


def test_seed_texts_and_their_claims():
    assert len(seedclaims.SEEDS) == 5
    assert len(seedclaims.ALL) >= 40
    new_trial_claims = [c for c in seedclaims.ALL if c.needs == {"trials"}]
    assert len(new_trial_claims) >= 20
    for c in seedclaims.ALL:
        assert c.seed in seedclaims.SEEDS and c.section and c.statement
        assert c.needs <= seedclaims.KINDS


@pytest.mark.parametrize("name, seed", [("002", "002_e6608577afa232f2.txt"),
                                        ("002_e6608577afa232f2.txt", "002_e6608577afa232f2.txt"),
                                        ("/work/shared/seeds/004_50a9bf41cbb8e124.txt", "004_50a9bf41cbb8e124.txt")])
def test_resolve(name, seed):
    assert seedclaims.resolve(name) == seed


@pytest.mark.parametrize("name", ["007", "", "README.md"])
def test_resolve_refuses(name):
    with pytest.raises(UserError):
        seedclaims.resolve(name)


def test_evaluate_a_seed_on_trials_alone():
    ev = Evidence(trials={"tcg": observation("tcg")})
    out = seedclaims.evaluate(ev, seedclaims.SEEDS["002_e6608577afa232f2.txt"][1])
    by = {c["id"]: c["verdict"] for c in out}
    assert by["s002-eoi-never"] == REFUTED and by["s002-stub-frame"] == REFUTED
    assert by["s002-stub-pf-return"] == HOLDS
    # No fire ran: the claims that weigh fires are left undecided, not guessed.
    assert by["s002-frame-rsp-ss"] == UNMEASURED
    changed = copy.deepcopy(ev)
    tut(changed.trials["tcg"], 14)["read_rip"] = tut(changed.trials["tcg"], 14)["slot16"]
    assert {c["id"]: c["verdict"] for c in seedclaims.evaluate(changed, seedclaims.ALL)}["s002-stub-frame"] == HOLDS


@pytest.mark.parametrize("accel, trials, first", [
    ("tcg", ("tcg",), "TCG (QEMU 7.2.22): x"),
    ("kvm", ("tcg",), "KVM: x"),
    ("", (), "x"),
])
def test_evidence_names_the_backend_of_the_vms_own_experiments(accel, trials, first):
    judge = backends.needs("fires")(lambda ev: (HOLDS, ["x", "y"]))
    ev = Evidence(accel=accel, trials={b: observation(b) for b in trials})
    assert judge(ev) == (HOLDS, [first, "y"]) and judge.needs == {"fires"}
