"""A program in a real terminal: a tmux pane (its own tmux server), driven as a person does
(send-keys, including C-c, which the terminal turns into SIGINT for the whole foreground
process group) and read back two ways: everything the pane printed, through `pipe-pane` into
a FIFO (waits are handshakes on that output, bounded), and the screen (`capture-pane`).
(tests/integration/tmuxterm.py is the report's terminal; this one adds the FIFO, C-c and the
pane's processes.)"""

from __future__ import annotations

import os
import re
import select
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\r")
START = "lab-pane-start"


class TmuxPane:
    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, width: int = 120, height: int = 40):
        self.dir = Path(tempfile.mkdtemp(prefix="lab-tmux-"))
        self.server = self.dir / "tmux.sock"  # a private server, its socket in the 0700 temp dir
        self.fifo = self.dir / "pane.fifo"
        os.mkfifo(self.fifo)
        # O_RDWR: the read end never sees EOF, so select() blocks until output arrives.
        self.fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        self.out = b""
        self.pos = 0
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        # The pane waits for a line before starting the program, so pipe-pane is in place
        # first; after the program the pane prints its exit status (also to a file) and idles
        # until the server is killed.
        self.status_file = self.dir / "status"
        # `set -m`: the program runs as a job in its own foreground process group, as from an
        # interactive shell, so the terminal's Ctrl-C reaches it and not this shell.
        script = (f"set -m; read _; env {envs} {shlex.join(argv)}; echo lab-exit=$? | tee {shlex.quote(str(self.status_file))}; "
                  f"exec tail -f /dev/null")
        # In the pane's own directory: `python -m` imports from the working directory first.
        self.tmux("new-session", "-d", "-s", "t", "-c", str(self.dir), "-x", str(width), "-y", str(height), "sh", "-c", script)
        self.tmux("pipe-pane", "-t", "t", f"cat > {shlex.quote(str(self.fifo))}")
        self.shell_pid = int(self.tmux("display", "-p", "-t", "t", "#{pane_pid}").strip())
        self.send("Enter")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", str(self.server), "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True).stdout

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def line(self, text: str) -> None:
        self.send("-l", text)
        self.send("Enter")

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """Waits for `pattern` in the pane's output after the previous match."""
        rx = re.compile(pattern.encode())
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.text(), self.pos)
            if m:
                self.pos = m.end()
                return m
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"no {pattern!r} within {timeout:g} s; screen:\n{self.screen()}")
            try:
                self.out += os.read(self.fd, 65536)
            except BlockingIOError:
                pass

    def exit_status(self, timeout: float = 30.0) -> int:
        """The program's exit status, once the pane has printed it."""
        m = self.expect(r"lab-exit=(\d+)", timeout)
        return int(m.group(1))

    def text(self) -> bytes:
        return ANSI.sub(b"", self.out)

    def screen(self) -> str:
        try:
            return self.tmux("capture-pane", "-p", "-t", "t")
        except subprocess.CalledProcessError:  # the pane is gone: what it printed
            return "(pane gone) " + self.text().decode(errors="replace")[-1500:]

    def children(self, pid: int) -> list[int]:
        out = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return out

    def descendants(self, pid: int) -> list[int]:
        todo, seen = [pid], []
        while todo:
            p = todo.pop()
            try:
                kids = self.children(p)
            except OSError:
                continue
            seen += kids
            todo += kids
        return seen

    def close(self) -> None:
        try:
            self.tmux("kill-server")
        except subprocess.CalledProcessError:
            pass
        os.close(self.fd)
        for f in self.dir.iterdir():
            f.unlink()
        self.dir.rmdir()
