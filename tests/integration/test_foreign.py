"""Kernels the lab did not build: a Debian Linux kernel (bzImage, no symbols), the lab kernel
stripped with a System.map beside it, the lab kernel's BIOS image as a raw disk, and the stop
conditions --at, --after and --when. Generic checks only need the live CPU state."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from lab.machine.session import Session
from labtest import lab_cli

LINUX_ARGS = ("--append", "console=ttyS0 nokaslr", "--ready-timeout", "60")


def _inspect_json(*args: str, status: int = 0) -> dict:
    r = lab_cli("inspect", *args, "--json", timeout=120)
    assert r.returncode == status, r.stderr + r.stdout[-2000:]
    return json.loads(r.stdout)


def _verdicts(report: dict) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in report["checks"]}


def test_debian_linux_generic_checks_and_its_unmapped_vc_stack(debian_kernel):
    """Linux 6.1 keeps its IDT, GDT and TSS in the cpu_entry_area and runs #DF, NMI, #DB and
    #MC on IST stacks: those invariants hold. The #VC gate (vector 29, AMD SEV-ES) names IST5,
    whose stack Linux maps only in an SEV-ES guest (cea_map_stacks), so the walk from CR3 finds
    no page below it: a WARN, not a FAIL, since QEMU says this VM has no SEV, and only an
    SEV-ES guest raises #VC. A healthy kernel: exit 0."""
    r = lab_cli("inspect", "--kernel", str(debian_kernel), *LINUX_ARGS, "--when", "Kernel panic",
                "--json", timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout[-3000:]
    report = json.loads(r.stdout)
    checks = {c["id"]: c for c in report["checks"]}
    verdicts = {i: c["verdict"] for i, c in checks.items()}
    assert verdicts.pop("idt.handler-symbol") == "SKIP"  # no symbols
    assert verdicts.pop("tss.stacks-mapped") == "WARN"
    assert verdicts.pop("idt.handler-mapped") == "PASS"  # 256 handlers walked from CR3
    assert verdicts and all(x == "PASS" for x in verdicts.values()), verdicts
    problem, fine = checks["tss.stacks-mapped"]["evidence"]
    assert problem.startswith("IST5 (vector 29 #VC)") and "is not mapped" in problem, problem
    assert "only an SEV-ES guest raises #VC" in problem and "SEV is not enabled" in problem, problem
    assert fine.startswith("top pages mapped writable: RSP0 -> "), fine
    assert report["sev"] == "SEV is not enabled"
    assert report["summary"]["FAIL"] == 0 and report["summary"]["WARN"] == 1
    assert not any(c["tier"] == "lab-kernel" for c in report["checks"])


def test_after_a_time(kernel):
    """--after: the lab kernel, stopped wherever it is one second in (idle in its shell): the
    tables are those it set up, whatever instruction the CPU was at."""
    report = _inspect_json("--kernel", str(kernel), "--after", "1")
    assert report["ready"] == "stopped after 1 s"
    assert all(c["verdict"] == "PASS" for c in report["checks"]), _verdicts(report)


@pytest.fixture
def stripped(kernel, tmp_path) -> tuple[Path, Path]:
    """The lab kernel without its symbol table, and its System.map (`nm -n`)."""
    elf, system_map = tmp_path / "labkernel-stripped", tmp_path / "System.map"
    subprocess.run(["strip", "-o", elf, kernel], check=True)
    system_map.write_text(subprocess.run(["nm", "-n", kernel], capture_output=True, text=True, check=True).stdout)
    return elf, system_map


def test_a_system_map_names_the_handlers_and_stacks(stripped):
    elf, system_map = stripped
    report = _inspect_json("--kernel", str(elf), "--symbols", str(system_map))
    v = _verdicts(report)
    assert v["idt.handler-symbol"] == "PASS" and v["idt.df-ist"] == "PASS"
    assert all(x in ("PASS", "SKIP") for x in v.values()), v
    assert any(row.get("symbol", "").startswith("isr_") for row in report["idt"]), report["idt"][:3]


def test_without_symbols_a_stripped_kernel_stops_at_an_address(kernel, stripped):
    from lab.target.symbols import Symbols

    ready = Symbols.from_elf(kernel).lookup("lab_ready").address
    elf, _ = stripped
    report = _inspect_json("--kernel", str(elf), "--at", hex(ready))
    assert f"({ready:#x})" in report["ready"]
    assert _verdicts(report)["idt.handler-symbol"] == "SKIP"
    assert _verdicts(report)["tss.stacks-mapped"] == "PASS"


def test_a_raw_disk_image_with_symbols_from_the_elf(kernel):
    from lab.host.bootpath import bios_image
    from lab.host.build import build_kernel

    build_kernel(quiet=True, boot="bios")
    report = _inspect_json("--image", str(bios_image(kernel)), "--kernel", str(kernel))
    assert "boot=bios" in report["ready"]
    assert all(c["verdict"] == "PASS" for c in report["checks"]), _verdicts(report)


def test_not_a_kernel(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 8)
    r = lab_cli("inspect", "--kernel", str(junk))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "not an ELF file, a Linux bzImage" in r.stderr


def test_a_32_bit_kernel_that_never_enters_long_mode(halting_kernel):
    r = lab_cli("inspect", "--kernel", str(halting_kernel), "--after", "0.3")
    assert r.returncode == 2, r.stderr
    assert "not in long mode" in r.stderr and "LMA clear" in r.stderr


def test_a_stop_that_never_comes_is_bounded(kernel):
    r = lab_cli("inspect", "--kernel", str(kernel), "--when", "NEVER-PRINTED", "--ready-timeout", "1")
    assert r.returncode == 3
    assert "timed out after 1 s waiting for the serial pattern 'NEVER-PRINTED'" in r.stderr


@pytest.mark.parametrize("args, needle", [
    (("--at", "no_such_symbol"), "'no_such_symbol' is neither an address nor a symbol"),
    (("--after", "1", "--when", "x"), "not allowed with argument"),
    (("--after", "-1"), "--after: needs a positive, finite number of seconds"),
    (("--when", "("), "not a regular expression"),
    (("--image", "/nonexistent.img"), "kernel not found: /nonexistent.img"),
])
def test_bad_stop_and_image_arguments(kernel, args, needle):
    r = lab_cli("inspect", "--kernel", str(kernel), *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr, r.stderr


def _fire_json(*args: str) -> dict:
    r = lab_cli("fire", *args, "--json", timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout[-3000:]
    return json.loads(r.stdout)


def test_agnostic_firing_on_the_lab_kernel(kernel):
    """The lab kernel, fired at without its harness: one instruction written at lab_ready."""
    report = _fire_json("all", "--agnostic", "--kernel", str(kernel))
    assert [r["injection"] for r in report["results"]] == ["de", "bp", "nmi", "ud", "gp", "pf"]
    assert all(r["outcome"] == "PASS" for r in report["results"]), report
    nmi = next(r for r in report["results"] if r["injection"] == "nmi")
    assert nmi["observation"]["gate"]["ist"] == 2  # the lab kernel's NMI gate: IST2


def test_agnostic_firing_on_debian_linux(debian_kernel):
    """A kernel with no idea the lab exists: every frame as the manual says, and the kernel
    restored (Linux's NMI gate also runs on an IST stack)."""
    report = _fire_json("all", "--agnostic", "--kernel", str(debian_kernel), *LINUX_ARGS, "--when", "Kernel panic")
    assert all(r["outcome"] == "PASS" for r in report["results"]), \
        [(r["injection"], [c["evidence"] for c in r["checks"] if c["verdict"] == "FAIL"]) for r in report["results"]]
    assert next(r for r in report["results"] if r["injection"] == "nmi")["observation"]["gate"]["ist"] > 0


def test_agnostic_firing_unknown_name(kernel):
    r = lab_cli("fire", "df", "--agnostic", "--kernel", str(kernel))
    assert r.returncode == 2 and "unknown injection 'df'" in r.stderr


def test_debug_a_bzimage_pauses_at_the_reset_vector(debian_kernel):
    """No symbols and no --at: gdb opens on the CPU as QEMU reset it, CS:IP = F000:FFF0."""
    r = lab_cli("debug", "--kernel", str(debian_kernel), "--batch", "-ex", "info registers rip cs", timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.search(r"rip\s+0xfff0\b", r.stdout) and re.search(r"cs\s+0xf000\b", r.stdout), r.stdout


def test_debug_names_handlers_from_a_system_map(stripped):
    elf, system_map = stripped
    r = lab_cli("debug", "--kernel", str(elf), "--symbols", str(system_map), "--at", "lab_ready",
                "--batch", "-ex", "lab-idt 8", timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.search(r"#DF\s.*isr_df", r.stdout), r.stdout


def test_fire_without_agnostic_refuses_another_kernel(debian_kernel):
    r = lab_cli("fire", "ud", "--kernel", str(debian_kernel))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "a Linux bzImage; `lab fire` needs the 64-bit x86-64 lab kernel; `lab fire --agnostic`" in r.stderr


def test_agnostic_firing_skips_a_vector_without_a_gate_and_runs_the_others(kernel, tcg, log_dir):
    """A kernel with no present gate for a vector: that injection is SKIP with the reason; every
    other injection still runs (the run is not aborted)."""
    from lab.runs.inject import inject_all
    from lab.scenarios.injections import INJECTIONS
    from lab.target.cpu import parse_info_registers
    from lab.x86.idt import GATE
    from lab.x86.vectors import DE

    with Session(kernel, tcg, log_dir=log_dir, restore=False) as s:
        s.boot_to_ready()
        idtr = parse_info_registers(s.gdb.monitor("info registers")).idtr
        s.gdb.write_memory(idtr.base + DE * GATE.size, bytes(GATE.size))  # #DE: no gate
        results = {r.injection.name: r for r in inject_all(s, list(INJECTIONS))}
    assert results["de"].outcome == "SKIP" and "no present gate" in results["de"].skipped
    assert all(r.outcome == "PASS" for n, r in results.items() if n != "de"), \
        {n: [c.id for c in r.checks if c.verdict.value == "FAIL"] for n, r in results.items()}


def test_a_repos_lab_toml_names_the_kernel_and_the_stop(kernel, tmp_path):
    """A kernel developer's repo: lab.toml says what to boot and where to stop; `lab inspect`
    from a subdirectory uses it, and a flag overrides it."""
    (tmp_path / "lab.toml").write_text(f'[kernel]\npath = "{kernel}"\n[stop]\nat = "lab_ready"\n'
                                       f'[vm]\nready_timeout = 20\n')
    sub = tmp_path / "src"
    sub.mkdir()
    r = lab_cli("inspect", "--json", cwd=sub)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["kernel"] == str(kernel) and "stopped at lab_ready" in report["ready"]
    # The flag wins; a demangled Rust path is a stop too. (Before the IDT is loaded the tables
    # are the boot ones, so checks may fail: exit 0 or 1, never a lab error.)
    r = lab_cli("inspect", "--json", "--at", "labkernel::arch::x86_64::idt::init", cwd=sub)
    assert r.returncode in (0, 1), r.stderr
    assert "stopped at labkernel::arch::x86_64::idt::init" in json.loads(r.stdout)["ready"]


def test_a_bad_lab_toml_is_one_line(tmp_path):
    (tmp_path / "lab.toml").write_text('[kernel]\npth = "k.elf"\n')
    r = lab_cli("inspect", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "unknown key kernel.pth" in r.stderr, r.stderr


def test_lab_toml_waivers_are_applied_and_an_unused_one_is_reported(debian_kernel, tmp_path):
    (tmp_path / "lab.toml").write_text(
        f'[kernel]\npath = "{debian_kernel}"\nappend = "console=ttyS0 nokaslr"\n'
        '[vm]\nready_timeout = 90\n[stop]\nwhen = "Kernel panic"\n'
        '[waivers]\n"tss.stacks-mapped" = "the #VC stack exists only in SEV-ES guests"\n'
        '"idt.df-ist" = "a waiver nothing needs"\n')
    r = lab_cli("inspect", "--json", cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    waived = {c["id"]: c for c in report["checks"] if c["verdict"] == "WAIVED"}
    assert set(waived) == {"tss.stacks-mapped"}
    assert any("the #VC stack exists only in SEV-ES guests" in e for e in waived["tss.stacks-mapped"]["evidence"])
    assert report["unused_waivers"] == {"idt.df-ist": "a waiver nothing needs"}
