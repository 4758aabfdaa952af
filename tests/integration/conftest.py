"""Fixtures for tests that boot the real kernel under real QEMU with real gdb.

Each test gets its own log folder (serial.log, qemu.stderr.log, qemu.log, gdb.log); when a
test fails, its report names that folder. After every test, no QEMU or gdb process started
during it may still be alive.
"""

from __future__ import annotations

import os
import uuid
import subprocess
from pathlib import Path

import pytest

from lab.host import profiles
from lab.host.build import build_kernel
from lab.machine.session import Session
from labtest import SHARED_PIDS

# The tests' VMs start as the CLI's do, by Session's default: restored from the saved ready
# state when they stop at lab_ready (lab/machine/snapshot.py). Tests of booting itself pass
# restore=False or --fresh; tests/integration/test_restore.py compares the two.

PROCESS_NAMES = {"qemu-system-x86", "gdb"}  # /proc/PID/comm (15 chars max)
# Every process this test run starts inherits this marker, orphans (reparented to init)
# included; processes of other runs on the machine do not have it.
RUN_MARK = f"LAB_TEST_RUN={uuid.uuid4().hex}"

os.environ["LAB_TEST_RUN"] = RUN_MARK.split("=", 1)[1]


def _ours(pid: str) -> bool:
    try:
        return RUN_MARK.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _lab_processes() -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if comm in PROCESS_NAMES and state != "Z" and _ours(entry):
            pids.add(int(entry))
    return pids


@pytest.fixture(autouse=True)
def no_orphans():
    before = _lab_processes()
    yield
    left = _lab_processes() - before - SHARED_PIDS
    assert not left, f"processes left behind: {sorted(left)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    log_dir = getattr(item, "lab_log_dir", None)
    if rep.failed and log_dir is not None:
        rep.sections.append(("lab logs", f"serial, QEMU and gdb logs kept in: {log_dir}"))


@pytest.fixture
def log_dir(request, tmp_path) -> Path:
    d = tmp_path / "lab-logs"
    request.node.lab_log_dir = d
    return d


@pytest.fixture(scope="session")
def kernel() -> Path:
    return build_kernel(quiet=True)


@pytest.fixture(scope="session")
def tcg():
    return profiles.load("tcg")


@pytest.fixture(scope="session")
def debian_kernel() -> Path:
    """The vmlinuz of Debian's current linux-image-amd64, from Debian's archive (apt), cached."""
    from lab.host.distro import debian_kernel

    return debian_kernel()


@pytest.fixture
def session(kernel, tcg, log_dir):
    with Session(kernel, tcg, log_dir=log_dir) as s:
        s.boot_to_ready()
        yield s


def assemble_multiboot(directory: Path, name: str, body: str) -> Path:
    """A 32-bit Multiboot ELF whose code is `body` (GNU as, starting at `_start`), behind a
    Multiboot 1 header (magic, no flags, checksum), linked at 1 MiB with binutils: nothing
    downloaded."""
    src, obj, elf = (directory / f"{name}{ext}" for ext in (".S", ".o", ".elf"))
    src.write_text(""".section .text
        .align 4
        .long 0x1BADB002, 0, -0x1BADB002
        .globl _start
_start: """ + body)
    subprocess.run(["as", "--32", "-o", obj, src], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext=0x100000", "-e", "_start", "-o", elf, obj], check=True)
    return elf


@pytest.fixture(scope="session")
def twice_ready_kernel(tmp_path_factory) -> Path:
    """A Multiboot kernel that prints the ready marker twice on COM1, then halts."""
    return assemble_multiboot(tmp_path_factory.mktemp("twice"), "twice", """cli
        mov $msg, %esi
1:      movb (%esi), %al
        test %al, %al
        jz 3f
        mov $0x3f8, %dx
        outb %al, %dx
        inc %esi
        jmp 1b
3:      hlt
        jmp 3b
msg:    .asciz "LAB-READY version=x\\r\\nLAB-READY version=x\\r\\n"
""")


@pytest.fixture(scope="session")
def halting_kernel(tmp_path_factory) -> Path:
    """A valid Multiboot kernel that never prints anything: the 'never ready' guest."""
    return assemble_multiboot(tmp_path_factory.mktemp("halting"), "halt", """cli
1:      hlt
        jmp 1b
""")
