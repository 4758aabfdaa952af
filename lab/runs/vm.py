"""What a run boots and how: the kernel (or disk image), the profile, the command line, the
symbols, where logs go, the bound on reaching the stop, and whether the saved ready state
may be restored. Built once (by the CLI from its options, or by a caller) and handed to
every runner, which opens its sessions from it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from lab.errors import UserError
from lab.host.bootpath import UEFI, check_media
from lab.host.build import build_kernel
from lab.host import profiles
from lab.host.config import DEFAULT_KVM_READY_TIMEOUT, DEFAULT_READY_TIMEOUT, LabConfig
from lab.host.profiles import Profile
from lab.labkernel.contract import MAX_CPUS as LAB_KERNEL_MAX_CPUS, is_lab_kernel, require_lab_kernel
from lab.machine.session import Session, Stop


@dataclass(frozen=True)
class VmSpec:
    kernel: Path | None
    profile: Profile
    ready_timeout: float = 10.0
    log_dir: Path | None = None
    restore: bool = True  # False: always boot (the CLI's --fresh)
    append: str | None = None  # kernel command line
    image: Path | None = None  # a raw disk image booted through the firmware (BIOS or UEFI)
    symbols: Path | None = None  # an ELF or a System.map

    def __post_init__(self) -> None:
        # What QEMU would refuse to boot (UEFI firmware, an EFI executable's FAT image, made
        # here), refused in one line before any run directory or process exists.
        check_media(self.profile.boot, self.kernel, self.append, self.image, machine=self.profile.machine)

    def session(self, **overrides) -> Session:
        """A Session of this VM; `overrides` replace any of Session's options."""
        options = {"ready_timeout": self.ready_timeout, "log_dir": self.log_dir,
                   "restore": self.restore, "append": self.append, "image": self.image,
                   "symbols": self.symbols, **overrides}
        return Session(self.kernel, self.profile, **options)

    def with_logs(self, log_dir: Path | None) -> "VmSpec":
        return replace(self, log_dir=log_dir)


def kernel_for(kernel: Path | None, *, image: Path | None = None, command: str = "",
               needs_lab_kernel: bool = False, release: bool = False, boot: str | None = None) -> Path | None:
    """The kernel a run boots: `kernel` when given (checked, before anything boots, to be the
    lab kernel when `needs_lab_kernel`), none when only a disk image is (symbols, if any, come
    from --symbols), else the lab kernel, built."""
    if image is not None and kernel is None:
        return None
    if kernel is not None:
        if needs_lab_kernel:
            require_lab_kernel(kernel, command)
        return kernel
    if boot == UEFI:
        raise UserError("--uefi boots an EFI executable (--kernel) or a UEFI disk image (--image); "
                        "the lab kernel boots by Multiboot or from its BIOS disk (--boot)")
    return build_kernel(release=release, quiet=True, boot=boot)


def _pick(given, configured, default=None):
    """A value the caller gave, else lab.toml's, else the default."""
    return given if given is not None else configured if configured is not None else default


def stop_from(cfg: LabConfig, *, at: str | None = None, after: float | None = None,
              when: str | None = None) -> Stop:
    """The stop the caller names, else lab.toml's, else the ready point."""
    if at is None and after is None and when is None:
        return Stop(at=cfg.at, after=cfg.after, when=cfg.when)
    return Stop(at=at, after=after, when=when)


def spec_from(cfg: LabConfig, *, kernel: Path | None = None, profile: str | None = None,
              qemu: str | None = None, boot: str | None = None, display: str | None = None,
              memory: str | None = None, initrd: Path | None = None,
              cpus: int | None = None,
              qemu_args=(), append: str | None = None, image: Path | None = None,
              symbols: Path | None = None, ready_timeout: float | None = None,
              log_dir: Path | None = None, restore: bool = True, command: str = "",
              needs_lab_kernel: bool = False, release: bool = False) -> VmSpec:
    """The VM the caller's options name (the CLI's flags, lab.api.boot's keywords), each one
    falling back to lab.toml's (`cfg`), then to the default; lab.toml's QEMU arguments come
    before the caller's. The kernel is built (lab.toml's build command, or the lab kernel) or
    checked first."""
    prof = profiles.load(_pick(profile, cfg.profile, profiles.DEFAULT_PROFILE))
    prof = prof.with_qemu(_pick(qemu, cfg.qemu)).with_boot(_pick(boot, cfg.boot)).with_display(display).customized(
        memory=_pick(memory, cfg.memory), initrd=_pick(initrd, cfg.initrd), cpus=_pick(cpus, cfg.cpus),
        qemu_args=(*cfg.qemu_args, *qemu_args))
    image = _pick(image, cfg.image)
    if kernel is None and cfg.kernel is not None:
        cfg.build_kernel()
        kernel = cfg.kernel
    kernel = kernel_for(kernel, image=image, command=command, needs_lab_kernel=needs_lab_kernel,
                        release=release, boot=prof.boot)
    if prof.cpus > LAB_KERNEL_MAX_CPUS and kernel is not None and is_lab_kernel(kernel):
        raise UserError(f"--cpus {prof.cpus}: the lab kernel starts at most {LAB_KERNEL_MAX_CPUS} CPUs "
                        f"(kernel/src/smp MAX_CPUS); other kernels take up to QEMU's {profiles.MAX_CPUS}")
    return VmSpec(kernel, prof, ready_timeout=_pick(ready_timeout, cfg.ready_timeout,
                                                          DEFAULT_KVM_READY_TIMEOUT if prof.accel == "kvm" else DEFAULT_READY_TIMEOUT),
                  log_dir=log_dir, restore=restore, append=_pick(append, cfg.append), image=image,
                  symbols=_pick(symbols, cfg.symbols))
