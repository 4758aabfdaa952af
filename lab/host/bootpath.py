"""The ways the lab boots a kernel, and the QEMU arguments each needs.

| path | medium | loader | kernel command line |
|---|---|---|---|
| `multiboot` | the kernel ELF, `-kernel` | QEMU's Multiboot 1 loader | `-append` (Multiboot info) |
| `bios` | a raw disk image from `cargo bootimage`, `-drive format=raw` | SeaBIOS, then bootloader 0.9 | fw_cfg file `opt/lab/cmdline` |
| (either) | a Multiboot2 ELF, on a GRUB ISO the lab makes (lab/host/grub.py), as a CD-ROM | GRUB (BIOS or, with `uefi`, EFI) | `multiboot2` arguments in its grub.cfg |
| `uefi` | an EFI executable on a FAT image the lab makes (lab/host/esp.py), or a UEFI disk image | OVMF (lab/host/ovmf.py) | `\\startup.nsh` on that image, run by OVMF's UEFI shell |

The lab kernel boots by the first two. Symbols always come from the ELF: the BIOS image embeds
the same ELF with its debug info stripped (bootloader 0.9's build script), so every address the
lab reads is the same on both paths. `uefi` is for other kernels: an EFI-stub Linux (Debian's
vmlinuz), a UEFI application, a disk with an EFI system partition. An ISO 9660 image (`--image
X.iso`) boots as a CD-ROM on every path (El Torito: SeaBIOS and OVMF both boot it).
"""

from __future__ import annotations

import re
from pathlib import Path

from lab.errors import LabError, UserError

MULTIBOOT = "multiboot"
BIOS = "bios"
UEFI = "uefi"
#: The lab kernel's boot paths (`lab build --boot` makes the media for each).
BOOT_PATHS = (MULTIBOOT, BIOS)
#: Every boot path (`--boot`, a profile's `boot` key).
ALL_BOOT_PATHS = (*BOOT_PATHS, UEFI)
DEFAULT_BOOT = MULTIBOOT
#: Machine types without the flash chips OVMF is mapped into.
NO_PFLASH_MACHINES = ("microvm",)
#: Guest memory the uefi path gives at least: with the profiles' 128 MiB, OVMF's shell took a
#: #PF or a #UD as it started Debian's vmlinuz (8 MiB) from startup.nsh; 256 MiB boots it.
UEFI_MIN_MEMORY_MIB = 256

#: fw_cfg file the kernel reads its command line from on the BIOS path (kernel/src/drivers/fw_cfg.rs).
FW_CFG_CMDLINE = "opt/lab/cmdline"


def check_boot(boot: str) -> str:
    if boot not in ALL_BOOT_PATHS:
        raise UserError(f"unknown boot path {boot!r}; choose one of: {', '.join(ALL_BOOT_PATHS)}")
    return boot


def bios_image(kernel: Path) -> Path:
    """The disk image `cargo bootimage` makes for `kernel`: `bootimage-<bin>.bin` beside it."""
    return kernel.with_name(f"bootimage-{kernel.name}.bin")


def memory_for(boot: str, memory: str) -> str:
    """The -m size to give the guest: the profile's `memory`, raised to UEFI_MIN_MEMORY_MIB
    on the uefi path (a size QEMU reads: a number, MiB by default, or with K, M, G, T)."""
    if boot != UEFI:
        return memory
    m = re.fullmatch(r"(\d+)([KMGT]?)B?", memory.strip(), re.IGNORECASE)
    if m is None:
        return memory  # a form this does not read (size=...,slots=...): QEMU's to judge
    mib = int(m.group(1)) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1 << 20}[m.group(2).upper()]
    return memory if mib >= UEFI_MIN_MEMORY_MIB else f"{UEFI_MIN_MEMORY_MIB}M"


def check_media(boot: str, kernel: Path | None, append: str | None = None,
                image: Path | None = None, machine: str | None = None) -> None:
    """What `media_args` would refuse, refused now, before any process or directory exists:
    for `uefi`, the firmware, and the kernel (an EFI executable) with its FAT image, made
    (and cached) here; on every path, an EFI executable that is not a Linux bzImage needs
    `uefi`. One line (UserError) each."""
    from lab.host.kernelfile import EFI, identify

    check_boot(boot)
    if boot == UEFI:
        machine_type = (machine or "").split(",")[0]
        if machine_type in NO_PFLASH_MACHINES:
            raise UserError(f"the {machine_type} machine has no flash for UEFI firmware; boot UEFI on "
                            f"pc or q35 (--profile tcg or tcg-q35)")
        from lab.host import ovmf

        ovmf.find()
        _uefi_drive(kernel, append, image)
    elif image is None and kernel is not None and identify(kernel) == EFI:
        raise UserError(f"{kernel}: an EFI executable; boot it with --uefi")
    elif image is None and kernel is not None:
        _grub_drive(kernel, append)


def media_args(boot: str, kernel: Path | None, append: str | None = None,
               image: Path | None = None, private_dir: Path | None = None) -> list[str]:
    """QEMU arguments that load `kernel` by `boot`, with the kernel command line `append`; or,
    given `image`, that boot that disk through the firmware (`kernel` then only names
    symbols). The `uefi` path writes the run's copy of the firmware's variable store into
    `private_dir`, the run's own 0700 directory."""
    check_boot(boot)
    if boot == UEFI:
        from lab.host import ovmf

        if private_dir is None:
            raise LabError("the uefi boot path needs the run's private directory (for its copy "
                           "of the firmware's variable store)")
        return ovmf.find().pflash_args(private_dir) + _uefi_drive(kernel, append, image)
    if image is None and kernel is not None:
        grub = _grub_drive(kernel, append)
        if grub is not None:
            return grub
    if image is None and boot == MULTIBOOT:
        # QEMU's -kernel takes a Multiboot ELF and a Linux bzImage alike.
        return ["-kernel", str(kernel)] + (["-append", append] if append is not None else [])
    if image is None:
        image = bios_image(kernel)
        if not image.is_file():
            raise UserError(f"no BIOS disk image for {kernel} (expected {image}); build it with "
                            f"`lab build --boot bios` (cargo bootimage)")
    return _disk(image, append)


def _grub_drive(kernel: Path, append: str | None) -> list[str] | None:
    """The GRUB CD-ROM for a Multiboot2-only ELF (made and cached here), or None for any other."""
    from lab.host.kernelfile import needs_grub

    if not needs_grub(kernel):
        return None
    from lab.host.grub import grub_image

    return _disk(grub_image(kernel, append), None)


def _disk(image: Path, append: str | None) -> list[str]:
    from lab.host.kernelfile import is_iso

    if is_iso(image):
        # A CD-ROM (El Torito) on every path; read-only, so parallel VMs share it.
        argv = ["-drive", f"format=raw,media=cdrom,readonly=on,file={_escape(str(image))}"]
    else:
        # snapshot=on: the image is only read, so any number of VMs (parallel tests) can share
        # it without QEMU's image locks getting in the way; guest writes go to a throw-away overlay.
        argv = ["-drive", f"format=raw,file={_escape(str(image))},snapshot=on"]
    if append is not None:
        argv += ["-fw_cfg", f"name={FW_CFG_CMDLINE},string={_escape(append)}"]
    return argv


def _uefi_drive(kernel: Path | None, append: str | None, image: Path | None) -> list[str]:
    """The disk OVMF boots: `image`, or the FAT image holding the EFI executable `kernel`."""
    if image is not None:
        return _disk(image, append)
    if kernel is None:
        raise UserError("--uefi boots an EFI executable (--kernel) or a UEFI disk image (--image)")
    grub = _grub_drive(kernel, append)
    if grub is not None:
        return grub
    from lab.host.esp import esp_image
    from lab.host.kernelfile import require_efi

    require_efi(kernel)
    return _disk(esp_image(kernel, append), None)


def serial_handshake(boot: str, kernel: Path | None, append: str | None = None,
                     image: Path | None = None) -> tuple[bytes, str] | None:
    """What the lab must answer on the serial console once the guest runs, as (regex, the line
    to send), or None: on `uefi` with a command line, OVMF's UEFI shell counts down before it runs
    startup.nsh until a key arrives (lab/host/esp.py)."""
    from lab.host.kernelfile import needs_grub

    if boot == UEFI and image is None and kernel is not None and append is not None \
            and not needs_grub(kernel):  # GRUB takes its command line from grub.cfg
        from lab.host.esp import SHELL_COUNTDOWN, SHELL_COUNTDOWN_REPLY

        return SHELL_COUNTDOWN, SHELL_COUNTDOWN_REPLY
    return None


def _escape(value: str) -> str:
    """QEMU option values: a comma is written as two."""
    return value.replace(",", ",,")
