"""`lab.toml`: a kernel developer's repo says once how its kernel is built, booted and stopped,
and which findings it expects. Found from the current directory upwards (or named with
--config); every command-line flag overrides it. Paths in it are relative to its directory.

    [kernel]
    path = "build/kernel.elf"     # what to boot: an ELF (Multiboot), a bzImage, an EFI binary
    build = "make -C kernel"      # run (in lab.toml's directory) before the kernel is used
    symbols = "build/System.map"  # an ELF or a System.map
    append = "console=ttyS0"      # the kernel command line
    initrd = "build/initrd.img"
    image = "build/disk.img"      # a raw disk booted through the BIOS instead
    boot = "multiboot"            # multiboot | bios | uefi

    [vm]
    profile = "tcg"               # a profile's name, or a TOML file
    qemu = "10.0"                 # which QEMU: system, a name `lab qemus` lists, or a path
    memory = "512M"
    cpus = 4                      # vCPUs (-smp)
    qemu_args = ["-smp", "2"]
    ready_timeout = 30            # seconds

    [stop]                        # one of:
    at = "kernel_main"            #   a symbol (demangled paths work) or an address
    after = 1.5                   #   seconds of running
    when = "Kernel panic"         #   a regex on the serial console

    [waivers]                     # expected findings: check id = the reason
    "tss.stacks-mapped" = "our #VC stack is mapped on first use"

A key the lab does not know, or a value of the wrong kind, is one line naming the key (exit 2).
"""

from __future__ import annotations

import math
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import BuildError, UserError

FILE_NAME = "lab.toml"
#: The bound on reaching the stop when neither the caller nor lab.toml gives one.
DEFAULT_READY_TIMEOUT = 10.0
#: KVM here is nested: a fresh boot was measured at 10-20 s on a loaded host.
DEFAULT_KVM_READY_TIMEOUT = 30.0

_STR, _NUM, _STRS, _CMD = "a string", "a positive number", "a list of strings", "a string or a list of strings"
_INT = "a positive whole number"
#: section -> key -> what the value must be.
SCHEMA: dict[str, dict[str, str]] = {
    "kernel": {"path": _STR, "build": _CMD, "symbols": _STR, "append": _STR, "initrd": _STR,
               "image": _STR, "boot": _STR},
    "vm": {"profile": _STR, "qemu": _STR, "memory": _STR, "cpus": _INT, "qemu_args": _STRS,
           "ready_timeout": _NUM},
    "stop": {"at": _STR, "after": _NUM, "when": _STR},
    "waivers": {},  # any check id, each a string
}
PATHS = {("kernel", "path"), ("kernel", "symbols"), ("kernel", "initrd"), ("kernel", "image")}


@dataclass(frozen=True)
class LabConfig:
    """A parsed lab.toml (or none: every value None, no waivers)."""

    path: Path | None = None
    kernel: Path | None = None
    build: tuple[str, ...] | None = None
    symbols: Path | None = None
    append: str | None = None
    initrd: Path | None = None
    image: Path | None = None
    boot: str | None = None
    profile: str | None = None
    qemu: str | None = None
    memory: str | None = None
    cpus: int | None = None
    qemu_args: tuple[str, ...] = ()
    ready_timeout: float | None = None
    at: str | None = None
    after: float | None = None
    when: str | None = None
    waivers: dict[str, str] = field(default_factory=dict)

    @property
    def directory(self) -> Path | None:
        return self.path.parent if self.path else None

    def build_kernel(self) -> None:
        """Runs [kernel] build in lab.toml's directory; BuildError with its output if it fails."""
        if not self.build:
            return
        import subprocess  # only a lab.toml with a build command needs it

        try:
            done = subprocess.run(list(self.build), cwd=self.directory, capture_output=True, text=True)
        except OSError as exc:
            raise UserError(f"{self.path}: kernel.build: cannot run {self.build[0]!r} ({exc.strerror or exc})") from None
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-2000:]
            raise BuildError(f"{self.path}: kernel.build failed:\n{tail}", command=list(self.build),
                             status=done.returncode)


def find(start: Path | None = None) -> Path | None:
    """The nearest lab.toml in `start` (the current directory) or a directory above it."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def load(path: Path | None) -> LabConfig:
    """The configuration in `path`; an empty one for None."""
    if path is None:
        return LabConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    values: dict = {}
    for section, table in data.items():
        if section not in SCHEMA:
            raise UserError(f"{path}: unknown section [{section}]; known: {', '.join(SCHEMA)}")
        if not isinstance(table, dict):
            raise UserError(f"{path}: {section} must be a table ([{section}])")
        for key, value in table.items():
            values[section, key] = _checked(path, section, key, value)
    kw: dict = {"path": path.resolve()}
    for (section, key), value in values.items():
        if section == "waivers":
            kw.setdefault("waivers", {})[key] = value
        elif (section, key) in PATHS:
            kw["kernel" if key == "path" else key] = (path.parent / value).resolve()
        elif (section, key) == ("kernel", "build"):
            kw["build"] = tuple(shlex.split(value) if isinstance(value, str) else value)
        elif key == "qemu_args":
            kw[key] = tuple(value)
        elif (section, key) == ("vm", "profile") and ("/" in value or value.endswith(".toml")):
            kw[key] = str((path.parent / value).resolve())
        elif (section, key) == ("vm", "qemu") and "/" in value:
            kw[key] = str((path.parent / value).expanduser().resolve())
        else:
            kw[key] = value
    stops = [k for k in ("at", "after", "when") if k in kw]
    if len(stops) > 1:
        raise UserError(f"{path}: [stop] takes one of at, after, when, not {' and '.join(stops)}")
    return LabConfig(**kw)


def _checked(path: Path, section: str, key: str, value):
    name = f"{section}.{key}"
    if section == "waivers":
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{path}: waivers.{key}: the reason, a non-empty string")
        return value
    want = SCHEMA[section].get(key)
    if want is None:
        raise UserError(f"{path}: unknown key {name}; [{section}] takes {', '.join(SCHEMA[section])}")
    ok = {
        _STR: isinstance(value, str),
        _NUM: isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value) and value > 0,
        _INT: isinstance(value, int) and not isinstance(value, bool) and value > 0,
        _STRS: isinstance(value, list) and all(isinstance(v, str) for v in value),
        _CMD: isinstance(value, str) and value.strip() != "" or
              isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value),
    }[want]
    if not ok:
        raise UserError(f"{path}: {name} must be {want}, not {value!r}")
    return float(value) if want == _NUM else value
