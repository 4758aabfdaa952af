"""The justfile's interactive recipes pass their flags through to `lab` as arguments (`just
--dry-run` prints each recipe's command with its arguments)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JUST = shutil.which("just")


@pytest.mark.skipif(JUST is None, reason="just is not installed (lab/setup.sh installs it)")
@pytest.mark.parametrize("recipe, args", [
    ("boot", ["--kernel", "/k/x", "--profile", "kvm"]),
    ("debug", ["--kernel", "/k/x", "--at", "isr_gp"]),
    ("attach", ["/tmp/s/gdb.sock", "--kernel", "/k/x"]),
    ("replay", ["recordings/df-no-ist", "-ex", "lab-chain"]),
])
def test_recipes_pass_flags_through(recipe, args):
    r = subprocess.run([JUST, "--justfile", str(REPO / "justfile"), "--dry-run", recipe, *args],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    # set positional-arguments: the command gets "$@", and just echoes the arguments' values
    assert "lab " in r.stderr and '"$@"' in r.stderr, r.stderr


@pytest.mark.skipif(JUST is None, reason="just is not installed (lab/setup.sh installs it)")
def test_boot_runs_with_its_flags(tmp_path):
    """`just boot --kernel MISSING` reaches `lab boot` with the flag: its one-line error names the file."""
    r = subprocess.run([JUST, "--justfile", str(REPO / "justfile"), "boot", "--kernel", str(tmp_path / "nope")],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode != 0 and str(tmp_path / "nope") in r.stderr


def test_list_fits_80_columns():
    """`just --list` (each recipe's doc comment) fits an 80-column terminal. `just` is a test
    dependency (PyPI rust-just), so this test requires it rather than skipping."""
    assert JUST is not None, "just is not installed (pip install rust-just)"
    r = subprocess.run([JUST, "--justfile", str(REPO / "justfile"), "--list"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    wide = [line for line in r.stdout.splitlines() if len(line) > 80]
    assert not wide, wide
    assert "docs" in r.stdout and "docs-build" in r.stdout
