"""The interactive runs: `lab boot` (the guest's console on this terminal), `lab debug` (QEMU
paused, gdb on this terminal with the lab's commands) and `lab attach` (gdb with the lab's
commands on a running `lab boot`).

QEMU runs as in every run (QemuMachine: sockets in a private directory), the terminal's
child (gdb, or QEMU with its console on stdio) is a TerminalProcess, and the kernel's output
in `lab debug` goes to `serial.log` through a ShellRelay. QEMU's gdbstub takes one client, so
this gdb is the only one attached.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

from lab.errors import LabError, UserError
from lab.host.bootpath import check_media
from lab.host.kernelfile import identify, require_disk, require_kernel
from lab.host.profiles import Profile
from lab.host.toolchain import REPO_ROOT, gdb_binary
from lab.labkernel.contract import READY_SYMBOL
from lab.machine.qemu import ExitStatus, QemuMachine, base_argv
from lab.machine.relay import SHELL_SOCKET_ENV, ShellRelay
from lab.machine.rundir import RunDir
from lab.machine.terminal import TerminalProcess
from lab.target.symbols import Symbols, is_elf

#: The module gdb's own Python imports: the lab's gdb commands.
GDB_COMMANDS = "lab.present.gdbcmds"
#: The banner's hint, true of every session.
HELP_HINT = "`help lab` lists the lab's commands"


def gdb_prelude(kernel: Path | None) -> list[str]:
    """gdb arguments that load the lab's commands into gdb's own Python (same 3.11 minor
    version: the lab's pure-Python dependencies import from this interpreter's site-packages)."""
    paths = [str(REPO_ROOT), sysconfig.get_paths()["purelib"]]
    args = ["-q", "-nx", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", f"python import sys; sys.path[:0] = {paths!r}",
            "-ex", f"python import {GDB_COMMANDS}",
            "-ex", "set architecture i386:x86-64"]
    return args + ([str(kernel)] if kernel else [])


def attach_command(gdb_sock: Path, kernel: Path) -> str:
    """The one command line that attaches gdb, with the lab's commands and the kernel's
    symbols, to a `lab boot`."""
    lab = shutil.which("lab") or f"{sys.executable} -m lab"
    return f"{lab} attach {shlex.quote(str(gdb_sock))} --kernel {shlex.quote(str(kernel.resolve()))}"


def boot_interactive(kernel: Path, profile: Profile) -> int:
    require_kernel(kernel)
    profile.check_usable()
    check_media(profile.boot, kernel, machine=profile.machine)  # before the run's directory exists
    run = RunDir()
    gdb_sock = run.socket("gdb")
    argv = base_argv(profile, kernel, private_dir=run.path) + ["-serial", "mon:stdio",
                                         "-gdb", f"unix:{gdb_sock},server=on,wait=off"]
    print(f"lab: booting {kernel} ({profile.name}); Ctrl-A X quits, Ctrl-A C toggles the QEMU monitor\n"
          f"lab: attach gdb with the lab's commands from another terminal with:\n"
          f"     {attach_command(gdb_sock, kernel)}", file=sys.stderr)
    try:
        with TerminalProcess(argv, env=profile.qemu_build.env(), name="QEMU") as qemu:  # QEMU needs the terminal
            status = ExitStatus(qemu.wait())
    finally:
        run.close(failed=False)
    print(f"lab: QEMU ended: {status.describe()}", file=sys.stderr)
    return 0 if status.code == 0 or status.debug_exit_value == 0 else status.code


def debug(kernel: Path | None, profile: Profile, at: str | None, gdb_args: list[str], *,
          append: str | None = None, image: Path | None = None, symbols: Path | None = None) -> int:
    """Boots paused and opens gdb with the lab's commands, stopped at `at` (a symbol or an
    address), else at lab_ready when the kernel has it, else at the reset vector."""
    if image is not None:
        require_disk(image)
    if kernel is not None:
        identify(kernel)  # one line for a missing file or one that is no kernel
    table = Symbols.for_kernel(kernel, symbols)
    # gdb reads an ELF for its own symbols; a System.map reaches the lab's commands only.
    elf = next((p for p in (symbols, kernel) if p is not None and p.is_file() and is_elf(p)), None)
    stop = None
    if at is not None:
        stop = table.require_code_address(at)
    elif table.lookup(READY_SYMBOL) is not None:
        stop = table.lookup(READY_SYMBOL).address
    run = RunDir()
    qemu = QemuMachine(profile, run, kernel=kernel, paused=True, append=append, image=image)
    run_to = ["-ex", f"hbreak *{stop:#x}", "-ex", "continue", "-ex", "delete"] if stop is not None else []
    argv = [gdb_binary(), *gdb_prelude(elf), "-ex", f"target remote {qemu.gdb_socket}", *run_to, *gdb_args]
    where = f"stopped at {at or 'lab_ready'}" if stop is not None else "paused at the reset vector"
    env = {**os.environ, SHELL_SOCKET_ENV: str(ShellRelay.ctl_path_in(run))}
    if symbols is not None:
        env["LAB_SYMBOLS"] = str(symbols.resolve())
    return _gdb_on(qemu, run, argv, env, f"lab: QEMU {profile.name}, {where}; kernel output in "
                   f"{run.log('serial.log')}; {HELP_HINT}; Ctrl-C stops the guest, `quit` ends")


def _gdb_on(qemu: QemuMachine, run: RunDir, argv: list[str], env: dict, announce: str) -> int:
    """Launches the paused QEMU, relays its serial (serial.log, `lab-shell`), announces, and
    gives the terminal to gdb (`argv`) until it exits; reaps QEMU and the run's directory."""
    relay, failed = None, True
    try:
        qemu.launch()
        relay = ShellRelay(qemu.serial, run)
        print(announce, file=sys.stderr)
        with TerminalProcess(argv, env=env, name="gdb") as gdb:
            _gdb_ended(gdb.wait(), argv, run.logs)
        failed = False
        return 0
    finally:
        if relay:
            relay.close()
        qemu.shutdown()
        run.close(failed=failed)


def _gdb_ended(status: int, argv: list[str], logs: Path | None) -> None:
    """gdb's `quit` is status 0; any other end (it failed to start, crashed, was killed) is
    the lab's failure, as `lab inspect` reports it: one line, the command, the status (exit 3)."""
    if status != 0:
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise LabError(f"gdb {how}", command=argv[:1], status=status, logs=logs)


def attach(socket_path: Path, kernel: Path | None, gdb_args: list[str]) -> int:
    """gdb with the lab's commands on a `lab boot`'s gdbstub; symbols from `kernel`, else the
    lab kernel's build when there is one."""
    if not socket_path.exists():
        raise UserError(f"no gdb socket at {socket_path} (start one with `lab boot`, which prints it)")
    if kernel is None:
        from lab.host.build import kernel_path

        kernel = kernel_path() if kernel_path().is_file() else None
    elif not (kernel.is_file() and is_elf(kernel)):
        raise UserError(f"--kernel {kernel}: not an ELF file to read symbols from")
    argv = [gdb_binary(), *gdb_prelude(kernel), "-ex", f"target remote {socket_path}", *gdb_args]
    with TerminalProcess(argv, name="gdb") as gdb:
        _gdb_ended(gdb.wait(), argv, None)
    return 0


def replay(path: Path, gdb_args: list[str]) -> int:
    """gdb on a recording (`lab probe NAME --record`): QEMU replays it and stops at its end,
    the instruction whose execution ended the run (for a triple fault, the reset), from where
    reverse-stepi, reverse-continue, lab-chain and lab-goto work."""
    from lab.host.profiles import load
    from lab.machine.replay import REPLAY_ENV, Recording

    rec = Recording.load(path)
    profile = load(rec.profile)
    run = RunDir()
    qemu = QemuMachine(profile, run, kernel=rec.kernel, paused=True, append=rec.append,
                       extra_args=rec.replay_args())
    to_end = ["-ex", f"monitor replay_break {rec.end_icount}", "-ex", "continue"]
    argv = [gdb_binary(), *gdb_prelude(rec.kernel), "-ex", f"target remote {qemu.gdb_socket}", *to_end, *gdb_args]
    env = {**os.environ, REPLAY_ENV: str(rec.path)}
    env.pop(SHELL_SOCKET_ENV, None)
    return _gdb_on(qemu, run, argv, env,
                   f"lab: replaying {rec.probe} ({rec.path}) to its end, instruction {rec.end_icount}; "
                   f"reverse-stepi and reverse-continue go back; lab-chain lists its exceptions, "
                   f"lab-goto N moves to one; {HELP_HINT}")
