"""Severities and waivers without QEMU: the one constructor grades findings, only FAIL fails a
run, a waiver turns an expected FAIL or WARN into WAIVED (and reports the ones that matched
nothing), the JSON keeps its keys and counts every verdict, and the table colours each."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from lab.checks.base import Check, Checks, Verdict, failed, summary
from lab.checks.waivers import apply_waivers
from lab.errors import UserError
from lab.present.render import VERDICT_STYLE, checks_table, verdict_line

C = Checks("generic")


def sample() -> list[Check]:
    return [C.result("a.pass", "passes", True, ["fine"]),
            C.fail("b.fail", "fails", ["the CPU would shut down"]),
            C.warn("c.warn", "warns", ["legal, but risky because ..."]),
            C.info("d.info", "notes", ["noted"]),
            C.skip("e.skip", "skips", "cannot tell")]


def test_only_fail_fails_a_run():
    checks = sample()
    assert failed(checks)
    assert not failed([c for c in checks if c.verdict is not Verdict.FAIL])
    assert not failed(checks, tolerated=["b.fail"])


def test_findings_take_the_worst_severity():
    assert C.findings("x", "t", "ok").verdict is Verdict.PASS
    assert C.findings("x", "t", "ok").evidence == ("ok",)
    assert C.findings("x", "t", "ok", info=["i"]).verdict is Verdict.INFO
    assert C.findings("x", "t", "ok", info=["i"], warn=["w"]).verdict is Verdict.WARN
    c = C.findings("x", "t", "ok", info=["i"], warn=["w"], fail=["f"], context="the rest is fine")
    assert c.verdict is Verdict.FAIL
    assert c.evidence == ("FAIL: f", "WARN: w", "INFO: i")  # no context on a FAIL
    c = C.findings("x", "t", "ok", warn=["w"], context="the rest is fine")
    assert c.evidence == ("w", "the rest is fine")  # one severity: no prefixes


def test_json_keeps_its_keys_and_counts_every_verdict():
    checks = sample()
    row = checks[2].to_json()
    assert row == {"id": "c.warn", "tier": "generic", "title": "warns", "verdict": "WARN",
                   "evidence": ["legal, but risky because ..."]}
    counts = summary(checks)
    assert counts == {"PASS": 1, "FAIL": 1, "WARN": 1, "INFO": 1, "SKIP": 1, "WAIVED": 0}
    json.dumps(counts)


def test_a_waived_fail_or_warn_is_waived_with_its_reason():
    checks, unused = apply_waivers(sample(), {"b.fail": "known: our #DF handler never returns",
                                             "c.warn": "by design"})
    by = {c.id: c for c in checks}
    assert by["b.fail"].verdict is Verdict.WAIVED and by["b.fail"].waived_from is Verdict.FAIL
    assert by["b.fail"].evidence[-1] == "waived: known: our #DF handler never returns"
    assert by["b.fail"].evidence[0] == "the CPU would shut down"  # the finding stays
    assert by["c.warn"].verdict is Verdict.WAIVED and by["c.warn"].to_json()["waived_from"] == "WARN"
    assert unused == {}
    assert not failed(checks)
    assert [c.id for c in checks] == [c.id for c in sample()]  # order kept
    assert summary(checks)["WAIVED"] == 2 and summary(checks)["FAIL"] == 0


def test_waivers_that_match_no_finding_are_returned_unused():
    waivers = {"a.pass": "was failing last week", "d.info": "notes need none", "no.such": "typo",
               "b.fail": "expected"}
    checks, unused = apply_waivers(sample(), waivers)
    assert unused == {"a.pass": "was failing last week", "d.info": "notes need none", "no.such": "typo"}
    by = {c.id: c for c in checks}
    assert by["a.pass"].verdict is Verdict.PASS and by["d.info"].verdict is Verdict.INFO
    assert by["b.fail"].verdict is Verdict.WAIVED


def test_no_waivers_change_nothing():
    checks, unused = apply_waivers(sample(), {})
    assert checks == sample() and unused == {}


@pytest.mark.parametrize("waivers", [{"b.fail": ""}, {"b.fail": "   "}, {"": "why"}, {"b.fail": None}])
def test_a_waiver_needs_an_id_and_a_reason(waivers):
    with pytest.raises(UserError):
        apply_waivers(sample(), waivers)


def test_every_verdict_has_a_style_and_the_table_shows_it():
    assert set(VERDICT_STYLE) == set(Verdict)
    assert VERDICT_STYLE[Verdict.WARN] == "bold yellow" and VERDICT_STYLE[Verdict.INFO] == "blue"
    checks, _ = apply_waivers(sample(), {"b.fail": "expected [not markup]"})
    out = io.StringIO()
    Console(file=out, width=200, color_system="truecolor", force_terminal=True).print(checks_table(checks))
    text = out.getvalue()
    for v in ("PASS", "WAIVED", "WARN", "INFO", "SKIP"):
        assert v in text
    assert "\x1b[1;33mWARN" in text  # bold yellow
    assert "\x1b[34mINFO" in text  # blue
    assert "expected [not markup]" in text


def test_the_summary_line_counts_pass_and_fail_always_the_others_when_present():
    assert verdict_line([C.result("a", "t", True, ["x"])]) == "[bold green]1 PASS[/] [bold red]0 FAIL[/]"
    line = verdict_line(sample())
    assert "1 WARN" in line and "1 INFO" in line and "1 SKIP" in line and "WAIVED" not in line
