"""The same kernel on both boot paths: Multiboot (`-kernel`) and the BIOS disk image that
`cargo bootimage` makes (SeaBIOS, then bootloader 0.9). After entry everything is shared, so
every check the lab runs must come out the same on both. These tests boot (restore=False):
booting is what they are about."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from lab.host.bootpath import BIOS, BOOT_PATHS, MULTIBOOT
from lab.host.build import build_kernel
from lab.checks.base import Verdict
from lab.checks.probe import run as probe_checks
from lab.runs.fire import fire_in_session
from lab.runs.inspect import inspect
from lab.machine.qemu import ExitStatus, base_argv
from lab.experiments.probe import run_probe
from lab.scenarios.exceptions import CATALOG as FIRES
from lab.scenarios.probes import CATALOG as PROBES
from lab.scenarios.deviations import applicable
from lab.host.qemus import parse_version_text

from labtest import SharedVM, lab_cli

#: Exceptions with and without an error code, a trap, an IST vector, a fault fixed up by
#: the kernel and a software interrupt: one of each way a frame can differ.
FIRE_SET = ("de", "bp", "nmi", "ud", "gp-nogate", "np-seg", "pf-write", "int")
PROBE_SET = ("double-fault", "df-no-ist", "idt-limit0")


@pytest.fixture(scope="session")
def bios_kernel():
    """The lab kernel's ELF, with its BIOS image beside it (cargo bootimage)."""
    return build_kernel(quiet=True, boot=BIOS)


@pytest.fixture(params=BOOT_PATHS)
def booted(request, bios_kernel, tcg):
    """(kernel, profile) for one boot path."""
    return bios_kernel, tcg.with_boot(request.param)


def test_inspect_passes_and_agrees_on_both_paths(bios_kernel, tcg, tmp_path):
    reports = {boot: inspect(bios_kernel, tcg.with_boot(boot), log_dir=tmp_path / boot, restore=False)
               for boot in BOOT_PATHS}
    for boot, report in reports.items():
        assert f"boot={boot}" in report.ready_line, report.ready_line
        assert report.failed == [], (boot, [c.evidence for c in report.failed])
        assert all(c.verdict is Verdict.PASS for c in report.checks), boot
    multiboot, bios = ({c.id: c.evidence for c in reports[b].checks} for b in (MULTIBOOT, BIOS))
    # Same kernel at the same addresses: the same checks with the same evidence, word for word.
    assert multiboot == bios


@pytest.fixture(scope="module")
def shared(bios_kernel, tcg, tmp_path_factory):
    vms = {boot: SharedVM(bios_kernel, tcg.with_boot(boot), tmp_path_factory.mktemp(f"fire-{boot}"),
                          debug_log="int", restore=False)
           for boot in BOOT_PATHS}
    yield vms
    for vm in vms.values():
        vm.discard()


FIRE_PLAN = [(boot, s) for boot in BOOT_PATHS for s in FIRES if s.name in FIRE_SET]


@pytest.mark.parametrize("boot, scenario", FIRE_PLAN, ids=[f"{b}-{s.name}" for b, s in FIRE_PLAN])
def test_fire_on_both_paths(shared, boot, scenario):
    vm = shared[boot]
    try:
        results = fire_in_session(vm.get(), [(scenario, "stub"), (scenario, "x86-interrupt")])
    except BaseException:
        vm.discard()
        raise
    for r in results:
        failed = {c.id: c.evidence for c in r.checks if c.verdict is Verdict.FAIL}
        recorded = applicable(scenario.name, "tcg", parse_version_text(r.observation.qemu))
        assert r.outcome in (("PASS",) if not recorded else ("DEVIATION",)), (failed, r.note)
        assert r.observation.delivered["vector"] == r.observation.vector


PROBE_PLAN = [(boot, p) for boot in BOOT_PATHS for p in PROBES if p.name in PROBE_SET]


@pytest.mark.parametrize("boot, probe", PROBE_PLAN, ids=[f"{b}-{p.name}" for b, p in PROBE_PLAN])
def test_fatal_probe_on_both_paths(bios_kernel, tcg, tmp_path, boot, probe):
    obs = run_probe(bios_kernel, tcg.with_boot(boot), probe, log_dir=tmp_path, restore=False)
    checks = probe_checks(obs, probe)
    assert not [c for c in checks if c.verdict is Verdict.FAIL], [c.evidence for c in checks]
    assert obs.outcome == probe.expected
    assert obs.chain == list(probe.chain)


def test_bios_command_line_arrives_through_fw_cfg(bios_kernel, tcg, tmp_path):
    """The BIOS path has no loader command line: the lab passes it as fw_cfg opt/lab/cmdline.
    With `lab.exit_at_ready` in it the kernel exits QEMU at ready; the comma survives QEMU's
    option escaping."""
    log = tmp_path / "serial.log"
    argv = base_argv(tcg.with_boot(BIOS), bios_kernel, "a,b lab.exit_at_ready") + ["-serial", f"file:{log}"]
    status = ExitStatus(subprocess.run(argv, stdin=subprocess.DEVNULL, timeout=30).returncode)
    text = log.read_text()
    assert status.debug_exit_value == 0, (status.describe(), text)
    assert 'boot=bios' in text and 'cmdline="a,b lab.exit_at_ready"' in text, text


def test_cli_inspect_bios_json():
    result = lab_cli("inspect", "--boot", "bios", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "boot=bios" in report["ready"]
    assert report["checks"] and all(c["verdict"] == "PASS" for c in report["checks"])


def test_cli_bios_without_an_image_is_one_line(bios_kernel, tmp_path):
    lone = tmp_path / "labkernel"
    shutil.copy(bios_kernel, lone)
    result = lab_cli("inspect", "--boot", "bios", "--kernel", str(lone))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no BIOS disk image" in result.stderr and "lab build --boot bios" in result.stderr
