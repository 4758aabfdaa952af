"""`fire.frame-type` on the real kernel: its three handler styles read the frame through three
types (DWARF). The tutorial stub's `TutorialFrame` is read from the stub's RSP after fifteen
pushes, so its `rip` is the interrupted RAX: FAIL. The x86-interrupt handlers' InterruptFrame and
the stub's TrapFrame are the controls: PASS."""

from __future__ import annotations

import json

import pytest

from labtest import lab_cli


def frame_type(kernel, style: str, scenario: str = "pf-write"):
    r = lab_cli("fire", scenario, "--kernel", str(kernel), "--style", style, "--observer", "gdb", "--json",
                timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    (run,) = json.loads(r.stdout)
    (check,) = [c for c in run["checks"] if c["id"] == "fire.frame-type"]
    return r.returncode, run, check


def test_the_tutorial_stub_reads_a_saved_register_as_rip(kernel):
    code, run, check = frame_type(kernel, "tutorial")
    assert (code, run["outcome"], check["verdict"]) == (1, "FAIL", "FAIL"), check
    first = check["evidence"][0]
    assert first.startswith("TutorialFrame.rip (offset 0) reads ")
    assert "the interrupted RAX (this fire's sentinel)" in first
    obs = run["observation"]
    assert int(first.split(" reads ")[1].split()[0], 16) == obs["sentinels"]["rax"]
    cpu_rip = obs["entry"]["stack"][1]  # the CPU's frame above the error code
    assert f"the CPU pushed RIP {cpu_rip:#x}" in first
    assert obs["frame_type"]["reader"]["function"] == "lab_tutorial_dispatch"


@pytest.mark.parametrize("style, reader, interrupt_abi", [
    ("x86-interrupt", "isr_pf", True), ("stub", "trap_dispatch", False)])
def test_the_other_styles_read_the_cpus_frame(kernel, style, reader, interrupt_abi):
    code, run, check = frame_type(kernel, style)
    assert (code, check["verdict"]) == (0, "PASS"), check
    ft = run["observation"]["frame_type"]
    assert (ft["reader"]["function"], ft["reader"]["interrupt_abi"]) == (reader, interrupt_abi)
    rip = next(m for m in ft["members"] if m["word"] == "rip")
    assert rip["value"] == run["observation"]["entry"]["stack"][1]


def test_without_an_error_code_the_frame_starts_at_rsp(kernel):
    code, run, check = frame_type(kernel, "stub", "ud")
    assert (code, check["verdict"]) == (0, "PASS"), check
    ft = run["observation"]["frame_type"]
    assert ft["base"] == ft["entry_rsp"]


def test_the_guest_observer_says_how_to_get_it(kernel):
    r = lab_cli("fire", "pf-write", "--kernel", str(kernel), "--style", "tutorial", "--json", timeout=120)
    (run,) = json.loads(r.stdout)
    (check,) = [c for c in run["checks"] if c["id"] == "fire.frame-type"]
    assert check["verdict"] == "SKIP" and "--observer gdb" in check["evidence"][0]


def test_an_agnostic_fire_judges_the_frame_type_of_any_kernel_with_dwarf(kernel):
    """`lab fire --agnostic` knows nothing of the lab kernel: the DWARF of the ELF and the live IDT
    are all it reads. `lab.style=` puts the exception gates in one style before `lab_ready`."""
    def run(style: str):
        r = lab_cli("fire", "--agnostic", "pf", "--kernel", str(kernel), "--at", "lab_ready",
                    "--append", f"lab.style={style}", "--json", timeout=120)
        assert "Traceback" not in r.stderr, r.stderr
        (result,) = json.loads(r.stdout)["results"]
        checks = {c["id"]: c for c in result["checks"]}
        return r.returncode, checks["inject.frame-type"], checks["inject.restored"]

    code, frame_type, restored = run("tutorial")
    assert (code, frame_type["verdict"]) == (1, "FAIL"), frame_type
    assert frame_type["evidence"][0].startswith("TutorialFrame.rip (offset 0) reads ")
    assert "the interrupted RAX" in frame_type["evidence"][0]
    assert restored["verdict"] == "PASS"  # the stub was stepped, and the kernel never noticed
    code, frame_type, restored = run("stub")
    assert (code, frame_type["verdict"], restored["verdict"]) == (0, "PASS", "PASS"), frame_type
    assert "TrapFrame via trap_dispatch(frame)" in frame_type["evidence"][0]
