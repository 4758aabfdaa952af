"""Saved ready states: the lab kernel stopped at `lab_ready`, saved once, restored instead of
booted.

A restore skips the firmware, the loader and the kernel's start-up, so it pays most where
those are slow: the BIOS-image path (SeaBIOS, bootloader 0.9: about 0.25 s a VM) and KVM on
a nested host. `just bench` measures both ways side by side.

**Making a state** (once per QEMU, profile, kernel file and command line; the key says which):

1. a VM boots to the hardware breakpoint at `lab_ready`, as every session does;
2. the CPU is parked there in QEMU's *paused* run state. A breakpoint leaves the VM in the
   *debug* run state, and QEMU cannot restore a stream saved in it: the destination aborts
   with "invalid runstate transition: 'inmigrate' -> 'debug'" (QEMU's run-state table has no
   such edge, in 7.2 as in later releases). So gdb writes `jmp $` (EB FE) over the first two
   bytes of `lab_ready`, continues, and interrupts, which stops the VM as *paused*. The
   kernel reaches `lab_ready` with IF=0, so the spin takes no interrupt, and `jmp` changes no
   register or flag; the two bytes are written back before the save. RIP is checked.
3. QMP `migrate` writes the stream to a file descriptor the lab passes (SCM_RIGHTS).

The serial output of that boot is kept beside the stream: a restored session has its ready
line, and its `serial.log` starts with the boot that made the state.

**Restoring:** QEMU starts with `-incoming defer`; QMP `migrate-incoming` reads the stream
from a passed descriptor; the `MIGRATION` event "completed" is the handshake. The VM stays
paused at `lab_ready`, exactly where a booted session stops.

States live in `$XDG_CACHE_HOME/x86-kernel-lab/states` (or `~/.cache/...`), a stream of about
1 MB (Multiboot) to 6 MB (BIOS) each; the oldest beyond `KEEP` are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from lab.host.locks import exclusive

#: Bumped whenever what a state holds, or how it is made, changes.
FORMAT = 1
KEEP = 48
JMP_SELF = b"\xeb\xfe"  # jmp $ (rel8 -2): the CPU spins on one instruction


def state_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("LAB_STATE_DIR") or Path(base) / "x86-kernel-lab" / "states")


def _stat_identity(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino]


def state_key(argv: list[str], files: list[Path]) -> str:
    """What makes two boots identical: QEMU (its binary's identity), the whole boot command line
    (profile, machine, devices, kernel or image, kernel command line) and the identity of
    every file it loads (path, size, modification time, inode). Control channels and logs are
    not part of `argv` here."""
    qemu = Path(argv[0])
    parts = {"format": FORMAT, "argv": argv, "qemu": _stat_identity(qemu),
             "files": [_stat_identity(f) for f in files]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SavedState:
    """A state on disk: the migration stream and what the boot that made it printed."""

    stream: Path
    meta: dict

    @property
    def ready_line(self) -> str:
        return self.meta["ready_line"]

    @property
    def boot_serial(self) -> str:
        return self.meta["serial"]

    @property
    def ready_address(self) -> int:
        return self.meta["ready_address"]


class StateStore:
    """The saved states of one directory, keyed by `state_key`."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or state_dir()

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.state", self.root / f"{key}.json"

    def find(self, key: str) -> SavedState | None:
        stream, meta = self._paths(key)
        try:
            data = json.loads(meta.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LabError(f"saved state {meta} is unreadable ({exc}); delete it, or pass --fresh") from None
        if data.get("format") != FORMAT or not stream.is_file():
            return None
        os.utime(meta)  # most recently used: kept longest
        return SavedState(stream, data)

    def lock(self, key: str):
        """An exclusive lock for making the state `key`: parallel runs wait, then find it."""
        return exclusive(self.root / f"{key}.lock")

    def publish(self, key: str, stream_tmp: Path, meta: dict) -> SavedState:
        """Moves a written stream into place, then its metadata (which `find` reads first)."""
        stream, meta_path = self._paths(key)
        os.replace(stream_tmp, stream)
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({**meta, "format": FORMAT}, indent=1))
        os.replace(tmp, meta_path)
        self._prune()
        return SavedState(stream, meta)

    def temp_stream(self, key: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f"{key}.state.{os.getpid()}.tmp"

    def discard(self, key: str) -> None:
        for path in self._paths(key):
            path.unlink(missing_ok=True)

    def _prune(self) -> None:
        metas = sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in metas[KEEP:]:
            self.discard(old.stem)
            (self.root / f"{old.stem}.lock").unlink(missing_ok=True)


def park_at_ready(gdb, qemu, ready: int) -> None:
    """With the CPU stopped by the breakpoint at `ready` (run state *debug*), leaves it at
    `ready` in the *paused* run state, memory unchanged (see the module's docstring)."""
    from lab.errors import GuestError

    original = gdb.read_memory(ready, len(JMP_SELF))
    gdb.write_memory(ready, JMP_SELF)
    try:
        gdb.cont()
        gdb.interrupt()
    finally:
        gdb.write_memory(ready, original)
    rip = gdb.registers(("rip",))["rip"]
    status = qemu.qmp_cmd("query-status")["status"]
    if rip != ready or status != "paused":
        raise GuestError(f"parking the CPU at lab_ready ({ready:#x}) left RIP at {rip:#x}, run state "
                         f"{status!r}; expected RIP at lab_ready, 'paused'", logs=qemu.run.logs)
