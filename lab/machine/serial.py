"""The guest's COM1, as a pexpect session over the unix socket QEMU connected to.

Everything the guest prints is also appended to `serial.log`. Each wait is bounded; a timeout
raises LabTimeout carrying the tail of what the guest printed.

The console is drained whoever waits: QEMU writes the guest's output a byte at a time, so the
socket's buffer is full after about 270 bytes nobody reads, and then the guest spins on its
UART (the transmitter never empties). While the lab waits on gdb or QMP, nobody would read. A
drain thread therefore reads whatever arrives into pexpect's buffer (and the log) whenever no
lab call is using the console; every call takes the same lock, so the two never read at once,
and nothing is consumed: a later `expect` still finds it.
"""

from __future__ import annotations

import os
import re
import select
import socket
import threading
from contextlib import contextmanager

import pexpect
import pexpect.fdpexpect

from lab.errors import GuestError, LabError, LabTimeout
from lab.machine.rundir import RunDir

from lab.labkernel.contract import PROMPT, READY_MARKER

TAIL_BYTES = 2000
DRAIN_JOIN_TIMEOUT = 1.0  # the drain thread ends at once when woken; bound it anyway


class SerialConsole:
    def __init__(self, sock: socket.socket, run: RunDir) -> None:
        self.sock = sock
        self.run = run
        self.log_path = run.log("serial.log")
        self._log = run.open_log("serial.log")
        self.child = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=5, logfile=None,
                                              encoding=None)
        self.child.logfile_read = self._log
        self._lock = threading.RLock()
        self._error: LabError | None = None  # a failure in the drain thread, raised by the next call
        self._wake_r, self._wake_w = os.pipe()
        self._drainer = threading.Thread(target=self._drain_while_idle, name="serial-drain", daemon=True)
        self._drainer.start()

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._drainer.join(timeout=DRAIN_JOIN_TIMEOUT)
        with self._lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._log.close()

    def _drain_while_idle(self) -> None:
        """The drain thread: reads whenever the guest has sent something, until EOF or close."""
        while True:
            try:
                ready, _, _ = select.select([self.sock, self._wake_r], [], [])
            except (OSError, ValueError):
                return  # the socket was closed (QEMU ended, the session is closing): nothing to drain
            if self._wake_r in ready:
                return
            with self._lock:
                try:
                    if self._log.closed or not self._read_available():
                        return
                except LabError as exc:  # the log could not be written: the next call raises it
                    self._error = exc
                    return

    @contextmanager
    def _using(self):
        """The console for one lab call: the lock, and any failure the drain thread met."""
        with self._lock:
            if self._error is not None:
                raise self._error
            yield

    def _read_available(self) -> bool:
        """Reads what the guest has sent so far into the log and pexpect's buffer without
        consuming it; False once QEMU has closed the console."""
        try:
            self.child.expect(pexpect.TIMEOUT, timeout=0)
            return True
        except (pexpect.EOF, OSError):
            return False  # QEMU closed the console; what it sent is in the log

    def drain(self) -> None:
        """Reads what the guest has sent so far into the log (and pexpect's buffer) without
        consuming it."""
        with self._using():
            self._read_available()

    def run_for(self, seconds: float, what: str) -> None:
        """Keeps reading the console for `seconds` (so a talkative guest never blocks on a
        full socket); GuestError if QEMU closes it first."""
        with self._using():
            try:
                self.child.expect(pexpect.TIMEOUT, timeout=seconds)
            except (pexpect.EOF, OSError):
                raise self._closed(what) from None
            # pexpect's buffer keeps growing otherwise; what was read is in the log
            self.child.buffer = b""

    def tail(self, n: int = TAIL_BYTES) -> str:
        """The last `n` bytes the guest printed, including what is still unread."""
        with self._using():
            self._read_available()
            return self._log_tail(n)

    def _timeout(self, what: str, timeout: float) -> LabTimeout:
        tail = self.tail().strip() or "(the guest printed nothing)"
        return LabTimeout(f"timed out after {timeout:g} s waiting for {what}; serial tail:\n{tail}",
                          logs=self.run.logs)

    def _closed(self, what: str) -> GuestError:
        return GuestError(f"serial console closed (QEMU exited) while {what}; serial tail:\n"
                          f"{self._log_tail().strip()}", logs=self.run.logs)

    def _log_tail(self, n: int = TAIL_BYTES) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-n:].decode("utf-8", errors="replace")

    def expect(self, pattern: str | bytes, timeout: float, what: str) -> re.Match:
        """Waits for a regex on serial; returns the match. EOF or a reset socket (QEMU gone)
        raise GuestError."""
        pat = pattern.encode() if isinstance(pattern, str) else pattern
        with self._using():
            try:
                self.child.expect(pat, timeout=timeout)
            except pexpect.TIMEOUT:
                raise self._timeout(what, timeout) from None
            except (pexpect.EOF, OSError):
                raise self._closed(f"waiting for {what}") from None
            return self.child.match

    def wait_ready(self, timeout: float) -> str:
        """Waits for the kernel's ready line; returns it."""
        m = self.expect(rf"{READY_MARKER}[^\r\n]*\r?\n".encode(), timeout, f"the ready marker {READY_MARKER!r}")
        return m.group(0).decode(errors="replace").strip()

    def ready_again(self) -> bool:
        """Whether the output already received after the ready line holds a second one."""
        with self._using():
            self._read_available()
            return READY_MARKER.encode() in (self.child.buffer or b"")

    def wait_prompt(self, timeout: float) -> None:
        self.expect(re.escape(PROMPT).encode(), timeout, f"the shell prompt {PROMPT!r}")

    def send_line(self, line: str) -> None:
        if "\n" in line or "\r" in line:
            raise ValueError("one command per line")
        with self._using():
            try:
                self.child.send(line.encode() + b"\r")
            except OSError:
                raise self._closed(f"sending {line!r}") from None

    def command(self, line: str, timeout: float = 5.0) -> str:
        """Runs one shell command (prompt already seen); returns its output without the echo
        and the next prompt."""
        with self._using():
            self.send_line(line)
            self.expect(re.escape(line.encode()) + rb"\r?\n", timeout, f"the echo of {line!r}")
            self.expect(re.escape(PROMPT).encode(), timeout, f"the prompt after {line!r}")
            return self.child.before.decode(errors="replace").replace("\r\n", "\n").strip("\n")
