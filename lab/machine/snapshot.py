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
3. QMP `migrate` writes the stream: to a `file:` URI where the QEMU has it (8.2 on; 10.0 warns
   that `fd:` on a file is deprecated), else to a file descriptor the lab passes (SCM_RIGHTS),
   decided by the version the binary reports (lab/host/qemus.py).

The serial output of that boot is kept beside the stream: a restored session has its ready
line, and its `serial.log` starts with the boot that made the state.

**Restoring:** QEMU starts with `-incoming defer`; QMP `migrate-incoming` reads the stream
the same way (`file:` or a passed descriptor); the `MIGRATION` event "completed" is the handshake. The VM stays
paused at `lab_ready`, exactly where a booted session stops.

States live in `$XDG_CACHE_HOME/x86-kernel-lab/states` (or `~/.cache/...`), a stream of about
1 MB (Multiboot) to 6 MB (BIOS) each; the oldest beyond `KEEP` are removed.

**Nothing poisons later runs:** a state is keyed by a digest of what the boot loads (the kernel
file's content, the BIOS image's), QEMU's identity and the command line, and the metadata
stores that digest, the stream's size and SHA-256 and the saving QEMU's version. A state that
does not match, whose metadata is unreadable, or that QEMU fails to load is discarded with one
warning line on stderr and made again. The directory must be the user's own and writable by
no one else (else UserError); its files are opened without following links, temporaries are
created exclusively under random names; a directory the lab cannot write (full, read-only)
means booting, with one warning.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError, UserError
from lab.host.locks import exclusive, owner_gone, owner_tag

#: Bumped whenever what a state holds, or how it is made, changes.
FORMAT = 2
KEEP = 48
JMP_SELF = b"\xeb\xfe"  # jmp $ (rel8 -2): the CPU spins on one instruction
#: How long a run waits for another that is making the same state, beyond the ready timeout:
#: QEMU's start (10 s), the park and the save (30 s), with margin. 60 s at the default.
LOCK_SLACK = 50.0
#: A temporary file of this store: `KEY.state.OWNER.RANDOM.tmp` (or `.json.`); OWNER is
#: `PID-STARTTIME` (lab/host/locks.py). The older `KEY.state.PID.tmp` is swept too.
_TEMP = re.compile(r"(?P<key>[^.]+)\.(?:state|json)\.(?P<pid>\d+)(?:-(?P<start>\d+)\.[A-Za-z0-9_]+)?\.tmp")
_RO = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC

_digests: dict[tuple, str] = {}  # (path, dev, inode, size, mtime, ctime) -> SHA-256, this process


def warn(message: str) -> None:
    """The one line a fallback prints: the run goes on, and says why."""
    print(f"lab: warning: {message}", file=sys.stderr, flush=True)


class BadState(LabError):
    """A saved state that cannot be used (corrupt, truncated, of another build, a link):
    it is discarded and made again."""


class StateDirUnusable(LabError):
    """The state dir cannot be created or written (read-only, full): the run boots."""


def state_dir() -> Path:
    from lab.host.cache import cache_dir

    return Path(os.environ.get("LAB_STATE_DIR") or cache_dir("states"))


def _stat_identity(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino]


def file_digest(path: Path) -> str:
    """SHA-256 of the file's content; computed once per process for a given path, device,
    inode, size, mtime and ctime (a rewrite or a touch changes the ctime, whatever the mtime)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        ident = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        digest = _digests.get(ident)
        if digest is None:
            with os.fdopen(os.dup(fd), "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            _digests[ident] = digest
        return digest
    finally:
        os.close(fd)


def state_key(argv: list[str], files: list[Path]) -> str:
    """What makes two boots identical: QEMU (its binary's identity: path, size, modification
    time, inode; its version is checked when a state is loaded), the whole boot command line
    (profile, machine, devices, kernel or image, kernel command line) and the content (SHA-256)
    of every file it loads. Control channels and logs are not part of `argv` here. The digest
    (64 hex digits) names the state and is stored in its metadata."""
    qemu = Path(argv[0])
    parts = {"format": FORMAT, "argv": argv, "qemu": _stat_identity(qemu),
             "files": [[str(f.resolve()), file_digest(f)] for f in files]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class SavedState:
    """A state on disk: the migration stream and what the boot that made it printed."""

    stream: Path
    meta: dict
    stream_id: tuple[int, int] = (0, 0)  # (device, inode) of the stream that was checked

    @property
    def key(self) -> str:
        return self.stream.name.removesuffix(".state")

    @property
    def ready_line(self) -> str:
        return self.meta["ready_line"]

    @property
    def boot_serial(self) -> str:
        return self.meta["serial"]

    @property
    def ready_address(self) -> int:
        return self.meta["ready_address"]

    @property
    def qemu_version(self) -> str | None:
        return self.meta.get("qemu_version")


#: Metadata fields a state needs, with their types.
_FIELDS = {"key": str, "ready_line": str, "ready_address": int, "serial": str,
           "stream_size": int, "stream_sha256": str}


class StateStore:
    """The saved states of one directory, keyed by `state_key`."""

    def __init__(self, root: Path | None = None, lock_timeout: float | None = None) -> None:
        self.root = root or state_dir()
        self.lock_timeout = lock_timeout  # None: LOCK_SLACK beyond the caller's ready timeout
        self._prepared = False

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.state", self.root / f"{key}.json"

    def prepare(self) -> None:
        """Creates the directory (mode 0700) if need be, refuses one that another user owns or
        others can write (UserError), and sweeps the temporaries of lab processes that ended
        without removing them. StateDirUnusable if it cannot be created."""
        if self._prepared:
            return
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = self.root.stat()
        except OSError as exc:
            raise StateDirUnusable(f"cannot create the state dir {self.root} ({exc.strerror})") from None
        if not stat.S_ISDIR(st.st_mode):
            raise StateDirUnusable(f"the state dir {self.root} is not a directory")
        hint = "or set LAB_STATE_DIR to a directory of your own, or pass --fresh"
        if st.st_uid != os.geteuid():
            raise UserError(f"the state dir {self.root} belongs to uid {st.st_uid}, not to you "
                            f"(uid {os.geteuid()}): the lab does not use states another user can "
                            f"change; remove it, {hint}")
        if st.st_mode & 0o022:
            who = " and ".join(w for w, bit in (("its group", 0o020), ("others", 0o002)) if st.st_mode & bit)
            raise UserError(f"the state dir {self.root} is writable by {who} (mode "
                            f"{stat.S_IMODE(st.st_mode):04o}): the lab does not use states another "
                            f"user can change; chmod 700 it, {hint}")
        self._prepared = True
        self.sweep()

    def sweep(self) -> list[Path]:
        """Removes this store's temporary files whose owner process has ended (a SIGKILLed
        save); only names the store makes, only regular files."""
        removed = []
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return removed
        for entry in entries:
            m = _TEMP.fullmatch(entry.name)
            if m is None or not entry.is_file(follow_symlinks=False):
                continue
            if owner_gone(int(m["pid"]), m["start"]):
                try:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
                except FileNotFoundError:
                    pass
        return removed

    def find(self, key: str) -> SavedState | None:
        """The state `key`, checked: None if there is none (or it is of an older format);
        BadState if it is there but unusable (say why; discard it under the lock, then make it)."""
        stream, meta_path = self._paths(key)
        try:
            fd = os.open(meta_path, _RO)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BadState(f"{meta_path} cannot be read ({_why(exc)})") from None
        try:
            with os.fdopen(fd, "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise BadState(f"{meta_path} is unreadable ({exc})") from None
        if not isinstance(data, dict):
            raise BadState(f"{meta_path} is unreadable (not a JSON object)")
        if data.get("format") != FORMAT:
            return None  # an older lab's: made again, replacing it
        for name, kind in _FIELDS.items():
            if not isinstance(data.get(name), kind):
                raise BadState(f"{meta_path} is unreadable (no valid {name!r})")
        if data["key"] != key:
            raise BadState(f"{meta_path} is of another build (digest {data['key'][:16]}..., "
                           f"expected {key[:16]}...)")
        try:
            fd = os.open(stream, _RO)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BadState(f"{stream} cannot be read ({_why(exc)})") from None
        try:
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise BadState(f"{stream} is not a regular file")
                if st.st_size != data["stream_size"]:
                    raise BadState(f"{stream} is {st.st_size} bytes, not the {data['stream_size']} "
                                   f"saved (truncated or emptied)")
                if hashlib.file_digest(f, "sha256").hexdigest() != data["stream_sha256"]:
                    raise BadState(f"{stream} does not match its SHA-256 (corrupt)")
        except OSError as exc:
            raise BadState(f"{stream} cannot be read ({_why(exc)})") from None
        try:
            os.utime(meta_path, follow_symlinks=False)  # most recently used: kept longest
        except OSError:
            pass  # a read-only store: its states are still good, only not reordered
        return SavedState(stream, data, (st.st_dev, st.st_ino))

    def lock(self, key: str, timeout: float):
        """An exclusive lock for making the state `key`: parallel runs wait (at most `timeout`,
        or the store's own bound), then find it. A symbolic link planted in the lock's place
        is removed, with a warning, not followed."""
        path = self.root / f"{key}.lock"
        if path.is_symlink():
            path.unlink(missing_ok=True)
            warn(f"removed {path}: a symbolic link where the lab keeps a lock file (not followed)")
        bound = self.lock_timeout if self.lock_timeout is not None else timeout
        return exclusive(path, bound, f"the saved ready state {key[:16]}..., which another run is making")

    def _temp(self, key: str, kind: str) -> tuple[int, Path]:
        """A new empty file for `key`'s stream (or metadata), created exclusively (O_EXCL,
        never through a link, mode 0600) under a random name that names its owner."""
        self.prepare()
        fd, name = tempfile.mkstemp(prefix=f"{key}.{kind}.{owner_tag()}.", suffix=".tmp", dir=self.root)
        return fd, Path(name)

    def temp_stream(self, key: str) -> Path:
        fd, path = self._temp(key, "state")
        os.close(fd)
        return path

    def publish(self, key: str, stream_tmp: Path, meta: dict) -> SavedState:
        """Moves a written stream into place, then its metadata (which `find` reads first).
        The metadata records the key, the stream's size and SHA-256. OSError if the store
        cannot take it (full, read-only)."""
        stream, meta_path = self._paths(key)
        with open(stream_tmp, "rb") as f:
            st = os.fstat(f.fileno())
            sha = hashlib.file_digest(f, "sha256").hexdigest()
        meta = {**meta, "format": FORMAT, "key": key, "stream_size": st.st_size, "stream_sha256": sha}
        fd, tmp = self._temp(key, "json")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(meta, indent=1))
            os.replace(stream_tmp, stream)
            os.replace(tmp, meta_path)
        finally:
            tmp.unlink(missing_ok=True)
        self._prune()
        return SavedState(stream, meta, (st.st_dev, st.st_ino))

    def discard(self, key: str, only: SavedState | None = None) -> None:
        """Removes the state `key`: with `only`, if it is still that state (the same stream
        file), not one another run has made since."""
        stream, meta = self._paths(key)
        if only is not None:
            try:
                st = os.lstat(stream)
            except FileNotFoundError:
                return
            if (st.st_dev, st.st_ino) != only.stream_id:
                return
        for path in (meta, stream):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                warn(f"cannot remove {path} ({exc.strerror}); it is checked again on every use")

    def _prune(self) -> None:
        def mtime(p):
            try:
                return p.lstat().st_mtime
            except FileNotFoundError:
                return 0
        metas = sorted(self.root.glob("*.json"), key=mtime, reverse=True)
        for old in metas[KEEP:]:
            self.discard(old.stem)
            (self.root / f"{old.stem}.lock").unlink(missing_ok=True)


def qemu_version(qemu) -> str:
    """The running QEMU's version, as QMP `query-version` gives it: "7.2.22 (Debian ...)"."""
    v = qemu.qmp_cmd("query-version")
    number = "{major}.{minor}.{micro}".format(**v["qemu"])
    return f"{number} ({v['package'].strip()})" if v.get("package", "").strip() else number


def summary(exc: LabError, limit: int = 500) -> str:
    """A LabError's message (QEMU's output included) on one line, for a warning."""
    text = " / ".join(line.strip() for line in exc.message.splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def free_space(path: Path) -> str:
    """How much room is left beside `path`, for a warning about a write that failed."""
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return f"free space unknown ({exc.strerror})"
    return f"{st.f_bavail * st.f_frsize // 1024} KiB free there"


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link: the lab does not follow links in its state dir"
    return exc.strerror or str(exc)


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
