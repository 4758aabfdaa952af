"""The guest's serial console for an interactive session (`lab debug`): the guest's output
goes to `serial.log`, and requests on a private control socket go to the guest, so commands
inside gdb (`lab-fire`, `lab-shell`) can type into the kernel's shell while gdb has the terminal.

A request is one line on its own connection: `type LINE` types LINE; `ask LINE` types it, and once the shell's prompt
is back (or after a bound) stops the guest through QMP, which gdb reports as a stop, and
answers `ok` then the reply (the lines between the echo and the prompt), or the failure in
one line."""

from __future__ import annotations

import re
import socket
import threading
from typing import Callable

from lab.labkernel.contract import PROMPT
from lab.machine.rundir import RunDir

#: The environment variable that names the control socket to the commands in gdb.
SHELL_SOCKET_ENV = "LAB_SHELL_SOCKET"
#: The bound on the shell's reply to an `ask`.
ASK_TIMEOUT = 10.0


class ShellRelay:
    """Reads the guest's serial output into a log; writes the control socket's requests."""

    def __init__(self, serial: socket.socket, run: RunDir, stop_guest: Callable[[], None]) -> None:
        self.serial, self.ctl_path = serial, run.socket("shell")
        self.stop_guest = stop_guest
        self.log = open(run.log("serial.log"), "ab")
        self._output = bytearray()  # what the guest printed since the last `ask` was typed
        self._changed = threading.Condition()
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(self.ctl_path))
        self.listener.listen(4)
        for target in (self._pump, self._accept):
            threading.Thread(target=target, daemon=True).start()

    def _pump(self) -> None:
        while data := self.serial.recv(4096):
            self.log.write(data)
            self.log.flush()
            with self._changed:
                self._output += data
                self._changed.notify_all()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:  # one request per connection; the answer ends with the connection
                request = conn.makefile("rb").readline()
                kind, _, line = request.rstrip(b"\r\n").partition(b" ")
                if kind == b"ask":
                    conn.sendall(self._ask(line))
                elif kind == b"type":
                    self._type(line)

    def _type(self, line: bytes) -> None:
        self.serial.sendall(line + b"\r")

    def _ask(self, line: bytes) -> bytes:
        with self._changed:
            self._output.clear()
        self._type(line)
        prompt = re.escape(PROMPT.encode())
        with self._changed:
            got = self._changed.wait_for(lambda: re.search(prompt, self._output), ASK_TIMEOUT)
            text = bytes(self._output)
        self.stop_guest()  # gdb's `continue` returns
        if not got:
            return (f"no shell prompt within {ASK_TIMEOUT:g} s after {line.decode(errors='replace')!r}; "
                    f"the guest printed {text[-200:].decode(errors='replace')!r}\n").encode()
        return b"ok\n" + reply_of(text, line)

    def close(self) -> None:
        self.listener.close()
        self.log.close()


def reply_of(output: bytes, line: bytes) -> bytes:
    """The shell's reply in `output`: after the echo of `line`, before the prompt, with the
    terminal's CRs dropped."""
    text = output.replace(b"\r", b"")
    head, sep, rest = text.partition(line + b"\n")
    body = rest if sep else text
    return body.split(PROMPT.encode(), 1)[0]
