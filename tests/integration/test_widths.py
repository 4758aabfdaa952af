"""Every command's output fits the terminal it is printed on: piped with COLUMNS=80 and 120,
and on a real terminal (tmux) 80 and 120 columns wide, no line is longer; progress goes to a
terminal's stderr only, never into a pipe; `lab ... | head -1` ends quietly with SIGPIPE's
status."""

from __future__ import annotations

import re

import dataclasses
import os
import shutil
import subprocess
import sys

import pytest
from rich.cells import cell_len

from labtest import lab_cli
from tinykernels import STOP, Gate, TinySpec, tiny_kernel
from tmuxterm import Tmux

pytestmark = pytest.mark.integration

WIDTHS = (80, 120)
#: Each command's arguments (the kernel is added); at least one of every command that prints.
COMMANDS = {
    "inspect": ["inspect"],
    "fire": ["fire", "pf-write", "ud", "nmi", "gp-msr", "--style", "both"],
    "fire-panels": ["fire", "pf-write", "--style", "stub", "--panels"],
    "probe": ["probe", "double-fault", "df-no-ist"],
    "timer": ["timer", "--rate", "100", "--window", "200"],
    "tasks": ["tasks"], "tasks-cpu": ["tasks", "--cpus", "4", "--cpu", "1"], "ring3": ["ring3"], "pcpu": ["pcpu"],
    "frame": ["frame", "--at", "isr_pf", "--shell", "user run kread"],
    "translate": ["translate", "lab_ready", "0x0"],
    "claims": ["claims"], "claims-all": ["claims", "--all"],
}
LISTINGS = {"scenarios": ["scenarios"], "probes": ["probes"], "profiles": ["profiles"], "qemus": ["qemus"]}


def too_long(lines: list[str], width: int) -> list[str]:
    return [l for l in lines if cell_len(l.rstrip()) > width]


@pytest.fixture(scope="module")
def outputs(kernel):
    """Every command run once per width, piped (COLUMNS set), stdout and stderr apart."""
    out = {}
    for width in WIDTHS:
        for name, args in {**COMMANDS, **LISTINGS}.items():
            argv = args + (["--kernel", str(kernel)] if name in COMMANDS else [])
            out[name, width] = lab_cli(*argv, env={"COLUMNS": str(width)}, timeout=600)
    return out


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", sorted({**COMMANDS, **LISTINGS}))
def test_piped_output_follows_columns(outputs, name, width):
    r = outputs[name, width]
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]
    lines = r.stdout.splitlines()
    assert lines and not too_long(lines, width), too_long(lines, width)
    assert r.stderr == "", r.stderr  # a pipe gets the result and nothing else


def test_compact_defaults(outputs):
    fire = outputs["fire", 80].stdout.splitlines()
    assert fire[0].split()[:3] == ["outcome", "scenario", "vec"]  # the header row
    assert len(fire) == 1 + 8 + 1  # the header, one line per scenario and style, the counts
    assert "stack at" in outputs["fire-panels", 80].stdout and "stack at" not in outputs["fire", 80].stdout
    claims, every = outputs["claims", 120].stdout, outputs["claims-all", 120].stdout
    assert "--all prints every claim" in claims and "holds only under a condition" in claims
    assert every.count("│ holds ") > claims.count("│ holds ")


def test_a_kernel_with_256_gates_is_grouped(tmp_path):
    """A tiny kernel with every vector present: the IDT table folds 32-255 into one row;
    --vectors prints exactly the vectors asked for."""
    spec = TinySpec(gates={**{v: Gate() for v in range(256)}, 8: Gate(ist=1), 2: Gate(ist=2)})
    elf = tiny_kernel(tmp_path, "all256", spec)
    r = lab_cli("inspect", "--kernel", str(elf), "--at", STOP, env={"COLUMNS": "80"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.search(r"│ ?32-255 ?│ ?x224 ", r.stdout) and not too_long(r.stdout.splitlines(), 80)
    assert "256 present" in r.stdout
    r = lab_cli("inspect", "--kernel", str(elf), "--at", STOP, "--vectors", "3,0x80-0x81",
                env={"COLUMNS": "80"}, timeout=120)
    idt = r.stdout.split("\nGDT", 1)[0].splitlines()
    rows = [l for l in idt if l.startswith("│") and "0x0008" in l]
    assert [l.split("│")[1].strip() for l in rows] == ["3", "128", "129"], r.stdout


@pytest.mark.parametrize("width", WIDTHS)
def test_on_a_terminal_every_line_fits_and_long_work_shows_progress(kernel, width):
    with Tmux(width) as term:
        for name in ("inspect", "fire", "scenarios", "probe", "claims"):
            argv = [sys.executable, "-m", "lab", *({**COMMANDS, **LISTINGS}[name])]
            if name in COMMANDS:
                argv += ["--kernel", str(kernel)]
            status, lines, raw = term.run(argv, env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
            assert status == 0, "\n".join(lines[-30:])
            assert lines and not too_long(lines, width), too_long(lines, width)
            if name == "probe":  # one step a probe
                assert "lab probe: double-fault" in raw and "lab probe: df-no-ist" in raw
                assert not any("lab probe: " in l for l in lines)
            if name == "claims":  # the progress display was drawn on the terminal, then erased
                assert "lab claims: fire" in raw and "lab claims: timer" in raw
                assert not any(f"lab claims: {step}" in l for l in lines for step in ("fire", "probe", "timer"))


def test_a_closed_pipe_is_not_a_failure():
    """The reader goes away before the lab writes: SIGPIPE's status (141), nothing on stderr."""
    p = subprocess.Popen([shutil.which("lab") or sys.executable, *([] if shutil.which("lab") else ["-m", "lab"]),
                          "scenarios", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 141 and err == b"", err
    r = subprocess.run("lab probes | head -1; echo \"${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash",
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.splitlines()[-1] in ("0", "141") and "Traceback" not in r.stderr, r
