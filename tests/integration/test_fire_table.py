"""`lab fire`'s terminal table: a header row above the one line per scenario."""

from __future__ import annotations

from labtest import lab_cli


def test_lab_fire_prints_a_header_row_above_its_lines(kernel):
    """`lab fire`'s one line per scenario has its column names above it, at 80 columns."""
    r = lab_cli("fire", "de", "ud", "--kernel", str(kernel), env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(i for i, l in enumerate(lines) if l.split()[:3] == ["outcome", "scenario", "vec"])
    assert lines[header + 1].split()[:2] == ["PASS", "de"] and lines[header + 2].split()[:2] == ["PASS", "ud"]
    assert all(len(l) <= 80 for l in lines)
