"""One gdb process driven over GDB/MI (pygdbmi's parser and I/O), every command tokened.

pygdbmi's `write()` collects output until a quiet period and does not tie a result record to
its command. Here every command is sent as `<token><command>` and the wait ends exactly when
the result record carrying that token arrives (or the process dies, or the deadline passes).
Async records (`*stopped`, `*running`) are queued for `wait_stopped()`. The whole exchange is
written to `gdb.log` (the transcript).
"""

from __future__ import annotations

import json
import signal
import sys
import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import GdbError, LabError, ProcessDied
from lab.machine.process import Deadline, reap, spawn, wait_exit
from lab.machine.rundir import RunDir
from lab.host.toolchain import gdb_binary

DEFAULT_TIMEOUT = 5.0
MAX_HW_BREAKPOINTS = 4  # DR0-DR3 (SDM vol. 3B §18.2)


@dataclass
class MiResult:
    token: int
    message: str  # done, running, connected, exit
    payload: dict | None
    console: list[str] = field(default_factory=list)  # ~ and @ stream text during the command

    @property
    def text(self) -> str:
        return "".join(self.console)


# What pygdbmi's parser raises on a line it cannot read (e.g. TypeError on "=0,0").
MI_PARSE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError)


def parse_mi(line: str) -> dict:
    """One gdb/MI output line as pygdbmi's record, or GdbError naming the line."""
    from pygdbmi import gdbmiparser

    try:
        return gdbmiparser.parse_response(line)
    except MI_PARSE_ERRORS as e:
        raise GdbError(f"gdb sent a line the MI parser cannot read: {line[:80]!r} "
                       f"({type(e).__name__}: {e})") from e


def mi_quote(text: str) -> str:
    """Quotes `text` as one MI c-string argument."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Gdb:
    """Owns one `gdb --interpreter=mi3` process. Use as a context manager."""

    def __init__(self, run: RunDir, *, default_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.run = run
        self.default_timeout = default_timeout
        self.transcript_path = run.log("gdb.log")
        self.proc: subprocess.Popen | None = None
        self._io = None
        self._transcript = None
        self._token = 0
        self._async: deque[dict] = deque()
        self._pending: deque[dict] = deque()  # records read but not yet consumed
        self._register_names: list[str] | None = None
        self._exit_requested = False
        self._commands: dict[int, str] = {}  # token -> command, for a result record that comes late
        self._log_text: list[str] = []  # gdb's `&` log stream since the last result record
        self._hw_breakpoints: set[int] = set()

    #: Set on the command line, so `launch` need not wait for gdb: its first MI command (the
    #: connect) does. mi-async: gdb keeps reading commands while the target runs, so
    #: -exec-interrupt works. The architecture: qemu-system-x86_64's gdbstub always sends the
    #: 64-bit register file; with a 32-bit ELF gdb would expect i386's and reject the 'g' reply.
    SETTINGS = ("mi-async on", "pagination off", "confirm off", "width 0", "height 0",
                "architecture i386:x86-64")

    @classmethod
    def argv(cls) -> list[str]:
        settings = [arg for s in cls.SETTINGS for arg in ("-ex", f"set {s}")]
        return [gdb_binary(), "--nx", "--quiet", "--interpreter=mi3", *settings]

    @classmethod
    def _spawn(cls) -> subprocess.Popen:
        return spawn(cls.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, bufsize=0)

    def __enter__(self) -> "Gdb":
        self.launch()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def launch(self) -> None:
        from pygdbmi.IoManager import IoManager

        self._transcript = self.run.open_log("gdb.log", "w")
        self.proc = take_early() or self._spawn()
        # A tiny quiet period: return as soon as records are read (completion is decided by
        # the token, not by silence). pygdbmi only shortens its wait when this is > 0.
        self._io = IoManager(self.proc.stdin, self.proc.stdout, self.proc.stderr,
                             time_to_check_for_additional_output_sec=1e-6)

    def request_exit(self) -> None:
        """Asks gdb to exit without waiting for it (shutdown() reaps it): a caller can end
        QEMU meanwhile."""
        if self._exit_requested or self.proc is None or self._io is None or self.proc.poll() is not None:
            return
        self._exit_requested = True
        try:
            self._io.write("-gdb-exit", read_response=False, timeout_sec=0.5)
        except (OSError, ValueError):
            pass  # gdb already gone; reap() in shutdown() reports how it ended

    def shutdown(self) -> int | None:
        """Reaps gdb; its exit status (None if it never started). gdb asked to exit ends with 0:
        anything else (gdb 13.1 once aborted on an assertion at teardown) is the caller's to report."""
        status = None
        try:
            self.request_exit()
        finally:
            if self.proc is not None:
                status = reap(self.proc, soft_timeout=1.0)
            if self._transcript is not None:
                self._transcript.close()
                self._transcript = None
        return status

    # -- transcript and errors ----------------------------------------------------------
    def _log(self, direction: str, item) -> None:
        if self._transcript is not None:
            text = item if isinstance(item, str) else json.dumps(item, default=str)
            self._transcript.write(f"{direction} {text}\n")
            self._transcript.flush()

    def _context(self, command: str) -> dict:
        return {"command": ["gdb/mi", command], "logs": self.run.logs}

    # -- reading ------------------------------------------------------------------------
    def _next(self, deadline: Deadline, command: str) -> dict:
        """The next record, in order, reading more only when none is pending."""
        if not self._pending:
            self._pending.extend(self._pump(deadline, command))
        return self._pending.popleft()

    def _pump(self, deadline: Deadline, command: str) -> list[dict]:
        """Reads whatever records arrive before the deadline (at least one, or raises)."""
        assert self.proc is not None and self._io is not None
        while True:
            if self.proc.poll() is not None:
                raise ProcessDied(f"gdb exited while the lab waited for {deadline.what}",
                                  status=self.proc.returncode, **self._context(command))
            if deadline.expired():
                raise deadline.error(**self._context(command))
            try:
                records = self._io.get_gdb_response(timeout_sec=min(deadline.remaining(), 0.25),
                                                    raise_error_on_timeout=False)
            except MI_PARSE_ERRORS as e:
                raise GdbError(f"gdb sent output the MI parser cannot read ({type(e).__name__}: {e})",
                               **self._context(command)) from e
            if records:
                for r in records:
                    self._log("<", r)
                return records

    def _error(self, r: dict, command: str) -> GdbError:
        """GdbError for an ^error record: the command, gdb's message and what gdb logged
        before it (e.g. "Cannot insert hardware breakpoint 5." before "Command aborted.")."""
        msg = (r.get("payload") or {}).get("msg", "unknown error")
        logged = " ".join(ln.strip() for ln in "".join(self._log_text).splitlines() if ln.strip())
        self._log_text.clear()
        return GdbError(f"gdb: {command}: {logged + ' ' if logged else ''}{msg}", **self._context(command))

    def _check_late(self, r: dict, token: int | None) -> None:
        """Every record read passes here. gdb's log stream is kept for the next error; an
        ^error for an earlier command raises: `-exec-continue` answers ^running at once and
        ^error later when resuming fails (breakpoints that cannot be inserted)."""
        kind = r.get("type")
        if kind == "log" and r.get("payload"):
            self._log_text.append(r["payload"])
        elif kind == "result" and r.get("token") != token:
            if r.get("message") == "error":
                raise self._error(r, self._commands.get(r.get("token"), f"(token {r.get('token')})"))
            self._log_text.clear()

    def mi(self, command: str, timeout: float | None = None) -> MiResult:
        """Sends one MI command and returns its own result record. Its ^error raises
        GdbError, and so does a late ^error of an earlier command read meanwhile."""
        assert self._io is not None
        self._token += 1
        token = self._token
        self._commands[token] = command
        line = f"{token}{command}"
        self._log(">", line)
        try:
            self._io.write(line, read_response=False, timeout_sec=1.0)
        except OSError as exc:  # BrokenPipeError: gdb is gone (or never was: LAB_GDB=/bin/true)
            raise ProcessDied(f"gdb exited before the lab could send it {command!r} ({exc.strerror or exc})",
                              status=wait_exit(self.proc, 1.0), **self._context(command)) from None
        deadline = Deadline(timeout or self.default_timeout, f"gdb's answer to {command!r}")
        console: list[str] = []
        while True:
            r = self._next(deadline, command)
            self._check_late(r, token)
            kind = r.get("type")
            if kind == "result" and r.get("token") == token:
                if r.get("message") == "error":
                    raise self._error(r, command)
                self._log_text.clear()
                if r.get("message") != "running":  # a running command may still fail later
                    self._commands.pop(token, None)
                return MiResult(token, r.get("message"), r.get("payload"), console)
            if kind == "notify" and r.get("message") in ("stopped", "running"):
                self._async.append(r)
            elif kind in ("console", "target", "output") and r.get("payload"):
                console.append(r["payload"])

    def cli(self, command: str, timeout: float | None = None) -> str:
        """Runs a CLI command; returns what it printed."""
        return self.mi(f"-interpreter-exec console {mi_quote(command)}", timeout).text

    def monitor(self, command: str, timeout: float | None = None) -> str:
        """QEMU's human monitor through the gdbstub (`monitor ...`, qRcmd)."""
        return self.cli(f"monitor {command}", timeout)

    def wait_stopped(self, timeout: float, what: str = "the target to stop") -> dict:
        """Waits for the next `*stopped` record and returns its payload."""
        deadline = Deadline(timeout, what)
        while True:
            while self._async:
                r = self._async.popleft()
                if r.get("message") == "stopped":
                    self._commands.clear()  # what was running did resume
                    return r.get("payload") or {}
            r = self._next(deadline, "(waiting for *stopped)")
            self._check_late(r, None)
            if r.get("type") == "notify" and r.get("message") in ("stopped", "running"):
                self._async.append(r)

    # -- conveniences -------------------------------------------------------------------
    def connect(self, socket_path: Path, timeout: float = 5.0) -> None:
        # MI passes quotes through literally here; run paths come from mkdtemp (no spaces).
        self.mi(f"-target-select remote {socket_path}", timeout=timeout)

    def hbreak(self, location: str) -> int:
        """Hardware breakpoint, the lab's only kind: before the kernel is loaded the loader's
        copy would overwrite a software breakpoint's int3 under KVM, and on the nested KVM host
        here a software breakpoint's int3 stops the VM with a KVM internal error. At most
        MAX_HW_BREAKPOINTS at once (x86 has DR0-DR3; KVM gives gdb no more), on every
        accelerator, so that what works on TCG works on KVM."""
        if len(self._hw_breakpoints) >= MAX_HW_BREAKPOINTS:
            raise LabError(f"gdb: hbreak {location}: {MAX_HW_BREAKPOINTS} hardware breakpoints are "
                           f"already set (DR0-DR3); delete one first", logs=self.run.logs)
        r = self.mi(f"-break-insert -h {location}")
        number = int(r.payload["bkpt"]["number"])
        self._hw_breakpoints.add(number)
        return number

    def delete_breakpoint(self, number: int) -> None:
        self.mi(f"-break-delete {number}")
        self._hw_breakpoints.discard(number)

    def cont(self) -> None:
        # A *stopped queued before this continue (e.g. the one target-select reports before
        # ^connected) describes a stop that is over; only later ones answer wait_stopped().
        self._async.clear()
        self.mi("-exec-continue")
        # gdb answers ^running before it inserts the breakpoints and resumes, and ^error
        # ("Cannot insert hardware breakpoint 5 ...") after it, while handling the same
        # command: the answer to any next command comes after that error, which then raises.
        self.mi("-gdb-show mi-async")

    def interrupt(self, timeout: float = 5.0) -> dict:
        """Stops a running target and waits for its *stopped record."""
        self._async.clear()
        self.mi("-exec-interrupt")
        return self.wait_stopped(timeout, "the target to stop after -exec-interrupt")

    # -- threads: QEMU's gdbstub shows each vCPU as one thread ----------------------------
    def threads(self) -> list[tuple[str, str]]:
        """(gdb thread id, details) for every thread, in gdb's order (`-thread-info`); QEMU's
        details name the vCPU: "CPU#1 [halted ]"."""
        r = self.mi("-thread-info")
        return [(t["id"], t.get("details", "")) for t in (r.payload or {}).get("threads", [])]

    def current_thread(self) -> str | None:
        return (self.mi("-thread-info").payload or {}).get("current-thread-id")

    def select_thread(self, thread_id: str) -> None:
        """Makes `thread_id` (a vCPU) the one registers and memory are read through
        (`-thread-select`; gdb sends QEMU `Hg`)."""
        self.mi(f"-thread-select {thread_id}")

    def read_memory(self, address: int, length: int) -> bytes:
        if length == 0:
            return b""
        r = self.mi(f"-data-read-memory-bytes {address:#x} {length}")
        blocks = r.payload["memory"]
        data = b"".join(bytes.fromhex(b["contents"]) for b in blocks)
        if len(data) != length:
            raise LabError(f"gdb read {len(data)} of {length} bytes at {address:#x} "
                           f"(unmapped memory?)", logs=self.run.logs)
        return data

    def write_memory(self, address: int, data: bytes) -> None:
        self.mi(f"-data-write-memory-bytes {address:#x} {data.hex()}")

    def _names(self) -> list[str]:
        if self._register_names is None:
            self._register_names = self.mi("-data-list-register-names").payload["register-names"]
        return self._register_names

    def write_registers(self, values: dict[str, int]) -> None:
        """Writes several registers in one MI command."""
        numbers = {n: i for i, n in enumerate(self._names())}
        pairs = " ".join(f"{numbers[r]} {v:#x}" for r, v in values.items())
        self.mi(f"-data-write-register-values x {pairs}")

    def registers(self, only: tuple[str, ...] | None = None) -> dict[str, int]:
        """Registers by name, as integers (vector registers skipped): all, or `only` these."""
        names = self._names()
        select = ""
        if only:
            index = {n: i for i, n in enumerate(names)}
            select = " " + " ".join(str(index[n]) for n in only if n in index)
        values = self.mi(f"-data-list-register-values x{select}").payload["register-values"]
        out: dict[str, int] = {}
        for v in values:
            name = names[int(v["number"])]
            try:
                out[name] = int(v["value"], 16)
            except (ValueError, TypeError):
                continue
        return out


# -- a gdb started before the lab's own imports ------------------------------------------
# gdb takes about 55 ms of CPU to start and the CLI's imports about as long, on one core: the
# CLI starts gdb first (prestart) and the first Gdb.launch() takes it. Whoever calls prestart()
# calls discard_early() in a `finally`, so an untaken gdb is reaped too.
_early: subprocess.Popen | None = None


def prestart() -> None:
    global _early
    if _early is None:
        _early = Gdb._spawn()


def take_early() -> subprocess.Popen | None:
    global _early
    proc, _early = _early, None
    if proc is not None and proc.poll() is not None:
        return None  # it died meanwhile; launch() starts another
    return proc


def discard_early() -> None:
    """Reaps a prestarted gdb nobody took (EOF on its input ends it)."""
    global _early
    proc, _early = _early, None
    if proc is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
        reap(proc, soft_timeout=1.0)


def gdb_crashed(status: int | None, logs) -> None:
    """gdb ended badly at teardown (not None or 0), after every reading was taken: no verdict
    depends on it, but it is said (a warning on stderr) with the logs, which the caller keeps."""
    if status in (None, 0):
        return
    how = f"signal {signal.Signals(-status).name}" if status < 0 else f"status {status}"
    print(f"lab: warning: gdb ended with {how} at teardown (after the readings; no verdict depends "
          f"on it); its log: {logs}", file=sys.stderr, flush=True)
