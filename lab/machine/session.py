"""One guest: QEMU + gdb + serial console + symbols, started and torn down together."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import GuestError, LabError, LabTimeout, UserError
from lab.host.kernelfile import ELF64, require_disk, require_kernel
from lab.machine.firmware import answer_firmware
from lab.machine import stops
from lab.machine.gdb import Gdb, gdb_crashed
from lab.machine.qemu import QemuMachine
from lab.machine.rundir import RunDir
from lab.machine.serial import SerialConsole
from lab.host.profiles import Profile
from lab.labkernel.contract import READY_SYMBOL
from lab.target.symbols import Symbols
from lab.x86.addr import refuse_noncode_literal

if TYPE_CHECKING:
    from lab.machine.snapshot import SavedState, StateStore

log = logging.getLogger("lab")


def worth_keeping(exc: BaseException) -> bool:
    """Whether a run that ended with `exc` keeps its logs: a failure of the lab or the guest
    does; a user error (one line says it all) and an interruption (Ctrl-C, SIGTERM: the user's
    wish, BaseExceptions) do not."""
    return isinstance(exc, Exception) and not isinstance(exc, UserError)


@dataclass(frozen=True)
class Stop:
    """When the lab stops the CPU to read its state. At most one is set; none means the lab
    kernel's ready point (`lab_ready`), or, for a kernel without one, idle (machine/stops.py)."""

    at: str | None = None  # a symbol or an address (a hardware breakpoint there), idle or fault
    after: float | None = None  # seconds of running, then an interrupt
    when: str | None = None  # a regex on the serial console, then an interrupt

    @property
    def is_ready(self) -> bool:
        """The default stop: the lab kernel's ready point."""
        return self.at is None and self.after is None and self.when is None

    def __post_init__(self) -> None:
        given = [n for n in ("at", "after", "when") if getattr(self, n) is not None]
        if len(given) > 1:
            raise UserError(f"choose one stop condition, not {' and '.join('--' + g for g in given)}")
        if self.after is not None and not self.after > 0:
            raise UserError(f"--after needs a positive number of seconds, not {self.after:g}")
        if self.at is not None:
            refuse_noncode_literal(self.at, "--at")
        if self.when is not None:
            try:
                re.compile(self.when.encode())
            except UnicodeEncodeError:
                raise UserError(f"--when {self.when!r}: not UTF-8 text (the console is matched as UTF-8)") from None
            except re.error as exc:
                raise UserError(f"--when {self.when!r}: not a regular expression ({exc})") from None


class Session:
    """Boots `kernel` under `profile`, paused, with gdb attached. Context manager.

    With `restore` (the default), a lab kernel's saved ready state (machine/snapshot.py) is
    loaded, not booted: the CPU is at `lab_ready`, its only stop. Other kernels and disk
    images boot; so does `restore=False` (--fresh). Logs go to `log_dir`, else to the run's
    private directory, deleted on success, kept and named on failure.
    """

    def __init__(self, kernel: Path | None, profile: Profile, *, log_dir: Path | None = None,
                 keep_logs: bool = False, ready_timeout: float = 10.0,
                 debug_log: str | None = None, append: str | None = None,
                 image: Path | None = None, symbols: Path | None = None,
                 restore: bool = True, states: "StateStore | None" = None) -> None:
        if kernel is None and image is None:
            raise UserError("nothing to boot: give a kernel or a disk image")
        self.kind = require_kernel(kernel) if kernel is not None else None
        if image is not None:
            require_disk(image)
        profile.check_usable()
        # Missing tools are user errors: find out before any process or directory exists.
        from lab.host.toolchain import gdb_binary
        profile.qemu_build  # the QEMU the profile names, probed (ToolMissing/UserError if none)
        gdb_binary()
        self.kernel = kernel
        self.profile = profile
        self.ready_timeout, self.debug_log, self.append, self.image, self.symbols_path = ready_timeout, debug_log, append, image, symbols
        self.log_dir, self.keep_logs, self.run = log_dir, keep_logs, None
        self.qemu: QemuMachine | None = None
        self.gdb: Gdb | None = None
        self.serial: SerialConsole | None = None
        self.symbols = Symbols.empty()
        self.ready_line: str | None = None
        self.restore, self.states = restore, states
        self.restored: "SavedState | None" = None  # the state this session was restored from
        self._store: "StateStore | None" = None
        self._made: "SavedState | None" = None  # the state this session made, if it made one

    def __enter__(self) -> "Session":
        try:
            self.start()
        except BaseException as exc:
            self.close(failed=worth_keeping(exc))
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Logs are kept for failures of the lab or the guest; a user error (bad address, unknown
        # symbol) is reported in one line and needs none, and an interruption (Ctrl-C, SIGTERM:
        # BaseExceptions) is the user's wish, not a failure to look into.
        self.close(failed=exc is not None and worth_keeping(exc))

    @property
    def logs(self) -> Path | None:
        return self.run.logs if self.run else None

    def start(self) -> None:
        self.run = RunDir(self.log_dir, keep=self.keep_logs)
        saved = self._saved_state() if self.restore else None
        # gdb starts while QEMU comes up; both are owned here from the first instant.
        self.gdb = Gdb(self.run)
        self.gdb.launch()
        self._launch_qemu(saved)
        if saved is not None:
            try:
                self._restore(saved)
            except LabTimeout:
                raise  # the bound the caller set (--ready-timeout) expired: the state is not at fault
            except LabError as exc:
                self._restore_failed(saved, exc)
        # gdb does not load the ELF: every breakpoint and read is by address, and symbols
        # come from pyelftools. Loading the kernel's DWARF into gdb only cost start-up time.
        self.gdb.connect(self.qemu.gdb_socket)
        answer_firmware(self.gdb, self.serial, self.qemu.firmware_prompt, self.ready_timeout)

    def _launch_qemu(self, saved: "SavedState | None") -> None:
        self.qemu = QemuMachine(self.profile, self.run, kernel=self.kernel, paused=True,
                                debug_log=self.debug_log, append=self.append, image=self.image,
                                incoming=saved is not None)
        self.qemu.launch(while_starting=self._load_symbols)
        if saved is not None:
            # What the guest printed before the state was saved, then what it prints now.
            with self.run.open_log("serial.log", "w") as f:
                f.write(
                    f"{saved.boot_serial}\n[lab: restored from the saved ready state {saved.stream}; "
                    f"the output above is the boot that saved it]\n")
        self.serial = SerialConsole(self.qemu.serial, self.run)
        log.info("started qemu pid %d, gdb pid %d; run dir %s; logs %s",
                 self.qemu.proc.pid, self.gdb.proc.pid, self.run.path, self.run.logs)

    def _restore(self, saved: "SavedState") -> None:
        """Loads `saved` into the QEMU launched for it (incoming), if that QEMU is the version
        that saved it; BadState or the migration's LabError otherwise."""
        from lab.machine.snapshot import BadState, qemu_version

        version = qemu_version(self.qemu)
        if saved.qemu_version != version:
            raise BadState(f"saved by QEMU {saved.qemu_version}; this is QEMU {version}")
        try:
            self.qemu.load_state(saved.stream, timeout=self.ready_timeout)  # restoring is reaching ready
        except OSError as exc:  # removed since it was checked (by a run it failed for)
            raise BadState(f"cannot be opened ({exc.strerror})") from None
        self.restored = saved

    def _restore_failed(self, saved: "SavedState", exc: LabError) -> None:
        """A state that failed to load leaves its QEMU unusable: that QEMU is ended, the state
        discarded and made again (by the normal path), and a new QEMU restores it; or boots, if
        no state can be written. One warning line says so. A state made by this very run that
        fails is discarded too, and the failure raised: making it again would not help."""
        from lab.machine.snapshot import summary, warn

        if saved is self._made:
            self._store.discard(saved.key, only=saved)
            raise exc
        warn(f"the saved ready state {saved.stream} failed to load ({summary(exc)}); discarded it, "
             f"booting to make it again")
        self.serial.close()
        self.serial = None
        self.qemu.shutdown()
        self.qemu = None
        self.run.remove_sockets()  # the new QEMU's sockets take the same names
        remade = self._saved_state(failed=saved)
        if remade is None:
            with self.run.open_log("serial.log", "w") as f:
                f.write(f"[lab: the saved ready state {saved.stream} failed to load; this VM booted]\n")
        self._launch_qemu(remade)
        if remade is not None:
            try:
                self._restore(remade)
            except LabError:
                self._store.discard(remade.key, only=remade)
                raise

    def _saved_state(self, failed: "SavedState | None" = None) -> "SavedState | None":
        """The saved ready state for this kernel, profile and command line, made now (by one
        booted VM, under a lock parallel runs share) if there is none; None for a kernel
        that cannot have one (no `lab_ready`, or a disk image), or when no state can be
        written (a warning says why). A state that is there but unusable is discarded under
        the lock, with a warning, then made again; so is `failed`, one that failed to load."""
        from contextlib import ExitStack

        from lab.host.bootpath import BIOS, UEFI, bios_image
        from lab.machine.qemu import base_argv
        from lab.machine.snapshot import (LOCK_SLACK, BadState, StateDirUnusable, StateStore,
                                          state_key, warn)

        if self.image is not None or self.kind != ELF64 or self.profile.boot == UEFI:
            return None
        files = [self.kernel] + ([bios_image(self.kernel)] if self.profile.boot == BIOS else [])
        key = state_key(base_argv(self.profile, self.kernel, self.append), files)
        store = self._store = self.states or StateStore()
        try:
            store.prepare()
        except StateDirUnusable as exc:
            warn(f"{exc.message}; booting without a saved ready state")
            return None
        if failed is None:
            try:
                saved = store.find(key)  # a state exists only for a kernel with lab_ready
            except BadState:
                saved = None  # checked again under the lock, then discarded
            if saved is not None:
                return saved
        # Symbols are needed now, not overlapped with QEMU's start: this run boots anyway.
        self._load_symbols()
        if self.symbols.lookup(READY_SYMBOL) is None:
            return None
        with ExitStack() as locked:
            try:
                locked.enter_context(store.lock(key, self.ready_timeout + LOCK_SLACK))
            except LabTimeout as exc:
                raise LabTimeout(f"{exc.message}; end that process, or pass --fresh to boot "
                                 f"without saved states") from None
            except OSError as exc:
                warn(f"cannot lock a saved ready state in {store.root} ({exc.strerror}); booting "
                     f"without one")
                return None
            try:
                saved = store.find(key)
            except BadState as bad:
                warn(f"saved ready state {bad.message}; discarded it, making it again")
                store.discard(key)
                saved = None
            if saved is not None and failed is not None and saved.stream_id == failed.stream_id:
                store.discard(key, only=failed)  # not replaced meanwhile by another run
                saved = None
            if saved is None:
                saved = self._made = self._save_state(store, key)
        return saved

    def _save_state(self, store, key: str) -> "SavedState | None":
        """Boots a VM to lab_ready, parks it and saves it as the state `key`; None, with a
        warning, if the store cannot take it (a full disk, a read-only directory)."""
        from lab.machine.snapshot import free_space, park_at_ready, qemu_version, summary, warn

        def unwritable(why: str) -> None:
            warn(f"cannot write the saved ready state in {store.root} ({why}); booting without it")

        try:
            tmp = store.temp_stream(key)
        except OSError as exc:
            return unwritable(exc.strerror or str(exc))
        try:
            with Session(self.kernel, self.profile, ready_timeout=self.ready_timeout,
                         append=self.append, symbols=self.symbols_path, restore=False) as s:
                ready_line = s.boot_to_ready()
                ready = s.symbols.lookup(READY_SYMBOL).address
                park_at_ready(s.gdb, s.qemu, ready)
                version = qemu_version(s.qemu)
                try:
                    s.qemu.save_state(tmp)
                except LabError as exc:  # QEMU does not always say why its write failed
                    return unwritable(f"{summary(exc)}; {free_space(store.root)}")
                serial = s.serial.tail(1 << 20).rstrip()
            try:
                saved = store.publish(key, tmp, {"ready_line": ready_line, "ready_address": ready,
                                                 "serial": serial, "kernel": str(self.kernel),
                                                 "profile": self.profile.name, "boot": self.profile.boot,
                                                 "append": self.append, "qemu_version": version})
            except OSError as exc:
                return unwritable(exc.strerror or str(exc))
            log.info("saved the ready state %s", key)
            return saved
        finally:
            tmp.unlink(missing_ok=True)

    def _run_to(self, address: int, name: str) -> None:
        """Continues to a hardware breakpoint at `address` and returns stopped there."""
        assert self.gdb and self.serial
        bp = self.gdb.hbreak(f"*{address:#x}")
        self.gdb.cont()
        try:
            stop = self.gdb.wait_stopped(self.ready_timeout, f"the kernel to reach {name}")
        except LabTimeout as exc:
            tail = self.serial.tail().strip()
            raise LabTimeout(f"{exc.message}{stops.console_hint(tail)}; serial tail:\n{tail or '(nothing)'}",
                             logs=self.logs) from None
        pc = int(stop.get("frame", {}).get("addr", "0"), 16)
        if pc != address:
            raise GuestError(f"guest stopped at {pc:#x} ({stop.get('reason')}), not at {name}; "
                             f"serial tail:\n{self.serial.tail()}", logs=self.logs)
        self.gdb.delete_breakpoint(bp)

    def _load_symbols(self) -> None:  # once
        if not len(self.symbols):
            self.symbols = Symbols.for_kernel(self.kernel, self.symbols_path)

    def boot_to_ready(self) -> str:
        """Runs the guest until the kernel is ready and returns with the CPU stopped: at
        `lab_ready` when the kernel has that symbol (the lab kernel's contract), otherwise
        right after the serial marker. A second ready marker is an error."""
        assert self.gdb and self.serial
        if self.restored is not None:
            return self._check_restored()
        ready = self.symbols.lookup(READY_SYMBOL)
        if ready is not None:
            self._run_to(ready.address, READY_SYMBOL)
        else:
            self.gdb.cont()
        self.ready_line = self.serial.wait_ready(self.ready_timeout)
        if ready is None:
            # Stop the CPU: every caller reads state next, and once it is stopped everything
            # it printed is in the socket, so a second marker cannot still be on its way.
            self.gdb.interrupt()
        if self.serial.ready_again():
            raise GuestError(f"the kernel printed the ready marker twice (it restarted, or it is not "
                             f"the kernel the lab expects); serial tail:\n{self.serial.tail().strip()}",
                             logs=self.logs)
        log.info("guest ready: %s", self.ready_line)
        return self.ready_line

    def _check_restored(self) -> str:
        """The restored CPU must be where the state was saved: at `lab_ready`."""
        assert self.gdb and self.restored
        rip = self.gdb.registers(("rip",))["rip"]
        if rip != self.restored.ready_address:
            self._store.discard(self.restored.key, only=self.restored)  # the next run makes it again
            raise GuestError(f"restored from {self.restored.stream}, the CPU is at {rip:#x}, not at "
                             f"lab_ready ({self.restored.ready_address:#x}); the state is discarded",
                             logs=self.logs)
        self.ready_line = self.restored.ready_line
        log.info("guest restored at lab_ready: %s", self.ready_line)
        return self.ready_line

    def boot_to(self, stop: "Stop") -> str:
        """Runs the guest until `stop` and returns, with the CPU stopped, a line saying where."""
        assert self.gdb and self.serial and self.qemu
        if self.restored is not None and not stop.is_ready:
            raise LabError("a session restored from a saved state starts at lab_ready; a stop "
                           "elsewhere needs a booted session (restore=False, --fresh)", logs=self.logs)
        if stop.at in stops.KINDS or (stop.is_ready and self.symbols.lookup(READY_SYMBOL) is None):
            self.ready_line = stops.run_to(self, stop.at, self.ready_timeout)
        elif stop.at is not None:
            address = self.symbols.require_code_address(stop.at)
            self._run_to(address, stop.at)
            self.ready_line = f"stopped at {stop.at} ({address:#x}) by a hardware breakpoint"
        elif stop.when is not None:
            self.gdb.cont()
            m = stops.expect(self.serial, stop.when, self.ready_timeout)
            self.gdb.interrupt()
            self.ready_line = f"stopped on serial match {m.group(0).decode(errors='replace').strip()!r}"
        elif stop.after is not None:
            self.gdb.cont()
            self.serial.run_for(stop.after, f"the guest ran for {stop.after:g} s")
            self.gdb.interrupt()
            self.ready_line = f"stopped after {stop.after:g} s"
        else:
            return self.boot_to_ready()
        log.info("guest %s", self.ready_line)
        return self.ready_line

    def close(self, failed: bool) -> None:
        """Reaps gdb and QEMU whatever state they are in; keeps logs on failure. gdb is asked
        to exit first and QEMU is ended while gdb exits (about 6 ms less than in turn)."""
        try:
            try:
                if self.gdb is not None:
                    self.gdb.request_exit()
            finally:
                if self.qemu is not None:
                    self.qemu.shutdown()
        finally:
            status = None
            try:
                if self.gdb is not None:
                    status = self.gdb.shutdown()
            finally:
                if self.serial is not None:
                    self.serial.close()
                if self.run is not None:
                    self.run.close(failed or status not in (None, 0))  # a gdb crash keeps the logs
                    gdb_crashed(status, self.run.logs)

