"""The guest's serial console for an interactive session (`lab debug`): the guest's output
goes to `serial.log`, and lines written to a private control socket go to the guest, so
commands inside gdb (`lab-fire`) can type into the kernel's shell while gdb has the terminal."""

from __future__ import annotations

import socket
import threading

from lab.machine.rundir import RunDir


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
