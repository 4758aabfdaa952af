"""Shared pytest set-up for the whole suite: tests under tests/integration are marked
`integration`, and parallel workers share the CPU through one lock."""

from __future__ import annotations

import fcntl
import os
import tempfile

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def pytest_configure(config):
    config.addinivalue_line("markers", "exclusive: runs while no other test runs (parallel workers "
                            "wait): it loads every core on purpose, or it measures time")



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Parallel workers share the CPU through one lock per test run: every test, unit tests
    included, holds it shared, an `exclusive` test alone. Held around the whole protocol, so
    the module-scoped VMs that other tests boot and tear down are excluded too."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    path = item.config._tmp_path_factory.getbasetemp().parent / "lab-cpu.lock"
    with open(path, "a") as lock:
        exclusive = item.get_closest_marker("exclusive") is not None
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def pytest_sessionstart(session):
    """The lab's run directories (and the logs it keeps when a run fails, as many tests make it
    do on purpose) go below pytest's own temporary directory, which pytest prunes, instead of
    piling up in /tmp. The `lab` processes the tests start inherit TMPDIR."""
    runs = session.config._tmp_path_factory.getbasetemp() / "lab-runs"
    runs.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(runs)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
