"""Many CPUs: `--cpus N` is QEMU's -smp N, gdb's threads are the vCPUs, and inspect reads and
checks every CPU. On Debian's Linux with 4 CPUs (each CPU its own TSS and IST stacks in its
cpu_entry_area, its own GS base), then the same live machine broken through gdb: two CPUs
given one NMI stack, two CPUs one GS base. On the lab kernel, which starts its APs itself."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from lab.api import boot
from lab.checks.base import Verdict
from lab.host import profiles
from lab.machine.session import Session, Stop
from lab.runs.inspect import checked_report
from lab.target.cpus import read_machine
from lab.x86.tss import TSS
from labtest import lab_cli

LINUX_APPEND = "console=ttyS0 nokaslr"
SMP_CHECKS = {"smp.started", "smp.tr-own-tss", "smp.stacks-distinct", "smp.stacks-mapped",
              "smp.idt-shared", "smp.gs-distinct"}


def _report(s: Session, kernel):
    state, cpus = read_machine(s.gdb)
    return checked_report(state, s.symbols, kernel, "tcg", "panic", cpus=cpus)


def test_linux_with_four_cpus_has_per_cpu_tss_and_stacks_and_a_broken_one_fails(debian_kernel):
    profile = profiles.load("tcg").customized(cpus=4)
    with Session(debian_kernel, profile, restore=False, append=LINUX_APPEND, ready_timeout=120) as s:
        s.boot_to(Stop(when="Kernel panic"))
        report = _report(s, debian_kernel)
        checks = {c.id: c for c in report.checks}
        assert [c.cpu.index for c in report.cpus] == [0, 1, 2, 3]
        assert all(c.cpu.long_mode for c in report.cpus)
        assert len({c.cpu.cpu.tr.base for c in report.cpus}) == 4  # a TSS per CPU
        assert len({c.view.tss.ist_slot(2) for c in report.cpus}) == 4  # an NMI stack per CPU
        assert len({c.cpu.gs_base for c in report.cpus}) == 4
        for id in SMP_CHECKS - {"smp.stacks-mapped"}:
            assert checks[id].verdict is Verdict.PASS, (id, checks[id].evidence)
        # each CPU's #VC stack (IST5) is unmapped outside SEV-ES, as on the boot CPU: one fact,
        # one WARN (tss.stacks-mapped's, CPU 0); smp.stacks-mapped names the APs once, as INFO
        mapped = checks["smp.stacks-mapped"]
        assert mapped.verdict is Verdict.INFO, mapped.evidence
        assert mapped.evidence == ("CPUs 1, 2, 3: IST5 not mapped, as on CPU 0: graded once, by "
                                   "tss.stacks-mapped (WARN)",), mapped.evidence
        assert [c.id for c in report.checks if c.verdict is Verdict.WARN] == ["tss.stacks-mapped"]
        assert report.to_json()["shared"] == {"idtr": "shared", "gdtr": "per-cpu", "tss": "per-cpu",
                                              "cr3": "shared", "gs_base": "per-cpu"}

        # break it: CPU 2's NMI stack becomes CPU 1's, CPU 3's GS base CPU 0's
        one, two, three = report.cpus[1], report.cpus[2], report.cpus[3]
        s.gdb.select_thread(two.cpu.thread)
        s.gdb.write_memory(two.cpu.cpu.tr.base + TSS.offset("ist2"), one.view.tss.ist_slot(2).to_bytes(8, "little"))
        s.gdb.select_thread(three.cpu.thread)
        s.gdb.write_registers({"gs_base": report.cpus[0].cpu.gs_base})
        broken = {c.id: c for c in _report(s, debian_kernel).checks}
    assert broken["smp.stacks-distinct"].verdict is Verdict.FAIL
    assert "CPU 1 IST2 (vector 2 NMI) and CPU 2 IST2 (vector 2 NMI) all point to" in broken["smp.stacks-distinct"].evidence[0]
    assert broken["smp.gs-distinct"].verdict is Verdict.FAIL
    assert broken["smp.gs-distinct"].evidence[0].startswith("CPU 0, CPU 3 share the GS base")


def test_lab_kernel_starts_its_aps_each_with_its_own_tss_stacks_and_gs(kernel):
    """`--cpus 4`: the lab kernel starts CPUs 1-3 (INIT-SIPI-SIPI, kernel/src/smp) before its
    ready marker; each runs in long mode on its own GDT, TSS, RSP0/IST stacks and GS base, with
    the boot CPU's IDT; every check passes; exit 0."""
    r = lab_cli("inspect", "--kernel", str(kernel), "--cpus", "4", "--json", timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]
    report = json.loads(r.stdout)
    checks = {c["id"]: c for c in report["checks"]}
    assert [c["cpu"] for c in report["cpus"]] == [0, 1, 2, 3]
    assert all(c["long_mode"] and c["tr"]["selector"] == 0x28 for c in report["cpus"])
    assert len({c["tr"]["base"] for c in report["cpus"]}) == 4
    assert len({c["gdtr"]["base"] for c in report["cpus"]}) == 4
    assert len({c["idtr"]["base"] for c in report["cpus"]}) == 1
    assert report["shared"] == {"idtr": "shared", "gdtr": "per-cpu", "tss": "per-cpu", "cr3": "shared",
                                "gs_base": "per-cpu"}
    assert SMP_CHECKS | {"smp.percpu-own", "smp.stacks-declared"} <= set(checks)
    assert all(c["verdict"] == "PASS" for c in checks.values()), {i: c["evidence"] for i, c in checks.items()
                                                                  if c["verdict"] != "PASS"}


def test_lab_kernel_gs_bases_swapped_live_fail_the_lab_kernel_tier_only(kernel):
    """CPU 1's and CPU 2's GS bases swapped through gdb: still distinct (the generic tier
    passes), but each CPU now finds the other's area: smp.percpu-own FAILs."""
    from lab.checks.smp_labkernel import percpu_bytes

    with Session(kernel, profiles.load("tcg").customized(cpus=3)) as s:
        s.boot_to(Stop())
        size = percpu_bytes(s.symbols)
        state, cpus = read_machine(s.gdb, size)
        before = {c.id: c for c in checked_report(state, s.symbols, kernel, "tcg", "ready", cpus=cpus).checks}
        one, two = cpus[1], cpus[2]
        for c, other in ((one, two), (two, one)):
            s.gdb.select_thread(c.thread)
            s.gdb.write_registers({"gs_base": other.gs_base})
        state, cpus = read_machine(s.gdb, size)
        after = {c.id: c for c in checked_report(state, s.symbols, kernel, "tcg", "ready", cpus=cpus).checks}
    assert before["smp.percpu-own"].verdict is Verdict.PASS, before["smp.percpu-own"].evidence
    assert after["smp.gs-distinct"].verdict is Verdict.PASS
    assert after["smp.percpu-own"].verdict is Verdict.FAIL
    assert after["smp.percpu-own"].evidence[0].startswith(f"CPU 1: GS base {two.gs_base:#x} is CPU 2's area (AP_PERCPU[1])")


def test_the_aps_start_on_the_bios_path_too_and_one_cpu_starts_none(kernel):
    """The same on the BIOS disk image; and with one vCPU no `smp` line at all (the 1-CPU boot
    is unchanged)."""
    with Session(kernel, profiles.load("tcg").customized(cpus=2).with_boot("bios"), restore=False) as s:
        s.boot_to(Stop())
        assert "smp cpus=2 online=2 " in s.serial.tail(1 << 16)
        _, cpus = read_machine(s.gdb)
        assert [c.long_mode for c in cpus] == [True, True]
    with Session(kernel, profiles.load("tcg"), restore=False) as s:
        s.boot_to(Stop())
        assert "smp " not in s.serial.tail(1 << 16)
        assert read_machine(s.gdb)[1] == []


@pytest.mark.parametrize("columns", [80, 120])
def test_inspect_cpus_in_a_terminal(kernel, tmp_path, columns):
    """As a person sees it: `lab inspect --cpus 2` in a tmux window `columns` wide (a private
    tmux server; the command signals a tmux channel when it ends: no polling)."""
    sock = str(tmp_path / "tmux.sock")
    tmux = ["tmux", "-S", sock]
    argv = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "lab", "inspect", "--kernel", str(kernel), "--cpus", "2"))
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    subprocess.run([*tmux, "new-session", "-d", "-x", str(columns), "-y", "50", "-s", "smp"], check=True, env=env)
    try:
        subprocess.run([*tmux, "set-option", "-g", "history-limit", "5000"], check=True)
        subprocess.run([*tmux, "send-keys", "-t", "smp", f"{argv}; echo EXIT=$?; tmux -S {sock} wait-for -S done", "Enter"],
                       check=True)
        subprocess.run([*tmux, "wait-for", "done"], check=True, timeout=120)
        screen = subprocess.run([*tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", "smp"], check=True,
                                capture_output=True, text=True).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    assert "EXIT=0" in screen, screen[-3000:]
    lines = [line for line in screen.splitlines() if "-m lab inspect" not in line]  # not the typed command
    assert "CPUs (2; idtr shared, gdtr per-cpu, tss per-cpu" in " ".join(screen.split()), screen[-3000:]
    assert any("PASS" in line and "smp.started" in line for line in lines), screen[-3000:]
    assert max(len(line) for line in lines) <= columns


def test_api_boot_cpus(kernel):
    with boot(kernel, cpus=2) as vm:
        report = vm.inspect()
    assert [c.cpu.index for c in report.cpus] == [0, 1]
    assert report.check("smp.started").verdict is Verdict.PASS
    assert not report.failed
