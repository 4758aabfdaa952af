"""`lab inspect --update-baseline FILE` / `--baseline FILE` on tiny kernels (tests/integration/
tinykernels.py) under real QEMU and gdb: a kernel differing in one gate is the FAIL
baseline.drift naming the vector (exit 1), a rebuild that only moves code is none (exit 0), a
waiver accepts the drift, and a baseline that cannot be read is one line, exit 2."""

from __future__ import annotations

import dataclasses
import json

import pytest

from labtest import lab_cli
from tinykernels import STOP, Gate, TinySpec, tiny_kernel

HEALTHY = TinySpec()


def _inspect(tmp_path, name: str, spec: TinySpec, *args: str, cwd=None):
    elf = tiny_kernel(tmp_path, name, spec)
    return lab_cli("inspect", "--kernel", str(elf), "--at", STOP, *args, timeout=60, cwd=cwd or tmp_path)


@pytest.fixture
def baseline(tmp_path):
    """The healthy tiny kernel's baseline file, written by --update-baseline."""
    path = tmp_path / "arch.json"
    r = _inspect(tmp_path, "base", HEALTHY, "--update-baseline", str(path))
    assert r.returncode == 0, r.stderr
    assert f"baseline written to {path}" in r.stderr
    st = json.loads(path.read_text())
    assert st["idt"]["8"] == {"dpl": 0, "handler": "tiny_isr", "ist": 1, "mnemonic": "#DF",
                              "selector": "0x0008", "type": "interrupt"}
    assert st["tss"]["ist1"] == {"align": 16, "size": 4096, "top": "df_stack"}
    assert st["ist_map"] == {"ist1": {"stack": "df_stack", "vectors": [8]},
                             "ist2": {"stack": "nmi_stack", "vectors": [2]}}
    assert st["gdt"]["0x0008"] == {"present": True, "role": "kernel code 64-bit"}
    return path


def _drift(r) -> dict:
    return {c["id"]: c for c in json.loads(r.stdout)["checks"]}["baseline.drift"]


def _inspect_env(tmp_path, name, spec, *args, env):
    elf = tiny_kernel(tmp_path, name, spec)
    return lab_cli("inspect", "--kernel", str(elf), "--at", STOP, *args, timeout=60, cwd=tmp_path, env=env)


def test_one_gate_changed_is_a_drift_fail_naming_the_vector(tmp_path, baseline):
    summary = tmp_path / "step-summary.md"  # as GitHub Actions names it
    r = _inspect_env(tmp_path, "df-ist0", HEALTHY.with_gates(v8=Gate(ist=0)), "--baseline", str(baseline), "--json",
                     env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.returncode == 1, r.stderr
    md = summary.read_text()
    assert "| FAIL | `baseline.drift` |" in md and "```\nvector 8 #DF: IST 1 -> 0 (tiny_isr)\n" in md, md
    c = _drift(r)
    assert c["verdict"] == "FAIL", c
    assert "vector 8 #DF: IST 1 -> 0 (tiny_isr)" in c["evidence"], c["evidence"]
    failed = [x["id"] for x in json.loads(r.stdout)["checks"] if x["verdict"] == "FAIL"]
    assert failed == ["baseline.drift"]  # #DF on IST 0 alone is a WARN: the drift is the FAIL


def test_a_rebuild_that_only_moves_code_is_no_drift(tmp_path, baseline):
    moved = dataclasses.replace(HEALTHY, pad=0x1230)
    r = _inspect(tmp_path, "moved", moved, "--baseline", str(baseline), "--json")
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]
    assert _drift(r)["verdict"] == "PASS"
    before = _handlers(_inspect(tmp_path, "again", HEALTHY, "--json"))
    assert _handlers(r)[8] == before[8] + 0x1230  # the code did move


def _handlers(r) -> dict[int, int]:
    return {row["vector"]: row["handler"] for row in json.loads(r.stdout)["idt"]}


def test_a_waiver_accepts_the_drift_and_update_takes_the_new_state(tmp_path, baseline):
    (tmp_path / "lab.toml").write_text('[waivers]\n"baseline.drift" = "#DF moves to the kernel stack"\n')
    changed = HEALTHY.with_gates(v8=Gate(ist=0))
    r = _inspect(tmp_path, "df-ist0", changed, "--baseline", str(baseline), "--json")
    assert r.returncode == 0, r.stderr
    assert _drift(r)["verdict"] == "WAIVED"
    (tmp_path / "lab.toml").unlink()
    assert _inspect(tmp_path, "df-ist0", changed, "--update-baseline", str(baseline)).returncode == 0
    r = _inspect(tmp_path, "df-ist0", changed, "--baseline", str(baseline), "--json")
    assert r.returncode == 0 and _drift(r)["verdict"] == "PASS", r.stderr


@pytest.mark.parametrize("case, text, words", [
    ("missing", None, "No such file"),
    ("corrupt", '{"format": "lab-baseline 1", "idt": ', "not JSON"),
    ("not-a-baseline", '{"checks": []}', "not a lab baseline"),
    ("unreadable", b"\xff\xfe", "not UTF-8"),
])
def test_a_baseline_that_cannot_be_read_is_one_line_exit_2(tmp_path, case, text, words):
    path = tmp_path / "arch.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    r = _inspect(tmp_path, "tiny", HEALTHY, "--baseline", str(path))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == r.stderr.strip().splitlines()[0] and words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_the_pytest_fixture_writes_compares_and_updates_the_tests_baseline(tmp_path):
    """`lab_baseline` in a kernel developer's own tests (the installed plugin): the first run
    writes <module>/<test>.json and fails (review it), the next passes, a changed gate fails
    naming the vector, and --lab-update-baseline takes the new state."""
    import os
    import subprocess
    import sys

    elf = tiny_kernel(tmp_path, "tiny", HEALTHY)
    (tmp_path / "lab.toml").write_text(f'[kernel]\npath = "{elf}"\n[stop]\nat = "{STOP}"\n')
    (tmp_path / "test_k.py").write_text("def test_arch(lab_inspection, lab_baseline):\n"
                                        "    lab_baseline.check(lab_inspection)\n")
    path = tmp_path / "test_k" / "test_arch.json"

    def pytest_run(*args):
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0", *args,
                               str(tmp_path / "test_k.py")], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})

    r = pytest_run()
    assert r.returncode == 1 and f"no baseline yet: wrote {path}" in r.stdout, r.stdout[-3000:]
    assert json.loads(path.read_text())["idt"]["8"]["ist"] == 1
    assert pytest_run().returncode == 0
    tiny_kernel(tmp_path, "tiny", HEALTHY.with_gates(v8=Gate(ist=0)))
    r = pytest_run()
    assert r.returncode == 1 and "vector 8 #DF: IST 1 -> 0 (tiny_isr)" in r.stdout, r.stdout[-3000:]
    assert pytest_run("--lab-update-baseline").returncode == 0
    assert json.loads(path.read_text())["idt"]["8"]["ist"] == 0
    r = pytest_run()
    assert r.returncode == 0, r.stdout[-3000:]


def test_every_cpus_stacks_are_in_the_baseline(kernel, tmp_path):
    """The lab kernel on 2 vCPUs: CPU 1's TSS stacks and its own GDT's TSS descriptor are
    recorded; the same machine is no drift, and one where CPU 1 is gone names its stacks."""
    path = tmp_path / "smp.json"
    r = lab_cli("inspect", "--kernel", str(kernel), "--cpus", "2", "--update-baseline", str(path), timeout=120)
    assert r.returncode == 0, r.stderr
    st = json.loads(path.read_text())
    assert {"cpu1 rsp0", "cpu1 ist1"} <= set(st["cpu_tss"]), st.get("cpu_tss")
    assert st["cpu_gdt"]["cpu1 0x0028"]["role"] != st["gdt"]["0x0028"]["role"]  # its own TSS
    r = lab_cli("inspect", "--kernel", str(kernel), "--cpus", "2", "--baseline", str(path), "--json", timeout=120)
    assert r.returncode == 0 and _drift(r)["verdict"] == "PASS", r.stderr
    r = lab_cli("inspect", "--kernel", str(kernel), "--baseline", str(path), "--json", timeout=120)
    assert r.returncode == 1, r.stderr
    assert any(e.startswith("CPU 1 TSS IST1: removed") for e in _drift(r)["evidence"]), _drift(r)["evidence"]
