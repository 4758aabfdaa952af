"""`lab debug` and `lab attach`: an interactive gdb on the guest with the lab's commands.

`lab debug` owns QEMU (paused, sockets in a private directory) and the serial console; gdb
gets the terminal. The kernel's output goes to `serial.log` in the run directory, and a
private control socket lets `lab-fire` (inside gdb) type a line into the kernel's shell.
QEMU's gdbstub takes one client, so this gdb is the only one attached.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

from lab.machine.process import _die_with_parent, reap
from lab.machine.qemu import QemuMachine
from lab.machine.rundir import RunDir
from lab.profiles import Profile
from lab.symbols import Symbols
from lab.toolchain import REPO_ROOT, gdb_binary


def gdb_prelude(kernel: Path | None) -> list[str]:
    """gdb arguments that load the lab's commands into gdb's own Python (same 3.11 minor
    version: the lab's pure-Python dependencies import from this interpreter's site-packages)."""
    paths = [str(REPO_ROOT), sysconfig.get_paths()["purelib"]]
    args = ["-q", "-nx", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", f"python import sys; sys.path[:0] = {paths!r}",
            "-ex", "python import lab.gdb_commands",
            "-ex", "set architecture i386:x86-64"]
    return args + ([str(kernel)] if kernel else [])


class ShellRelay:
    """Reads the guest's serial output into a log; writes lines from the control socket."""

    def __init__(self, serial: socket.socket, run: RunDir) -> None:
        self.serial, self.ctl_path = serial, run.socket("shell")
        self.log = open(run.log("serial.log"), "ab")
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(self.ctl_path))
        self.listener.listen(4)
        for target in (self._pump, self._accept):
            threading.Thread(target=target, daemon=True).start()

    def _pump(self) -> None:
        while data := self.serial.recv(4096):
            self.log.write(data)
            self.log.flush()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                for line in conn.makefile("rb"):
                    self.serial.sendall(line.rstrip(b"\r\n") + b"\r")

    def close(self) -> None:
        self.listener.close()
        self.log.close()


def debug(kernel: Path | None, profile: Profile, at: str | None, gdb_args: list[str], *,
          append: str | None = None, image: Path | None = None, symbols: Path | None = None) -> int:
    """Boots paused and opens gdb with the lab's commands, stopped at `at` (a symbol or an
    address), else at lab_ready when the kernel has it, else at the reset vector."""
    from lab.errors import UserError
    from lab.kernelfile import identify, require_disk
    from lab.symbols import is_elf

    if image is not None:
        require_disk(image)
    if kernel is not None:
        identify(kernel)  # one line for a missing file or one that is no kernel
    table = Symbols.for_kernel(kernel, symbols)
    # gdb reads an ELF for its own symbols; a System.map reaches the lab's commands only.
    elf = next((p for p in (symbols, kernel) if p is not None and p.is_file() and is_elf(p)), None)
    stop = None
    if at is not None:
        stop = table.address_of(at)
        if stop is None:
            raise UserError(f"no symbol {at!r}" + (f" in {table.path}" if table.path else " (no symbols)"))
    elif table.lookup("lab_ready") is not None:
        stop = table.lookup("lab_ready").address
    run = RunDir()
    qemu = QemuMachine(profile, run, kernel=kernel, paused=True, append=append, image=image)
    relay = None
    try:
        qemu.launch()
        relay = ShellRelay(qemu.serial, run)
        run_to = ["-ex", f"hbreak *{stop:#x}", "-ex", "continue", "-ex", "delete"] if stop is not None else []
        argv = [gdb_binary(), *gdb_prelude(elf), "-ex", f"target remote {qemu.gdb_socket}", *run_to, *gdb_args]
        where = f"stopped at {at or 'lab_ready'}" if stop is not None else "paused at the reset vector"
        print(f"lab: QEMU {profile.name}, {where}; kernel output in "
              f"{run.log('serial.log')}; `help user-defined` lists the lab-* commands", file=sys.stderr)
        env = {**os.environ, "LAB_SHELL_SOCKET": str(relay.ctl_path)}
        if symbols is not None:
            env["LAB_SYMBOLS"] = str(symbols.resolve())
        proc = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)
        try:
            return proc.wait()
        finally:
            reap(proc)
    finally:
        if relay:
            relay.close()
        qemu.shutdown()
        run.close(failed=False)


def attach(socket_path: Path, kernel: Path | None, gdb_args: list[str]) -> int:
    if not socket_path.exists():
        from lab.errors import UserError
        raise UserError(f"no gdb socket at {socket_path} (start one with `lab boot`, which prints it)")
    argv = [gdb_binary(), *gdb_prelude(kernel), "-ex", f"target remote {socket_path}", *gdb_args]
    proc = subprocess.Popen(argv, preexec_fn=_die_with_parent)
    try:
        return proc.wait()
    finally:
        reap(proc)
