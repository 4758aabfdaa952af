"""One QEMU process: launched with its control channels on unix sockets, reaped always.

The lab binds the QMP and serial sockets *before* QEMU starts and QEMU connects to them as a
client, so no output is lost and no port is ever guessed. The gdbstub is QEMU's own listening
unix socket; it exists once the QMP handshake has completed (QEMU answers QMP only from its
main loop, which starts after every device, the gdbstub included, is set up).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from lab.host.bootpath import check_media, media_args, memory_for, serial_handshake
from lab.errors import LabError, LabTimeout, ProcessDied, UserError
from lab.machine.process import Deadline, held_stops, reap, spawn, wait_exit, wait_readable
from lab.machine.rundir import RunDir
from lab.host.profiles import Profile

DEBUG_EXIT_IOBASE = 0xF4
QMP_COMMAND_TIMEOUT = 5.0  # every QMP command is bounded (qemu.qmp waits forever by default)


def base_argv(profile: Profile, kernel: Path | None, append: str | None = None,
              image: Path | None = None, private_dir: Path | None = None) -> list[str]:
    """The command line every lab QEMU shares: the profile, no default devices or display,
    no reboot (a triple fault ends the VM), isa-debug-exit, the kernel loaded by the profile's
    boot path with command line `append`. Callers add their control channels. The uefi path
    needs `private_dir`, the run's 0700 directory: its copy of the firmware's variables goes
    there."""
    check_media(profile.boot, kernel, append, image, machine=profile.machine)
    profile = replace(profile, memory=memory_for(profile.boot, profile.memory))
    qemu = profile.qemu_build
    bios = qemu.microvm_bios() if profile.machine.split(",")[0] == "microvm" and "-bios" not in profile.args else []
    return [*qemu.argv(), *profile.qemu_args(), *bios,
            "-nodefaults", "-no-user-config", "-display", "none", *profile.display_args, "-no-reboot",
            "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_IOBASE:#x},iosize=0x04",
            *media_args(profile.boot, kernel, append, image, private_dir)]


@dataclass(frozen=True)
class ExitStatus:
    """How QEMU ended. isa-debug-exit makes QEMU exit with (value << 1) | 1."""

    code: int

    @property
    def debug_exit_value(self) -> int | None:
        return self.code >> 1 if self.code & 1 else None

    def describe(self) -> str:
        if self.code < 0:
            return f"killed by signal {-self.code}"
        if self.debug_exit_value is not None:
            return f"isa-debug-exit value {self.debug_exit_value} (status {self.code})"
        return f"exit status {self.code}"


class QemuMachine:
    """Owns one qemu-system-x86_64 process. Use as a context manager."""

    def __init__(self, profile: Profile, run: RunDir, *, kernel: Path | None,
                 append: str | None = None, image: Path | None = None, paused: bool = True,
                 debug_log: str | None = None, extra_args: Sequence[str] = (),
                 launch_timeout: float = 10.0, incoming: bool = False, gdbstub: bool = True) -> None:
        self.profile = profile
        self.run = run
        self.kernel = kernel
        self.append = append
        self.image = image
        self.paused = paused
        self.debug_log = debug_log
        self.extra_args = list(extra_args)
        self.incoming = incoming  # waits for a saved state (load_state) instead of booting
        self.gdbstub = gdbstub  # False: no -gdb at all (a run with no debugger, e.g. the KVM probe)
        self.launch_timeout = launch_timeout
        self.gdb_socket = run.socket("gdb")
        self.qmp_socket = run.socket("qmp")
        self.serial_socket = run.socket("serial")
        self.stderr_log = run.log("qemu.stderr.log")
        self.debug_log_path = run.log("qemu.log")
        self.proc: subprocess.Popen | None = None
        self.qmp = None
        self.serial: socket.socket | None = None
        self._serial_listener: socket.socket | None = None
        self._stderr = None
        self._exit: ExitStatus | None = None
        self._argv: list[str] | None = None

    # -- command line -------------------------------------------------------------------
    def argv(self) -> list[str]:
        """QEMU's command line, made once: making it copies the UEFI variable store into the
        run's directory, which must not happen again while QEMU runs."""
        if self._argv is None:
            self._argv = self._make_argv()
        return list(self._argv)

    @property
    def firmware_prompt(self) -> tuple[bytes, str] | None:
        """What the firmware will ask on serial before it starts the kernel, as (regex, the
        line that answers it), or None (lab/host/bootpath.py: serial_handshake)."""
        return None if self.incoming else serial_handshake(self.profile.boot, self.kernel,
                                                           self.append, self.image)

    def _make_argv(self) -> list[str]:
        argv = base_argv(self.profile, self.kernel, self.append, self.image, self.run.path) + [
            "-chardev", f"socket,id=qmp,path={self.qmp_socket}",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", f"socket,id=serial0,path={self.serial_socket}",
            "-serial", "chardev:serial0"]
        if self.gdbstub:
            argv += ["-gdb", f"unix:{self.gdb_socket},server=on,wait=off"]
        if self.paused:
            argv.append("-S")
        if self.debug_log:
            argv += ["-d", self.debug_log, "-D", str(self.debug_log_path)]
        if self.incoming:
            argv += ["-incoming", "defer"]
        return argv + self.extra_args

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> "QemuMachine":
        self.launch()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def _pre_launch(self) -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        self.profile.check_usable()
        self._serial_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._serial_listener.bind(str(self.serial_socket))
        self._serial_listener.listen(1)
        self.qmp = QEMUMonitorProtocol(str(self.qmp_socket), server=True)

    def _post_launch(self) -> None:
        assert self.proc is not None and self._serial_listener is not None
        deadline = Deadline(self.launch_timeout, "QEMU to connect its QMP and serial sockets")
        wait_readable(self._serial_listener.fileno(), self.proc, deadline, "QEMU",
                      **self._error_context())
        self.serial, _ = self._serial_listener.accept()
        try:
            self.qmp.accept(timeout=max(deadline.remaining(), 0.001))
        except (asyncio.TimeoutError, TimeoutError):
            raise deadline.error(**self._error_context()) from None
        except Exception as exc:  # qemu.qmp raises its own ConnectError/EOF types
            raise self._launch_failure(f"QMP handshake failed: {exc}") from exc
        self.qmp.settimeout(QMP_COMMAND_TIMEOUT)
        if self.gdbstub and not self.gdb_socket.exists():
            raise self._launch_failure("QEMU did not create its gdbstub socket")

    def launch(self, while_starting=None) -> None:
        """Starts QEMU and waits for its handshake. `while_starting()`, if given, runs between
        the two: work of the lab's own (loading symbols) overlaps QEMU's start-up."""
        argv = self.argv()
        try:
            self._pre_launch()
            self._stderr = open(self.stderr_log, "wb")
            self.proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=self._stderr,
                              stderr=subprocess.STDOUT, env=self.profile.qemu_build.env())
            if while_starting is not None:
                while_starting()
            self._post_launch()
        except ProcessDied as exc:
            self.shutdown()
            raise self._launch_failure(exc.message) from None
        except BaseException:
            self.shutdown()
            raise

    def _error_context(self) -> dict:
        return {"command": self.argv(), "logs": self.run.logs}

    def _launch_failure(self, why: str) -> LabError:
        """A QEMU that exited at start with its own complaint refused what it was given (the
        kernel, a size, an argument): a user error whose first line is QEMU's reason."""
        exited = self.proc is not None and wait_exit(self.proc, REFUSAL_EXIT_WAIT) not in (None, 0)
        reason = _refusal(self.stderr_log) if exited else None
        if reason is not None:
            return QemuRefused(f"QEMU refused to start: {reason} (its command line and log: {self.run.logs})")
        return self._failure(f"QEMU failed to start: {why}")

    def _failure(self, why: str) -> LabError:
        """`why`, with QEMU's own output, its command line, exit status and logs."""
        status = self.proc.poll() if self.proc else None
        output = self.stderr_log.read_text(errors="replace").strip() if self.stderr_log.exists() else ""
        return LabError(why + (f"\n{output}" if output else ""), status=status, **self._error_context())

    def wait_exit(self, timeout: float) -> ExitStatus:
        """Waits for the guest to make QEMU exit (isa-debug-exit, -no-reboot reset)."""
        assert self.proc is not None
        code = wait_exit(self.proc, timeout)
        if code is None:
            raise Deadline(timeout, "QEMU to exit").error(**self._error_context())
        self._exit = ExitStatus(code)
        return self._exit

    def shutdown(self) -> ExitStatus | None:
        """Soft (QMP quit), then hard (SIGTERM, SIGKILL) in a finally; idempotent."""
        try:
            if self.proc is not None and self.proc.poll() is None and self.qmp is not None:
                try:
                    self.qmp.settimeout(1.0)
                    self.qmp.cmd("quit")
                except Exception:
                    pass  # the hard path below ends it; the status tells what happened
        finally:
            with held_stops():  # bounded (reap escalates to SIGKILL); a signal is raised after it
                if self.proc is not None:
                    self._exit = ExitStatus(reap(self.proc))
                closers = (self.qmp, self.serial, self._serial_listener, self._stderr)
                self.qmp = self.serial = self._serial_listener = self._stderr = None
                for closer in closers:
                    if closer is not None:
                        try:
                            closer.close()  # QEMU is gone: QMP's disconnect meets EOF at once
                        except Exception:
                            pass
        return self._exit

    @property
    def exit_status(self) -> ExitStatus | None:
        return self._exit

    # -- saved states (QEMU migration to and from a file) ---------------------------------
    def save_state(self, path: Path, timeout: float = 30.0) -> None:
        """Writes the whole VM state to `path` (QMP `migrate`: a `file:` URI where this QEMU has
        it, 8.2 on; else a file descriptor passed with SCM_RIGHTS, `fd:`, which 10.0 deprecates
        for files; no shell, no port). The VM must be paused; QEMU leaves it in `postmigrate`,
        finished."""
        self._migrate("migrate", path, "wb", timeout, f"QEMU to save its state to {path}")

    def load_state(self, path: Path, timeout: float = 30.0) -> None:
        """Loads a state written by save_state into this QEMU, launched with `incoming`; returns
        once QEMU reports the migration completed (the VM then stays paused, as saved)."""
        if not self.incoming:
            raise LabError("load_state needs a QEMU launched with incoming=True", logs=self.run.logs)
        self._migrate("migrate-incoming", path, "rb", timeout, f"QEMU to load the state {path}")

    @property
    def migration_uri_kind(self) -> str:
        """`file` or `fd`: how this QEMU is given a state file (lab/host/qemus.py decides by
        the version the binary reports)."""
        return "file" if self.profile.qemu_build.file_migration else "fd"

    def _uri_kind(self, path: Path) -> str:
        # QEMU reads options after a comma in a file: URI (",offset=N"): such a path goes by fd.
        return "fd" if "," in str(path) else self.migration_uri_kind

    def _migrate(self, command: str, path: Path, mode: str, timeout: float, what: str) -> None:
        self.qmp_cmd("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
        if self._uri_kind(path) == "file":
            self.qmp_cmd(command, uri=f"file:{Path(path).resolve()}")
        else:
            with open(path, mode) as f:
                self.qmp.send_fd_scm(f.fileno())  # claimed by the next getfd; QEMU keeps its own copy
                self.qmp_cmd("getfd", fdname="lab-state")
                self.qmp_cmd(command, uri="fd:lab-state")
        deadline = Deadline(timeout, what)
        while True:
            # QMP events do not tell that QEMU died (it aborts on a state it cannot take):
            # each wait is short, and the process is checked between them.
            try:
                status = self.wait_event("MIGRATION", min(deadline.remaining(), 0.25))["data"]["status"]
            except LabTimeout:
                if self.proc.poll() is not None:
                    raise self._failure(f"{what}: QEMU exited ({ExitStatus(self.proc.returncode).describe()})")
                if deadline.expired():
                    raise deadline.error(**self._error_context()) from None
                continue
            if status == "completed":
                if deadline.expired():  # an event already queued is read at once, however late
                    raise deadline.error(**self._error_context())
                return
            if status in ("failed", "cancelled"):
                raise self._failure(f"{what}: migration {status}")

    # -- QMP ----------------------------------------------------------------------------
    def wait_event(self, name: str | tuple[str, ...], timeout: float) -> dict:
        """Waits for the next QMP event called `name` (or any of several names; others are
        skipped)."""
        names = (name,) if isinstance(name, str) else name
        deadline = Deadline(timeout, f"the QMP event {' or '.join(names)}")
        while True:
            try:
                # qemu.qmp treats only a float as a timeout (an int waits forever).
                event = self.qmp.pull_event(wait=float(max(deadline.remaining(), 0.001)))
            except (asyncio.TimeoutError, TimeoutError):
                raise deadline.error(**self._error_context()) from None
            if event and event.get("event") in names:
                return event

    def drain_events(self) -> None:
        """Forgets every QMP event emitted so far. A command's reply comes after every event
        QEMU sent before it, so one round trip first makes sure they have all been read."""
        self.qmp_cmd("query-status")
        self.qmp.clear_events()

    def hmp(self, command: str) -> str:
        """A human-monitor command through QMP; works while the guest runs (gdb's `monitor`
        needs it stopped)."""
        return self.qmp_cmd("human-monitor-command", **{"command-line": command})

    def qmp_cmd(self, name: str, **args):
        """One QMP command, bounded; failures (timeout, QEMU gone, QMP error) raise LabError."""
        if self.qmp is None:
            raise LabError(f"QMP {name}: QEMU is not running", logs=self.run.logs)
        try:
            return self.qmp.cmd(name, **args)
        except (asyncio.TimeoutError, TimeoutError):
            raise Deadline(QMP_COMMAND_TIMEOUT, f"QEMU's answer to QMP {name}").error(
                **self._error_context()) from None
        except Exception as exc:  # qemu.qmp: ExecuteError, ExecInterruptedError, EOFError...
            raise LabError(f"QMP {name} failed: {type(exc).__name__}: {exc}",
                           **self._error_context()) from exc

    def screendump(self) -> bytes:
        """The guest's screen as PNG bytes (QMP screendump, format png: QEMU 7.1 and later),
        written in the run's private directory and read back."""
        path = self.run.path / "screen.png"
        self.qmp_cmd("screendump", filename=str(path), format="png")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise LabError(f"QMP screendump wrote no file at {path}: {exc.strerror}",
                           **self._error_context()) from None


#: How long a QEMU whose handshake broke is given to finish exiting (and say why).
REFUSAL_EXIT_WAIT = 2.0


class QemuRefused(UserError):
    """QEMU exited at start, saying why (`qemu-system-x86_64: ...` on its stderr)."""


#: What QEMU's complaints mean for a kernel developer, added after them.
REFUSAL_HINTS = {
    "without PVH ELF Note": "QEMU's -kernel loads an ELF with a Multiboot 1 header (magic 0x1BADB002, "
                            "first 8 KiB) or a PVH note; the lab boots one with a Multiboot2 header "
                            "(0xE85250D6, first 32 KiB, valid checksum) through GRUB",
}


def _refusal(log: Path) -> str | None:
    """QEMU's own first complaint in its start-up output, if it made one, and what it means."""
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if line.startswith("qemu-system-x86_64: "):
            reason = line.split(": ", 1)[1].strip()
            hints = [h for key, h in REFUSAL_HINTS.items() if key in reason]
            return reason + "".join(f"; {h}" for h in hints)
    return None

