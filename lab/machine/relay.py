"""The guest's serial console for an interactive session (`lab debug`): the guest's output
goes to `serial.log`, and requests on a private control socket go to the guest, so commands
inside gdb (`lab-fire`, `lab-shell`) can type into the kernel's shell while gdb has the terminal.

A request is one line on its own connection: `type LINE` types LINE; `ask LINE` types it and,
once the shell's prompt is back, answers `ok` then the reply (the lines between the echo and
the prompt), or after a bound the failure in one line. (The asker, in gdb, runs the guest
meanwhile and stops it when the answer is in.)"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

from lab.labkernel.contract import PROMPT
from lab.machine.rundir import RunDir

#: The environment variable that names the control socket to the commands in gdb.
SHELL_SOCKET_ENV = "LAB_SHELL_SOCKET"
#: The bound on the shell's reply to an `ask`.
ASK_TIMEOUT = 10.0


class ShellRelay:
    """Reads the guest's serial output into a log; writes the control socket's requests."""

    @staticmethod
    def ctl_path_in(run: RunDir) -> Path:
        """Where a relay of `run` listens (known before QEMU starts: gdb's environment names it)."""
        return run.socket("shell")

    def __init__(self, serial: socket.socket, run: RunDir) -> None:
        self.serial, self.ctl_path = serial, self.ctl_path_in(run)
        self.log = open(run.log("serial.log"), "ab")
        self._output = bytearray()  # what the guest printed since the last `ask` was typed
        self._changed = threading.Condition()
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(self.ctl_path))
        self.listener.listen(4)
        for target in (self._pump, self._accept):
            threading.Thread(target=target, daemon=True).start()

    def _pump(self) -> None:
        try:
            while data := self.serial.recv(4096):
                with self._changed:
                    if self.log.closed:
                        return
                    self.log.write(data)
                    self.log.flush()
                    self._output += data
                    self._changed.notify_all()
        except OSError:
            return  # the session is closing: QEMU's socket went first

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:  # one request per connection; the answer ends with the connection
                with conn.makefile("rb") as f:  # (an open makefile would keep the socket open)
                    request = f.readline()
                kind, _, line = request.rstrip(b"\r\n").partition(b" ")
                if kind == b"ask":
                    answer = self._ask(line, conn)
                    if answer:
                        conn.sendall(answer)
                elif kind == b"type":
                    self._type(line)
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # the end of the answer, and of the watcher's recv
                except OSError:
                    pass

    def _type(self, line: bytes) -> None:
        self.serial.sendall(line + b"\r")

    def _ask(self, line: bytes, conn: socket.socket) -> bytes:
        """Types `line` and waits for the prompt; b"" when the asker hung up first (the guest
        stopped at a breakpoint before the shell answered)."""
        gone = threading.Event()

        def watch() -> None:  # the asker closing its end ends the wait
            try:
                conn.recv(1)
            except OSError:
                pass
            with self._changed:
                gone.set()
                self._changed.notify_all()

        with self._changed:
            self._output.clear()
        threading.Thread(target=watch, daemon=True).start()
        self._type(line)
        with self._changed:
            got = self._changed.wait_for(
                lambda: gone.is_set() or reply_of(bytes(self._output), line) is not None, ASK_TIMEOUT)
            text = bytes(self._output)
        if gone.is_set():
            return b""
        if not got:
            return (f"no shell prompt within {ASK_TIMEOUT:g} s after {line.decode(errors='replace')!r}; "
                    f"the guest printed {text[-200:].decode(errors='replace')!r}\n").encode()
        return b"ok\n" + reply_of(text, line)

    def close(self) -> None:
        self.listener.close()
        with self._changed:  # not while the pump writes
            self.log.close()


def reply_of(output: bytes, line: bytes) -> bytes | None:
    """The shell's reply to `line` in `output`: after the shell's echo of `line`, up to the
    prompt that follows, with the terminal's CRs dropped; None until both are there (a prompt
    before the echo, such as the first one after lab_ready, is not the reply's end)."""
    text = output.replace(b"\r", b"")
    echo = re.search(rb"(?:^|\n|" + re.escape(PROMPT.encode()) + rb")" + re.escape(line) + rb"\n", text)
    if echo is None:
        return None
    body, sep, _ = text[echo.end():].partition(PROMPT.encode())
    return body if sep else None
