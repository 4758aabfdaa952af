"""QEMU profiles: small declarative TOML files in qemu-configs/, one per name.

A profile names the machine, accelerator, CPU model and memory; the lab adds everything that
is per run (sockets, logs, the kernel). Keys:

    description  one line for `lab profiles`
    machine      -machine type (pc, q35, microvm)
    accel        tcg | kvm
    cpu          -cpu model
    memory       -m size
    requires     paths that must be readable and writable (e.g. /dev/kvm)
    args         extra QEMU argv elements
    boot         multiboot (default) | bios: how the kernel is loaded (lab/host/bootpath.py);
                 `--boot` on the command line overrides it
    qemu         which QEMU runs it: `system` (default), a name `lab qemus` lists (`10.0`) or a
                 path to a binary (lab/host/qemus.py); `--qemu` and lab.toml's [vm] qemu override it
    display      none (default) | std | bochs: the guest's framebuffer (DISPLAYS); `--display`
                 overrides it. The host shows no window either way (`-display none`); the HTML
                 report shows the guest's screen (QMP screendump) when there is one
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from lab.host.bootpath import DEFAULT_BOOT, check_boot
from lab.errors import UserError
from lab.host.toolchain import CONFIG_DIR

DEFAULT_PROFILE = "tcg"
#: The guest's display adapter, by name: QEMU arguments. `none` is headless; `std` is QEMU's
#: standard VGA (VBE linear framebuffer, what GRUB's and Limine's framebuffer requests get);
#: `bochs` the bochs-display device (a framebuffer with no VGA legacy).
DISPLAYS = {"none": ("-vga", "none"), "std": ("-vga", "std"),
            "bochs": ("-vga", "none", "-device", "bochs-display")}
DEFAULT_DISPLAY = "none"


def check_display(display: str) -> str:
    if display not in DISPLAYS:
        raise UserError(f"unknown display {display!r}; choose one of: {', '.join(DISPLAYS)}")
    return display


#: QEMU's -m: a number with an optional unit.
MEMORY = re.compile(r"[1-9][0-9]*[KMGT]?")
#: The most vCPUs the lab asks QEMU for (`-smp`): the pc machine's limit in QEMU 7.2.
MAX_CPUS = 255


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    machine: str
    accel: str
    cpu: str
    memory: str
    requires: tuple[str, ...] = ()
    args: tuple[str, ...] = field(default_factory=tuple)
    boot: str = DEFAULT_BOOT
    qemu: str | None = None  # lab/host/qemus.py resolve(): None is the system's
    display: str = DEFAULT_DISPLAY

    def with_qemu(self, qemu: str | None) -> "Profile":
        """This profile run by another QEMU (None keeps the profile's own)."""
        return self if qemu is None else replace(self, qemu=qemu)

    @property
    def qemu_build(self):
        """The QEMU that runs this profile (lab/host/qemus.py), probed once per process."""
        from lab.host import qemus

        return qemus.resolve(self.qemu)

    @property
    def backend(self) -> str:
        """What a measurement belongs to: the accelerator and QEMU's version, e.g. "tcg/10.0.2"."""
        return f"{self.accel}/{self.qemu_build.version_str}"

    def with_display(self, display: str | None) -> "Profile":
        """This profile with its display replaced (None keeps the profile's own)."""
        return self if display is None else replace(self, display=check_display(display))

    @property
    def display_args(self) -> list[str]:
        return list(DISPLAYS[self.display])

    def with_boot(self, boot: str | None) -> "Profile":
        """This profile with its boot path replaced (None keeps the profile's own)."""
        return self if boot is None else replace(self, boot=check_boot(boot))

    def customized(self, *, memory: str | None = None, initrd: Path | None = None,
                   qemu_args: tuple[str, ...] = (), cpus: int | None = None) -> "Profile":
        """This profile with the user's additions: its memory size replaced, an initrd (for
        Linux-style kernels), the number of vCPUs (`-smp N`) and extra QEMU arguments
        appended. Every one of them is part of the command line, so of the saved ready
        state's key too."""
        if memory is not None and not MEMORY.fullmatch(memory):
            raise UserError(f"--memory {memory!r}: a size such as 512M or 2G")
        if cpus is not None and not (isinstance(cpus, int) and 1 <= cpus <= MAX_CPUS):
            raise UserError(f"--cpus {cpus!r}: a number of vCPUs, 1-{MAX_CPUS}")
        extra = list(qemu_args)
        if cpus is not None:
            extra = ["-smp", str(cpus), *extra]
        if initrd is not None:
            if not initrd.is_file():
                raise UserError(f"initrd not found: {initrd}")
            extra = ["-initrd", str(initrd.resolve()), *extra]
        if memory is None and not extra:
            return self
        return replace(self, memory=memory or self.memory, args=(*self.args, *extra))

    @property
    def cpus(self) -> int:
        """The vCPUs QEMU will start: the last `-smp N` (or `-smp cpus=N,...`) of the
        arguments, else 1."""
        args, n = list(self.args), 1
        for i, a in enumerate(args[:-1]):
            if a == "-smp":
                first = args[i + 1].split(",")[0]
                n = int(first.removeprefix("cpus=")) if first.removeprefix("cpus=").isdigit() else n
        return n

    @property
    def is_tcg(self) -> bool:
        return self.accel == "tcg"

    def check_usable(self) -> None:
        for path in self.requires:
            if not os.access(path, os.R_OK | os.W_OK):
                raise UserError(f"profile {self.name!r} needs {path}, which is missing or not "
                                f"accessible here; use --profile tcg")

    def qemu_args(self) -> list[str]:
        return ["-machine", f"{self.machine},accel={self.accel}", "-cpu", self.cpu,
                "-m", self.memory, *self.args]


def available(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in config_dir.glob("*.toml"))


def load(name: str, config_dir: Path = CONFIG_DIR) -> Profile:
    """The profile called `name` in `config_dir`, or, when `name` is a path (it holds a `/` or
    ends in `.toml`), the profile in that file, named after the file."""
    if "/" in name or name.endswith(".toml"):
        path = Path(name)
        if path.is_dir():
            raise UserError(f"profile {path}: a directory, not a profile file")
        if not path.is_file():
            raise UserError(f"profile file not found: {path}")
        name = path.stem
    else:
        path = config_dir / f"{name}.toml"
        if not path.is_file():
            names = ", ".join(available(config_dir)) or "(none)"
            raise UserError(f"unknown profile {name!r}; available profiles: {names}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"profile {path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"profile {path}: invalid ({exc})") from None
    keys = {"description", "machine", "accel", "cpu", "memory", "requires", "args", "boot", "qemu", "display"}
    unknown = sorted(set(data) - keys)
    missing = sorted({"description", "machine", "accel", "cpu", "memory"} - set(data))
    if unknown or missing:
        raise UserError(f"profile {path}: " + "; ".join(
            ([f"unknown key(s) {', '.join(unknown)}"] if unknown else []) +
            ([f"missing key(s) {', '.join(missing)}"] if missing else [])) + f" (keys: {', '.join(sorted(keys))})")
    try:
        return Profile(
            name=name,
            description=str(data["description"]),
            machine=str(data["machine"]),
            accel=str(data["accel"]),
            cpu=str(data["cpu"]),
            memory=str(data["memory"]),
            requires=tuple(data.get("requires", ())),
            args=tuple(str(a) for a in data.get("args", ())),
            boot=check_boot(str(data.get("boot", DEFAULT_BOOT))),
            qemu=str(data["qemu"]) if "qemu" in data else None,
            display=check_display(str(data.get("display", DEFAULT_DISPLAY))),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"profile {path}: invalid ({type(exc).__name__}: {exc})") from None
