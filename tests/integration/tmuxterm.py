"""A real terminal for the tests: a private tmux server (its socket in a 0700 temp dir), one
window of a chosen size, a command run in it as a person would type it, and the screen read
back with capture-pane. Imported by name (tests/ has no packages)."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path


class Tmux:
    def __init__(self, width: int, height: int = 50) -> None:
        self.width, self.height = width, height
        self._dir = tempfile.TemporaryDirectory(prefix="lab-tmux-")
        self.socket = Path(self._dir.name) / "tmux.sock"

    def tmux(self, *args: str, timeout: float = 30) -> str:
        r = subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True,
                           timeout=timeout)
        assert r.returncode == 0, f"tmux {' '.join(args)}: {r.stderr}"
        return r.stdout

    def __enter__(self) -> "Tmux":
        self.tmux("-f", "/dev/null", "new-session", "-d", "-x", str(self.width), "-y", str(self.height),
                  "env", "-u", "COLUMNS", "-u", "LINES", "sh")
        self.tmux("set-option", "-g", "history-limit", "20000")
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, timeout=30)
        self._dir.cleanup()

    def run(self, argv: list[str], *, timeout: float = 300, env: dict | None = None) -> tuple[int, list[str], str]:
        """Types `argv` into the shell, waits for it to end (tmux wait-for: a handshake, not a
        sleep) and returns its exit status, the screen's lines of its output with wrapped lines
        joined (-J: a line the program printed longer than the window shows as one long line),
        and every byte it wrote to the terminal (pipe-pane: progress displays since erased)."""
        self.tmux("send-keys", "clear", "Enter")
        self.tmux("clear-history")
        raw = Path(self._dir.name) / "pane.raw"
        raw.write_bytes(b"")
        self.tmux("pipe-pane", "-o", f"cat >> {shlex.quote(str(raw))}")
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        command = (f"echo lab-start; {prefix} {shlex.join(argv)}; echo \"lab-status=$?\"; "
                   f"tmux -S {self.socket} wait-for -S lab-done")
        self.tmux("send-keys", "-l", command)
        self.tmux("send-keys", "Enter")
        self.tmux("wait-for", "lab-done", timeout=timeout)
        self.tmux("pipe-pane")  # stops the copy
        lines = self.tmux("capture-pane", "-p", "-J", "-S", "-").splitlines()
        start = lines.index("lab-start")
        end = next(i for i in range(len(lines) - 1, start, -1) if lines[i].startswith("lab-status="))
        return int(lines[end].split("=", 1)[1]), lines[start + 1:end], raw.read_text(errors="replace")
