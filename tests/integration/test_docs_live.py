"""The two reference pages that need live VMs (docs/reference/claims.md, matrix.md) against a
run now: the same claims with the same verdicts, the same cells for every backend both have.
Timings, addresses and evidence wording are not compared."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labtest import lab_cli

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


def _rows(markdown: str) -> list[list[str]]:
    """Every Markdown table row, split into cells (escaped pipes kept inside their cell)."""
    out = []
    for line in markdown.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s|:-]+\|$", line):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            out.append([c.strip() for c in cells])
    return out


def verdicts(markdown: str) -> dict[str, str]:
    """claim id -> holds / holds only if / refuted / not measured, from `lab claims --markdown`."""
    out, column = {}, None
    for cells in _rows(markdown):
        if cells[0] == "claim":
            column = cells.index("verdict")
        elif column is not None:
            words = cells[column]
            out[cells[0]] = "holds only if" if words.startswith("holds only") else words
    return out


def fire_cells(markdown: str) -> dict[tuple[str, str], str]:
    """(scenario, backend) -> cell of the first table of `lab matrix --markdown`."""
    out, backends = {}, None
    for cells in _rows(markdown):
        if cells[0] == "scenario":
            backends = cells[1:]
        elif cells[0] == "scenarios":
            break
        elif backends:
            out.update({(cells[0], b): c for b, c in zip(backends, cells[1:])})
    return out


def test_the_readers_read_the_committed_pages():
    claims = verdicts((REFERENCE / "claims.md").read_text())
    assert claims["s000-frame-ss-rsp"] == "refuted" and claims["s000-df-on-delivery"] == "holds only if"
    assert len(claims) > 40
    cells = fire_cells((REFERENCE / "matrix.md").read_text())
    assert cells[("db-int1", "TCG QEMU 7.2.22")] == "DEVIATION #UD"
    assert cells[("db-int1", "TCG QEMU 10.0.2")] == "PASS"


def test_the_claims_page_has_this_runs_verdicts(kernel):
    committed = (REFERENCE / "claims.md").read_text()
    r = lab_cli("claims", "--kernel", str(kernel), "--markdown", timeout=600)
    assert r.returncode in (0, 1), r.stderr
    trials = re.search(r"^Kernel trials on: (.*?);", r.stdout, re.M).group(1)
    if trials != re.search(r"^Kernel trials on: (.*?);", committed, re.M).group(1):
        pytest.skip(f"this host's trial backends ({trials}) are not the page's")
    live, page = verdicts(r.stdout), verdicts(committed)
    assert set(page) <= set(live), sorted(set(page) - set(live))
    differ = {c: (page[c], live[c]) for c in page if page[c] != live[c]}
    assert not differ, f"docs/reference/claims.md (page, run): {differ}"


@pytest.mark.exclusive
def test_the_deviation_table_has_this_runs_cells(kernel):
    r = lab_cli("matrix", "--kernel", str(kernel), "--markdown", timeout=1800)
    assert r.returncode in (0, 1), r.stderr
    live, page = fire_cells(r.stdout), fire_cells((REFERENCE / "matrix.md").read_text())
    common = {k for k in page if k in live}
    assert common, f"no backend in common: run {sorted({b for _, b in live})}"
    assert {s for s, _ in page} == {s for s, _ in live}, "the scenarios differ"
    differ = {k: (page[k], live[k]) for k in sorted(common) if page[k] != live[k]}
    assert not differ, f"docs/reference/matrix.md (page, run): {differ}"
