"""gdb's MI error records are never ignored: a command's ^error, and the late ^error of
`-exec-continue` (which answers ^running first), raise GdbError (a LabError) naming the command
and gdb's own message. Real gdb, real QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest

from labtest import kvm_usable

from lab.errors import GdbError, LabError
from lab.host import profiles
from lab.machine.gdb import Gdb
from lab.machine.rundir import RunDir
from lab.machine.session import Session

pytestmark = pytest.mark.integration
KVM_OK, KVM_WHY = kvm_usable()
needs_kvm = pytest.mark.skipif(not KVM_OK, reason=f"KVM not usable here: {KVM_WHY}")


def test_an_mi_error_is_a_lab_error_naming_the_command_and_the_message(tmp_path):
    run = RunDir(tmp_path / "logs")
    with Gdb(run) as gdb:
        with pytest.raises(GdbError) as caught:
            gdb.mi("-data-evaluate-expression no_such_symbol_here")
    assert isinstance(caught.value, LabError)
    text = str(caught.value)
    assert "-data-evaluate-expression no_such_symbol_here" in text
    assert "No symbol" in text and "no_such_symbol_here" in text


@needs_kvm
def test_a_fifth_hardware_breakpoint_on_kvm_raises_with_gdbs_words(kernel, tmp_path):
    """KVM gives gdb four debug registers (DR0-DR3): the fifth hbreak fails when gdb
    resumes, and the lab says so at once (before: a timeout)."""
    with Session(kernel, profiles.load("kvm"), log_dir=tmp_path, ready_timeout=30) as s:
        s.boot_to_ready()
        for name in ("isr_rsv22", "isr_rsv23", "isr_rsv24", "isr_rsv25", "isr_rsv26"):
            # raw MI, past Gdb.hbreak's own limit of four: gdb accepts all five here
            s.gdb.mi(f"-break-insert -h *{s.symbols.lookup(name).address:#x}")  # never reached
        with pytest.raises(GdbError, match="-exec-continue: .*Cannot insert hardware breakpoint 5"):
            s.gdb.cont()


def test_the_lab_never_asks_for_a_fifth_hardware_breakpoint(kernel, tmp_path):
    """On every accelerator (TCG would accept more), so what works on TCG works on KVM."""
    with Session(kernel, profiles.load("tcg"), log_dir=tmp_path) as s:
        s.boot_to_ready()
        names = ("isr_rsv22", "isr_rsv23", "isr_rsv24", "isr_rsv25", "isr_rsv26")
        numbers = [s.gdb.hbreak(f"*{s.symbols.lookup(n).address:#x}") for n in names[:4]]
        with pytest.raises(LabError, match="4 hardware breakpoints are already set"):
            s.gdb.hbreak(f"*{s.symbols.lookup(names[4]).address:#x}")
        s.gdb.delete_breakpoint(numbers[0])
        s.gdb.hbreak(f"*{s.symbols.lookup(names[4]).address:#x}")  # room again


def test_a_gdb_that_crashes_at_teardown_is_reported_with_its_kept_log(kernel, tmp_path):
    """gdb 13.1 once aborted on an assertion as it exited. A real gdb does all the work, then its
    wrapper dies by SIGABRT: the verdicts stand (exit 0), the crash is one warning line naming
    the kept log."""
    import re
    import shutil

    from labtest import lab_cli

    wrapper = tmp_path / "gdb-aborts-at-exit"
    wrapper.write_text(f'#!/bin/sh\n"{shutil.which("gdb")}" "$@"\nkill -ABRT $$\n')
    wrapper.chmod(0o755)
    done = lab_cli("inspect", "--kernel", str(kernel), env={"LAB_GDB": str(wrapper)})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    line = [ln for ln in done.stderr.splitlines() if "gdb ended with signal SIGABRT at teardown" in ln]
    assert len(line) == 1, done.stderr
    logs = re.search(r"its log: (\S+)", line[0]).group(1)
    assert (Path(logs) / "gdb.log").is_file()
    shutil.rmtree(logs)


def test_a_gdb_that_exits_cleanly_says_nothing(kernel):
    from labtest import lab_cli

    done = lab_cli("inspect", "--kernel", str(kernel))
    assert done.returncode == 0 and "gdb ended" not in done.stderr, done.stderr
