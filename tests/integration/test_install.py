"""The lab in someone else's repo: a non-editable install into a fresh venv (pip, from this
checkout), used from a directory outside the checkout, on Debian's Linux kernel named by a
lab.toml: `lab profiles` (the profiles are package data), `lab inspect` at the kernel's panic,
the README's pytest example with JUnit output, and `lab fire --agnostic all`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv (no system site-packages) with the lab installed from this checkout, not
    editable, and pytest (pip's cache makes the second install quick)."""
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    done = subprocess.run([str(root / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                           str(CHECKOUT), "pytest"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory, debian_kernel) -> Path:
    """A kernel developer's repo: their kernel (Debian's, here), a lab.toml and the README's
    test file, far from the lab's checkout."""
    repo = tmp_path_factory.mktemp("their-kernel")
    shutil.copy(debian_kernel, repo / "vmlinuz")
    (repo / "lab.toml").write_text('[kernel]\npath = "vmlinuz"\nappend = "console=ttyS0 nokaslr"\n'
                                   '[vm]\nready_timeout = 90\n[stop]\nwhen = "Kernel panic"\n')
    (repo / "tests").mkdir()
    shutil.copy(CHECKOUT / "examples" / "test_my_kernel.py", repo / "tests")
    return repo


def run(venv: Path, cwd: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_the_installed_lab_is_not_the_checkout(venv, user_repo):
    r = run(venv, user_repo, "python", "-c", "import lab; print(lab.__file__)")
    assert r.returncode == 0 and str(venv) in r.stdout and str(CHECKOUT) not in r.stdout, r.stdout + r.stderr
    r = run(venv, user_repo, "lab", "profiles", "--json")
    assert r.returncode == 0 and {"tcg", "kvm", "tcg-q35", "tcg-microvm"} <= {p["name"] for p in json.loads(r.stdout)}


def test_inspect_of_their_kernel_from_lab_toml(venv, user_repo):
    r = run(venv, user_repo / "tests", "lab", "inspect", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["kernel"] == str(user_repo / "vmlinuz") and "Kernel panic" in report["ready"]
    assert report["summary"]["FAIL"] == 0


def test_the_readme_pytest_example_passes_with_junit_output(venv, user_repo):
    r = run(venv, user_repo, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "tests/test_my_kernel.py", "--junitxml=lab-results.xml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    suite = ET.parse(user_repo / "lab-results.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) == 3 and int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0


def test_fire_agnostic_all_at_their_kernels_stop(venv, user_repo):
    r = run(venv, user_repo, "lab", "fire", "--agnostic", "all", "--json")
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert {x["injection"] for x in results} == {"de", "bp", "nmi", "ud", "gp", "pf"}
    assert all(x["outcome"] in ("PASS", "SKIP") for x in results), results


def test_without_a_kernel_or_a_checkout_the_lab_says_what_to_pass(venv, tmp_path):
    r = run(venv, tmp_path, "lab", "inspect")
    assert r.returncode == 2, r.stderr
    assert "pass --kernel PATH" in r.stderr and r.stderr.count("\n") == 1, r.stderr
