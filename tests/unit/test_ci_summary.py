"""The GitHub job summary (lab/present/ci.py): counts, the FAILs and WARNs, a baseline's drift."""

from __future__ import annotations

import pytest

from lab.present.ci import step_summary

COUNTS = {"PASS": 11, "FAIL": 1, "WARN": 1, "INFO": 0, "SKIP": 0, "WAIVED": 0}
DRIFT = {"id": "baseline.drift", "verdict": "FAIL", "title": "t",
         "evidence": ["the tables differ from arch.json (...):", "vector 8 #DF: IST 1 -> 0 (tiny_isr)"]}
WARN = {"id": "idt.df-ist", "verdict": "WARN", "title": "t", "evidence": ["#DF gate IST=0 | kernel stack"]}
PASS = {"id": "idt.declared", "verdict": "PASS", "title": "t", "evidence": ["ok"]}


# (case, the result's JSON, the report, words in the summary, words not in it)
CASES = [
    ("drift", {"kernel": "k.elf", "ready": "stopped at tiny_ready", "checks": [PASS, WARN, DRIFT], "summary": COUNTS},
     None, ["### lab inspect", "| 11 | 1 | 1 | 0 | 0 | 0 |", "| FAIL | `baseline.drift` |", "| WARN | `idt.df-ist` |",
            "#DF gate IST=0 \\| kernel stack", "**Drift from the baseline** (FAIL)", "```\nvector 8 #DF: IST 1 -> 0 (tiny_isr)\n```"],
     ["idt.declared", "HTML report"]),
    ("waived drift, a report", {"checks": [PASS, {**DRIFT, "verdict": "WAIVED"}], "summary": COUNTS}, "r.html",
     ["**Drift from the baseline** (WAIVED)", "HTML report: `r.html`"], ["| FAIL | `"]),
    ("no drift", {"checks": [PASS, {**DRIFT, "verdict": "PASS"}], "summary": COUNTS}, None, ["| PASS |"],
     ["Drift", "| verdict |"]),
]


@pytest.mark.parametrize("case, data, html, words, absent", CASES, ids=[c[0] for c in CASES])
def test_the_summary_has_the_counts_findings_and_drift(case, data, html, words, absent):
    text = step_summary("lab inspect", data, html)
    assert all(w in text for w in words), text
    assert not any(w in text for w in absent), text


@pytest.mark.parametrize("data", [{}, {"checks": []}, {"scenarios": [], "summary": {}}])
def test_a_result_without_checks_has_no_summary(data):
    assert step_summary("lab fire", data) == ""
