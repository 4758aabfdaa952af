"""The lab's pytest plugin (entry point `pytest11`: installed with the lab, loaded by pytest).

Fixtures:
- `lab_vm`: a VM of your kernel, stopped, for one test (lab/api/vm.py `VM`).
- `lab_inspection`: that kernel inspected once per session (an InspectReport: .idt, .gdt,
  .tss, .registers, .checks, .failed, .summary()).
- `lab_baseline`: the test's baseline file, in the style of pytest-regressions: beside the
  test module, `<module>/<test>.json`; `lab_baseline.check(report)` fails the test with the
  drift (lab/checks/baseline.py), or, the first time or with `--lab-update-baseline`, writes
  the report's state (docs/baselines.md).

The kernel is the one lab.toml names (found from pytest's rootdir), or `--lab-kernel`;
`--lab-config`, `--lab-profile` and `--lab-append` choose the rest. The marker
`@pytest.mark.lab(at=..., append=..., ...)` changes the VM for one test (the keywords of
`lab.api.boot`).

    def test_tables(lab_inspection):
        assert not lab_inspection.failed, lab_inspection.summary()

A failing test that used a fixture gets an HTML report of what its VM produced (inspections,
fires; lab/present/html) in `--lab-report-dir` (default: pytest's base temporary directory,
lab-reports/), and its failure output names the file (a "lab report" section), so CI can keep
it as an artifact.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

#: The item's key under which its fixtures leave what they produced ((name, JSON) pairs).
RESULTS = pytest.StashKey[list]()


def pytest_addoption(parser):
    g = parser.getgroup("lab", "x86-64 kernel test lab")
    g.addoption("--lab-kernel", metavar="PATH", help="the kernel to boot (default: lab.toml's)")
    g.addoption("--lab-config", metavar="FILE", help="the lab.toml to use (default: the nearest from the rootdir)")
    g.addoption("--lab-profile", metavar="NAME|FILE", help="the QEMU profile (default: lab.toml's, else tcg)")
    g.addoption("--lab-append", metavar="CMDLINE", help="the kernel command line (default: lab.toml's)")
    g.addoption("--lab-update-baseline", action="store_true",
                help="lab_baseline: write every baseline file from this run instead of comparing")
    g.addoption("--lab-report-dir", metavar="DIR",
                help="where a failing test's HTML report goes (default: <basetemp>/lab-reports)")


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
        request.node.stash[RESULTS] = vm.results  # the same list: filled as the test runs
        yield vm


#: The session's inspection, for the report of a failing test that used it.
INSPECTION = pytest.StashKey[object]()


@pytest.fixture(scope="session")
def lab_inspection(request):
    """The kernel under test inspected once (IDT, GDT, TSS, registers, checks)."""
    with _vm(request.config) as vm:
        report = vm.inspect()
    request.config.stash[INSPECTION] = report
    return report


class BaselineFile:
    """One test's baseline file (`path`); `check(report)` compares an InspectReport's state
    with it. A missing file is written and the test fails (review and commit it, as
    pytest-regressions does); with `update` every file is written and the test passes."""

    def __init__(self, path: Path, update: bool) -> None:
        self.path, self.update = path, update

    def check(self, report) -> None:
        from lab.checks.baseline import drift, dumps, loads

        if self.update or not self.path.exists():
            created = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(dumps(report.state), encoding="utf-8")
            if created and not self.update:
                pytest.fail(f"no baseline yet: wrote {self.path}; review and commit it", pytrace=False)
            return
        try:
            baseline = loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            pytest.fail(f"baseline {self.path}: {getattr(exc, 'strerror', None) or exc}", pytrace=False)
        lines = drift(baseline, report.state)
        if lines:
            pytest.fail(f"drift from {self.path} (accept with --lab-update-baseline):\n  " + "\n  ".join(lines),
                        pytrace=False)


@pytest.fixture
def lab_baseline(request) -> BaselineFile:
    """The test's baseline file: <the test module's directory>/<module>/<test name>.json."""
    module = Path(str(request.node.path))
    name = re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")
    return BaselineFile(module.parent / module.stem / f"{name}.json",
                        bool(request.config.getoption("--lab-update-baseline")))


def _report_dir(config) -> Path:
    named = config.getoption("--lab-report-dir")
    if named:
        return Path(named)
    return config._tmp_path_factory.getbasetemp() / "lab-reports"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    results = list(item.stash.get(RESULTS, []))
    inspection = item.config.stash.get(INSPECTION, None)
    if "lab_inspection" in item.fixturenames and inspection is not None:
        results.insert(0, ("lab_inspection", inspection.to_json()))
    if not results:
        return
    import json

    from lab.present.html.page import write

    directory = _report_dir(item.config)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (re.sub(r"[^\w.-]+", "_", item.nodeid).strip("_") + ".html")
    try:
        write(path, json.loads(json.dumps(results, default=str)), f"lab report: {item.nodeid}")
    except Exception as exc:  # the test's own failure matters more; say why there is no report
        report.sections.append(("lab report", f"no HTML report: {exc}"))
        return
    report.sections.append(("lab report", f"HTML report of this test's VM: {path}"))
    item.user_properties.append(("lab_report", str(path)))
