"""The QEMUs the lab can run: the system's (Debian's 7.2) and private ones unpacked by set-up.

A private QEMU is a prefix made by `dpkg-deb -x` of Debian's packages (lab/setup.sh: QEMU 10.0
from bookworm-backports), never installed over the system's. It runs from that prefix: `-L`
names its firmware directories (its own `usr/share/qemu`, then its SeaBIOS build) and
`QEMU_MODULE_DIR` its modules (a QEMU refuses modules of another build).

Names: `system` is the QEMU on PATH (or $LAB_QEMU); each private prefix is named by its
version's major.minor (`10.0`). `--qemu`, a profile's `qemu` key and lab.toml's [vm] qemu take a
name or a path to a qemu-system-x86_64 binary. What a QEMU can do is decided from its version as
the binary itself reports it (`--version`), never from its name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lab.errors import ToolMissing, UserError

SYSTEM = "system"
BINARY = "qemu-system-x86_64"
#: "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"
_VERSION = re.compile(r"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?(?:\s*\((.*)\))?")
#: QEMU 8.2 added the `file:` migration URI (migration/file.c); 10.0 deprecates `fd:` on a file.
FILE_MIGRATION = (8, 2, 0)
PREFIX_BIN = Path("usr/bin") / BINARY
PREFIX_FIRMWARE = (Path("usr/share/qemu"), Path("usr/share/seabios"))
PREFIX_MODULES = Path("usr/lib/x86_64-linux-gnu/qemu")
SYSTEM_FIRMWARE = (Path("/usr/share/qemu"), Path("/usr/share/seabios"))
QBOOT = "qboot.rom"
_SETUP = "bash lab/setup.sh"

Version = tuple[int, int, int]


def parse_version(text: str) -> tuple[Version, str]:
    """(major, minor, micro) and the package's own version ("" when not given) from the first
    line of `qemu-system-x86_64 --version`; ValueError for anything else."""
    m = _VERSION.search(text)
    if m is None:
        raise ValueError(f"not a QEMU version banner: {text.strip()[:80]!r}")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)), (m.group(4) or "").strip()


def version_text(v: Version) -> str:
    return ".".join(map(str, v))


def parse_version_text(text: str) -> Version:
    """"10.0.2" or "8.0" as a version tuple; ValueError otherwise."""
    parts = text.strip().split(".")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a version: {text!r}")
    major, minor, *micro = map(int, parts)
    return major, minor, micro[0] if micro else 0


@dataclass(frozen=True)
class Qemu:
    """One QEMU binary with what it needs to run and what it can do."""

    name: str
    binary: Path
    version: Version
    package: str = ""
    firmware_dirs: tuple[Path, ...] = ()  # -L, in order (empty: the binary's built-in one)
    module_dir: Path | None = None
    private: bool = False
    search_dirs: tuple[Path, ...] = field(default=SYSTEM_FIRMWARE, compare=False)

    @property
    def version_str(self) -> str:
        return version_text(self.version)

    @property
    def file_migration(self) -> bool:
        """Whether QMP `migrate` takes a `file:` URI (else the lab passes a descriptor, `fd:`)."""
        return self.version >= FILE_MIGRATION

    def argv(self) -> list[str]:
        """The binary and its firmware directories: the start of every command line."""
        return [str(self.binary), *(a for d in self.firmware_dirs for a in ("-L", str(d)))]

    def env(self) -> dict[str, str]:
        """The environment QEMU runs in: this process's, with the prefix's module directory."""
        env = dict(os.environ)
        if self.module_dir is not None:
            env["QEMU_MODULE_DIR"] = str(self.module_dir)
        else:
            env.pop("QEMU_MODULE_DIR", None)
        return env

    def firmware(self, name: str) -> Path | None:
        """Where this QEMU finds the firmware file `name` (the first of its directories)."""
        for d in self.firmware_dirs or self.search_dirs:
            if (d / name).is_file():
                return d / name
        return None

    def microvm_bios(self) -> list[str]:
        """`-bios qboot.rom` for the microvm machine: its default `bios-microvm.bin` is qboot in
        Debian's 7.2 (a link) but SeaBIOS's microvm build from 8.0 on, which never loads a
        -kernel. Decided by looking at the file this QEMU would load, not by version."""
        default = self.firmware("bios-microvm.bin")
        if self.firmware(QBOOT) is None:
            return []
        if default is not None and default.resolve().name == QBOOT:
            return []
        return ["-bios", QBOOT]

    def describe(self) -> str:
        return f"QEMU {self.version_str}" + (f" ({self.name})" if self.name != SYSTEM else "")

    def to_json(self) -> dict:
        return {"name": self.name, "binary": str(self.binary), "version": self.version_str,
                "package": self.package, "private": self.private,
                "firmware_dirs": [str(d) for d in self.firmware_dirs],
                "module_dir": str(self.module_dir) if self.module_dir else None,
                "file_migration": self.file_migration}


def prefix_root() -> Path:
    """Where set-up unpacks private QEMUs: one prefix per version."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("LAB_QEMU_ROOT") or Path(base) / "x86-kernel-lab" / "qemu")


@lru_cache(maxsize=None)
def _probe(binary: str, module_dir: str | None) -> tuple[Version, str]:
    env = dict(os.environ)
    if module_dir:
        env["QEMU_MODULE_DIR"] = module_dir
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolMissing(f"{binary} cannot run ({exc}); {_SETUP}") from None
    try:
        return parse_version(done.stdout)
    except ValueError:
        raise ToolMissing(f"{binary} --version said {(done.stdout + done.stderr).strip()[:200]!r}, "
                          f"not a QEMU version; {_SETUP}") from None


def from_binary(binary: Path, name: str | None = None) -> Qemu:
    """The QEMU at `binary`: a private prefix's (…/usr/bin/qemu-system-x86_64, with its
    firmware and modules beside it) or any other, which uses its built-in directories."""
    binary = binary.absolute()
    prefix = binary.parents[2] if len(binary.parents) > 2 and binary.parent.parent.name == "usr" else None
    private = prefix is not None and (prefix / PREFIX_FIRMWARE[0]).is_dir() and not str(binary).startswith("/usr/")
    module_dir = prefix / PREFIX_MODULES if private else None
    version, package = _probe(str(binary), str(module_dir) if module_dir else None)
    firmware = tuple(prefix / d for d in PREFIX_FIRMWARE if (prefix / d).is_dir()) if private else ()
    label = name or (f"{version[0]}.{version[1]}" if private else SYSTEM)
    return Qemu(label, binary, version, package, firmware, module_dir, private)


def system() -> Qemu | None:
    found = shutil.which(os.environ.get("LAB_QEMU", BINARY))
    return from_binary(Path(found), SYSTEM) if found else None


def private() -> list[Qemu]:
    """The prefixes set-up unpacked, by version."""
    root = prefix_root()
    found = [from_binary(p / PREFIX_BIN) for p in sorted(root.iterdir()) if (p / PREFIX_BIN).is_file()] \
        if root.is_dir() else []
    return sorted(found, key=lambda q: q.version)


def found() -> list[Qemu]:
    """Every QEMU the lab can run: the system's first, then the private ones; one per version."""
    qemus, seen = [], set()
    for q in [q for q in (system(),) if q is not None] + private():
        if q.version not in seen:
            seen.add(q.version)
            qemus.append(q)
    return qemus


def resolve(spec: str | None) -> Qemu:
    """The QEMU `spec` names: None or "system" (the default), a name from `found()` ("10.0"),
    or a path to a binary."""
    return _resolve(spec or SYSTEM)


@lru_cache(maxsize=None)
def _resolve(spec: str) -> Qemu:
    if spec == SYSTEM:
        q = system()
        if q is None:
            raise ToolMissing(f"{os.environ.get('LAB_QEMU', BINARY)} not found on PATH; {_SETUP}")
        return q
    if "/" in spec:
        path = Path(spec).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UserError(f"--qemu {spec}: no executable QEMU there")
        return from_binary(path)
    qemus = found()
    for q in qemus:
        if spec in (q.name, q.version_str, f"{q.version[0]}.{q.version[1]}"):
            return q
    names = ", ".join(f"{q.name} ({q.version_str})" for q in qemus) or "(none)"
    raise UserError(f"unknown QEMU {spec!r}; found: {names} (a path to a binary works too; "
                    f"`{_SETUP}` unpacks QEMU 10.0)")
