"""Deviations keyed by accelerator and QEMU version: version parsing, the lookup by version
range, and the outcome of real fires recorded on QEMU 7.2.22 and 10.0.2 (TCG) judged against
the record, each with the wrong input that makes it FAIL or STALE."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lab.checks.deviation import OUTCOME_DEVIATION, OUTCOME_FAIL, OUTCOME_PASS, OUTCOME_STALE, outcome
from lab.checks.frame import run
from lab.experiments.fire import FireObservation
from lab.host.qemus import parse_version, parse_version_text
from lab.scenarios import deviations
from lab.scenarios.deviations import DEVIATIONS, NONCANONICAL, Deviation, applicable
from lab.scenarios.exceptions import CATALOG, get

RECORDED = json.loads((Path(__file__).parent / "data" / "fire_observations_by_qemu.json").read_text())


@pytest.mark.parametrize("banner, version, package", [
    ("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022",
     (7, 2, 22), "Debian 1:7.2+dfsg-7+deb12u18+b3"),
    ("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)", (10, 0, 2),
     "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"),
    ("QEMU emulator version 9.1.0\n", (9, 1, 0), ""),
    ("QEMU emulator version 8.2 (v8.2-dirty)", (8, 2, 0), "v8.2-dirty"),
])
def test_version_banner(banner, version, package):
    assert parse_version(banner) == (version, package)


@pytest.mark.parametrize("banner", ["", "qemu-img version 7.2.0", "QEMU emulator version x.y", "Usage: ..."])
def test_not_a_version_banner(banner):
    with pytest.raises(ValueError):
        parse_version(banner)


@pytest.mark.parametrize("text, version", [("10.0.2", (10, 0, 2)), ("8.0", (8, 0, 0)), (" 7.2.22 ", (7, 2, 22))])
def test_version_text(text, version):
    assert parse_version_text(text) == version


@pytest.mark.parametrize("text", ["10", "10.0.2.1", "v10.0", "", "10.x"])
def test_not_version_text(text):
    with pytest.raises(ValueError):
        parse_version_text(text)


CR2 = next(d for d in DEVIATIONS if d.cr2 == NONCANONICAL)
IDT = next(d for d in DEVIATIONS if "np" in d.scenarios)
ALWAYS = next(d for d in DEVIATIONS if "gp-msr" in d.scenarios)


@pytest.mark.parametrize("dev, accel, version, applies", [
    (CR2, "tcg", (7, 2, 22), False),   # before the 8.0 regression
    (CR2, "tcg", (8, 0, 0), True),
    (CR2, "tcg", (9, 2, 3), True),
    (CR2, "tcg", (10, 0, 2), True),    # measured
    (CR2, "tcg", (10, 0, 5), True),
    (CR2, "tcg", (10, 0, 6), False),   # the 10.0 stable fix
    (CR2, "tcg", (10, 1, 2), True),    # a series the stable fix is not in
    (CR2, "tcg", (10, 2, 0), False),   # mainline fix
    (CR2, "tcg", (11, 0, 0), False),
    (CR2, "kvm", (10, 0, 2), False),   # another accelerator
    (CR2, "tcg", None, False),         # unknown version: judged as the oldest
    (IDT, "tcg", (7, 2, 22), True),
    (IDT, "tcg", (8, 0, 0), False),
    (IDT, "tcg", None, True),
    (ALWAYS, "tcg", (10, 0, 2), True),
    (ALWAYS, "kvm", (7, 2, 22), False),
])
def test_deviation_applies_by_version_range(dev, accel, version, applies):
    assert dev.applies(accel, version) is applies


@pytest.mark.parametrize("scenario, version, expected", [
    ("ss-noncanonical", (7, 2, 22), {"ss-noncanonical"}),
    ("ss-noncanonical", (10, 0, 2), {"ss-noncanonical", "gp-noncanonical"}),
    ("gp-noncanonical", (7, 2, 22), set()),
    ("np", (10, 0, 2), set()),
    ("db-int1", (9, 0, 0), {"db-int1"}),
    ("db-int1", (9, 1, 0), set()),
])
def test_lookup_by_scenario_and_version(scenario, version, expected):
    found = applicable(scenario, "tcg", version)
    assert {n for d in found for n in d.scenarios} == expected


def test_every_deviation_names_its_cause_range_and_a_measured_version():
    names = {s.name for s in CATALOG}
    for d in DEVIATIONS:
        assert d.cause.startswith("target/i386/"), d
        assert d.measured and all(parse_version_text(v) for v in d.measured), d
        assert all(n in names or n.startswith("ring3:") for n in d.scenarios), d
        assert "7.2" not in d.summary, d  # the version belongs to the note of a run, not the record
        for v in d.measured:  # the record holds for what was measured
            assert d.applies(d.accel, parse_version_text(v)), (d, v)


def test_note_names_the_measured_version_and_the_fix():
    note = CR2.note("10.0.2")
    assert note.startswith("QEMU 10.0.2 TCG:") and "x86_cpu_tlb_fill" in note and "10.0.6 / 10.2" in note


def judge(key: str, mutate=None, qemu: str | None = None):
    data = copy.deepcopy(RECORDED[key])
    if mutate:
        mutate(data)
    if qemu is not None:
        data["qemu"] = qemu
    obs = FireObservation(**data)
    s = get(obs.scenario)
    return outcome(obs, s, run(obs, s))


@pytest.mark.parametrize("key, result, says", [
    ("7.2.22/np/x86-interrupt", OUTCOME_DEVIATION, "QEMU 7.2.22 TCG"),
    ("7.2.22/db-int1/x86-interrupt", OUTCOME_DEVIATION, "fixed in 9.1"),
    ("7.2.22/ss-noncanonical/x86-interrupt", OUTCOME_DEVIATION, "get_physical_address"),
    ("7.2.22/gp-noncanonical/x86-interrupt", OUTCOME_PASS, ""),
    ("10.0.2/np/x86-interrupt", OUTCOME_PASS, ""),
    ("10.0.2/db-int1/x86-interrupt", OUTCOME_PASS, ""),
    ("10.0.2/gp-noncanonical/x86-interrupt", OUTCOME_DEVIATION, "QEMU 10.0.2 TCG: writes CR2"),
    ("10.0.2/ss-noncanonical/x86-interrupt", OUTCOME_DEVIATION, "writes CR2"),
    ("10.0.2/pf-rsvd/x86-interrupt", OUTCOME_DEVIATION, "mmu_translate"),
])
def test_recorded_fires_as_measured(key, result, says):
    got, note = judge(key)
    assert got == result and says in note, note


# Wrong inputs: each must change the verdict, and say why.
def test_deviation_of_an_older_version_on_a_newer_qemu_is_a_failure():
    # 7.2's IDT error code seen on a QEMU that has the fix: not recorded there.
    got, note = judge("7.2.22/np/x86-interrupt", qemu="10.0.2")
    assert got == OUTCOME_FAIL
    assert "unrecorded deviation on TCG QEMU 10.0.2" in note and "QEMU < 8.0" in note


def test_cr2_written_on_a_qemu_before_the_regression_is_a_failure():
    got, note = judge("10.0.2/gp-noncanonical/x86-interrupt", qemu="7.2.22")
    assert got == OUTCOME_FAIL and "recorded only for TCG QEMU >= 8.0" in note


def test_cr2_written_on_the_fixed_stable_release_is_a_failure():
    got, note = judge("10.0.2/gp-noncanonical/x86-interrupt", qemu="10.0.6")
    assert got == OUTCOME_FAIL and "10.0.6" in note


def test_recorded_deviation_not_seen_is_stale_not_pass():
    # 7.2's correct non-canonical #GP (CR2 untouched) on 10.0.2, where CR2 is recorded written.
    got, note = judge("7.2.22/gp-noncanonical/x86-interrupt", qemu="10.0.2")
    assert got == OUTCOME_STALE
    assert "recorded deviation not seen on TCG QEMU 10.0.2" in note and "writes CR2" in note


def test_a_cr2_deviation_the_run_could_not_see_is_not_measurable_not_stale():
    """The guest observer has no CR2 from before the event: the 10.0.2 CR2 deviation cannot
    show, so a clean run is PASS saying so, never STALE; give it the CR2 from before (the gdb
    observer's sentinel) and the same clean run is STALE again."""
    def guest(d):
        d["observer"] = "guest"
        d["before"].pop("cr2", None)
        d["entry"]["cr2"] = 0x1234000
    got, note = judge("7.2.22/gp-noncanonical/x86-interrupt", guest, qemu="10.0.2")
    assert got == OUTCOME_PASS and "not measurable in this run (guest observer" in note and "writes CR2" in note

    def known(d):
        guest(d)
        d["before"]["cr2"] = 0x1234000
    got, _ = judge("7.2.22/gp-noncanonical/x86-interrupt", known, qemu="10.0.2")
    assert got == OUTCOME_STALE


def test_the_manual_where_a_deviation_is_recorded_is_stale():
    def fix(d):  # the error code the manual gives: P=1 with RSVD
        d["delivered"]["error_code"] = 0x9
        d["entry"]["stack"][0] = 0x9
    got, note = judge("10.0.2/pf-rsvd/x86-interrupt", fix)
    assert got == OUTCOME_STALE and "0x8, not 0x9" in note


def test_one_of_two_recorded_deviations_seen_says_the_other_was_not():
    # ss-noncanonical on 10.0.2 with CR2 left alone: #GP recorded and seen, CR2 recorded, unseen.
    def keep_cr2(d):
        d["delivered"]["cr2"] = d["before"]["cr2"]
    got, note = judge("10.0.2/ss-noncanonical/x86-interrupt", keep_cr2)
    assert got == OUTCOME_DEVIATION and "recorded but not seen on TCG QEMU 10.0.2: writes CR2" in note


def test_a_deviation_unknown_to_the_record_is_a_failure_naming_what_was_delivered():
    def other_code(d):
        d["delivered"]["error_code"] = 0x18
        d["entry"]["stack"][0] = 0x18
    got, note = judge("10.0.2/gp-noncanonical/x86-interrupt", other_code)
    assert got == OUTCOME_FAIL and "error code 0x18" in note


def test_a_deviation_on_kvm_is_a_failure():
    got, _ = judge("10.0.2/pf-rsvd/x86-interrupt", lambda d: d.update(accel="kvm"))
    assert got == OUTCOME_FAIL


def test_deviation_json_is_plain():
    data = json.loads(json.dumps([d.to_json() for d in DEVIATIONS]))
    assert all(d["cause"] and d["measured"] for d in data)


def test_scenario_lists_its_deviations():
    assert get("ss-noncanonical").deviations == deviations.for_scenario("ss-noncanonical")
    assert len(get("ss-noncanonical").deviations) == 2
    assert isinstance(get("np").deviations[0], Deviation)


def fire_result(key: str, mutate=None, accel: str | None = None):
    from lab.runs.fire import FireResult

    data = copy.deepcopy(RECORDED[key])
    if mutate:
        mutate(data)
    if accel:
        data["accel"] = accel
    obs = FireObservation(**data)
    s = get(obs.scenario)
    checks = run(obs, s)
    return FireResult(s, obs, checks, *outcome(obs, s, checks), 0.0)


def _manual_pf_rsvd(d):
    d["delivered"]["error_code"] = 0x9
    d["entry"]["stack"][0] = 0x9


def test_soak_lists_a_recorded_deviation_as_a_divergence_not_an_agreement():
    from lab.scripts.soak import compare

    tcg = fire_result("10.0.2/pf-rsvd/x86-interrupt")
    kvm = fire_result("10.0.2/pf-rsvd/x86-interrupt", _manual_pf_rsvd, accel="kvm")
    agree, divergences, _ = compare([tcg], [kvm])
    assert [(d["check"], d["tcg"], d["kvm"], d["recorded"]) for d in divergences] == [
        ("fire.error-code", "FAIL", "PASS", True)]
    assert divergences[0]["tcg_backend"] == "tcg/10.0.2" and "mmu_translate" in divergences[0]["note"]


def test_soak_marks_an_unexplained_divergence():
    from lab.scripts.soak import compare

    tcg = fire_result("10.0.2/de/x86-interrupt", lambda d: d["entry"].update(cr2=d["before"]["cr2"] ^ 0x1000))
    kvm = fire_result("10.0.2/de/x86-interrupt", accel="kvm")
    _, divergences, _ = compare([tcg], [kvm])
    assert [(d["check"], d["recorded"]) for d in divergences] == [("fire.cr2", False)]
