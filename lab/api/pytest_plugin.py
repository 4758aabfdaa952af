"""The lab's pytest plugin (entry point `pytest11`: installed with the lab, loaded by pytest).

Fixtures:
- `lab_vm`: a VM of your kernel, stopped, for one test (lab/api/vm.py `VM`).
- `lab_inspection`: that kernel inspected once per session (an InspectReport: .idt, .gdt,
  .tss, .registers, .checks, .failed, .summary()).

The kernel is the one lab.toml names (found from pytest's rootdir), or `--lab-kernel`;
`--lab-config`, `--lab-profile` and `--lab-append` choose the rest. The marker
`@pytest.mark.lab(at=..., append=..., ...)` changes the VM for one test (the keywords of
`lab.api.boot`).

    def test_tables(lab_inspection):
        assert not lab_inspection.failed, lab_inspection.summary()
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser):
    g = parser.getgroup("lab", "x86-64 kernel test lab")
    g.addoption("--lab-kernel", metavar="PATH", help="the kernel to boot (default: lab.toml's)")
    g.addoption("--lab-config", metavar="FILE", help="the lab.toml to use (default: the nearest from the rootdir)")
    g.addoption("--lab-profile", metavar="NAME|FILE", help="the QEMU profile (default: lab.toml's, else tcg)")
    g.addoption("--lab-append", metavar="CMDLINE", help="the kernel command line (default: lab.toml's)")


def pytest_configure(config):
    config.addinivalue_line("markers", "lab(**options): options of lab.api.boot for this test's lab_vm")


def _config_path(config) -> Path | None:
    from lab.host import config as lab_config

    named = config.getoption("--lab-config")
    return Path(named) if named else lab_config.find(Path(str(config.rootpath)))


def _vm(config, **overrides):
    from lab.api import VM

    options = {"kernel": config.getoption("--lab-kernel"), "profile": config.getoption("--lab-profile"),
               "append": config.getoption("--lab-append"), **overrides}
    return VM.from_config(_config_path(config), **options)


@pytest.fixture
def lab_vm(request):
    """A VM of the kernel under test, stopped where lab.toml says (or the marker), for one test."""
    marker = request.node.get_closest_marker("lab")
    with _vm(request.config, **(marker.kwargs if marker else {})) as vm:
        yield vm


@pytest.fixture(scope="session")
def lab_inspection(request):
    """The kernel under test inspected once (IDT, GDT, TSS, registers, checks)."""
    with _vm(request.config) as vm:
        return vm.inspect()
