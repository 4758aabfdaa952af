"""`lab boot`: the guest's serial console on this terminal, gdbstub on a private socket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lab.machine.process import _die_with_parent, reap
from lab.machine.qemu import ExitStatus, base_argv
from lab.machine.rundir import RunDir
from lab.machine.session import check_kernel_file
from lab.profiles import Profile


def boot_interactive(kernel: Path, profile: Profile) -> int:
    check_kernel_file(kernel)
    profile.check_usable()
    run = RunDir()
    gdb_sock = run.socket("gdb")
    argv = base_argv(profile, kernel) + ["-serial", "mon:stdio",
                                         "-gdb", f"unix:{gdb_sock},server=on,wait=off"]
    print(f"lab: booting {kernel} ({profile.name}); Ctrl-A X quits, Ctrl-A C toggles the QEMU monitor\n"
          f"lab: attach gdb from another terminal with:\n"
          f"     gdb -ex 'target remote {gdb_sock}' {kernel}", file=sys.stderr)
    # Same session as the lab: QEMU needs the terminal (foreground process group).
    proc = subprocess.Popen(argv, preexec_fn=_die_with_parent)
    try:
        status = ExitStatus(proc.wait())
    finally:
        reap(proc)
        run.close(failed=False)
    print(f"lab: QEMU ended: {status.describe()}", file=sys.stderr)
    return 0 if status.code == 0 or status.debug_exit_value == 0 else status.code
