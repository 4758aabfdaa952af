"""The data the seed claims are judged against: SDM Table 6-5 pair by pair, the fire-based
alignment judge on recorded fires (altered to flip it), and the Markdown verdict words."""

from __future__ import annotations


import pytest

from lab.checks.claim_evidence import HOLDS, HOLDS_IF, REFUTED, Evidence
from lab.checks.seedclaims.firejudges import error_code_breaks_alignment
from lab.present.claims_md import condition, verdict_words
from lab.scenarios.exceptions import get
from lab.x86.doublefault import BENIGN, CONTRIBUTORY, PAGE_FAULT, exception_class, expected_vector, makes_double_fault
from lab.x86.vectors import DE, DF, GP, NM, NP, PF, SS, TS, UD
from recorded import fires


@pytest.mark.parametrize("vector, cls", [(DE, CONTRIBUTORY), (TS, CONTRIBUTORY), (NP, CONTRIBUTORY),
                                         (SS, CONTRIBUTORY), (GP, CONTRIBUTORY), (PF, PAGE_FAULT),
                                         (UD, BENIGN), (NM, BENIGN), (3, BENIGN), (0x30, BENIGN)])
def test_table_6_4_classes(vector, cls):
    assert exception_class(vector) == cls


@pytest.mark.parametrize("first, second, df", [
    (DE, NP, True), (DE, GP, True), (DE, SS, True), (DE, PF, False),
    (PF, NP, True), (PF, PF, True), (PF, GP, True), (PF, UD, False),
    (UD, NP, False), (UD, PF, False), (NM, GP, False), (GP, UD, False),
])
def test_table_6_5_rule(first, second, df):
    assert makes_double_fault(first, second) is df


@pytest.mark.parametrize("first, cause, vector", [
    (DE, "not-present", DF), (DE, "pf-stack", PF), (DE, "noncanonical-stack", DF),
    (UD, "not-present", NP), (UD, "noncanonical-stack", SS), (NM, "noncanonical-handler", GP),
    (PF, "pf-stack", DF), (PF, "not-present", DF),
])
def test_expected_first_handler(first, cause, vector):
    assert expected_vector(first, cause) == vector


def _shift_pf_entry(key, raw):
    if raw["scenario"] == "pf-write" and raw.get("entry"):
        raw["entry"]["rsp"] += 8


@pytest.mark.parametrize("mutate, expected", [(None, HOLDS), (_shift_pf_entry, REFUTED)])
def test_error_code_alignment_judge(mutate, expected):
    verdict, evidence = error_code_breaks_alignment(Evidence(fires=fires(mutate)))
    assert verdict == expected, evidence


@pytest.mark.parametrize("claim, words", [
    ({"verdict": HOLDS, "evidence": ["x"]}, "holds"),
    ({"verdict": REFUTED, "evidence": ["x"]}, "refuted"),
    ({"verdict": HOLDS_IF, "evidence": ["only on TCG; refuted on KVM", "TCG: condition: y"]},
     "holds only if: only on TCG; refuted on KVM"),
    ({"verdict": HOLDS_IF, "evidence": ["TCG: a; condition: the fault happens during delivery"]},
     "holds only if: the fault happens during delivery"),
    ({"verdict": HOLDS_IF, "evidence": ["TCG: a; only from ring 3"]}, "holds only if: only from ring 3"),
    ({"verdict": HOLDS_IF, "evidence": ["measured", "for every vector measured here"]},
     "holds only if: for every vector measured here"),
])
def test_verdict_words(claim, words):
    assert verdict_words(claim) == words


def test_condition_of_nothing():
    assert condition([]) is None


@pytest.mark.parametrize("names, ok", [(["pf-write", "ss", "np"], True), (["ud"], False), (["int"], False),
                                       (["pf-read", "de"], False)])
def test_tutorial_style_only_where_an_error_code_is_pushed(names, ok):
    from lab.errors import UserError
    from lab.scenarios.exceptions import TUTORIAL_STYLE, check_style, check_tutorial_plan

    assert check_style(TUTORIAL_STYLE) == TUTORIAL_STYLE
    plan = [(get(n), TUTORIAL_STYLE) for n in names]
    if ok:
        check_tutorial_plan(plan)
    else:
        with pytest.raises(UserError):
            check_tutorial_plan(plan)
    check_tutorial_plan([(get(n), "stub") for n in names])  # the other styles go anywhere
