"""The two ways the lab boots a kernel, and the QEMU arguments each needs.

| path | medium | loader | kernel command line |
|---|---|---|---|
| `multiboot` | the kernel ELF, `-kernel` | QEMU's Multiboot 1 loader | `-append` (Multiboot info) |
| `bios` | a raw disk image from `cargo bootimage`, `-drive format=raw` | SeaBIOS, then bootloader 0.9 | fw_cfg file `opt/lab/cmdline` |

Symbols always come from the ELF: the image embeds the same ELF with its debug info stripped
(bootloader 0.9's build script), so every address the lab reads is the same on both paths.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import UserError

MULTIBOOT = "multiboot"
BIOS = "bios"
BOOT_PATHS = (MULTIBOOT, BIOS)
DEFAULT_BOOT = MULTIBOOT

#: fw_cfg file the kernel reads its command line from on the BIOS path (kernel/src/drivers/fw_cfg.rs).
FW_CFG_CMDLINE = "opt/lab/cmdline"


def check_boot(boot: str) -> str:
    if boot not in BOOT_PATHS:
        raise UserError(f"unknown boot path {boot!r}; choose one of: {', '.join(BOOT_PATHS)}")
    return boot


def bios_image(kernel: Path) -> Path:
    """The disk image `cargo bootimage` makes for `kernel`: `bootimage-<bin>.bin` beside it."""
    return kernel.with_name(f"bootimage-{kernel.name}.bin")


def media_args(boot: str, kernel: Path | None, append: str | None = None,
               image: Path | None = None) -> list[str]:
    """QEMU arguments that load `kernel` by `boot`, with the kernel command line `append`; or,
    given `image`, that boot that disk through the BIOS (`kernel` then only names symbols)."""
    check_boot(boot)
    if image is None and boot == MULTIBOOT:
        # QEMU's -kernel takes a Multiboot ELF and a Linux bzImage alike.
        return ["-kernel", str(kernel)] + (["-append", append] if append is not None else [])
    if image is None:
        image = bios_image(kernel)
        if not image.is_file():
            raise UserError(f"no BIOS disk image for {kernel} (expected {image}); build it with "
                            f"`lab build --boot bios` (cargo bootimage)")
    # snapshot=on: the image is only read, so any number of VMs (parallel tests) can share it
    # without QEMU's image locks getting in the way; guest writes go to a throw-away overlay.
    argv = ["-drive", f"format=raw,file={_escape(str(image))},snapshot=on"]
    if append is not None:
        argv += ["-fw_cfg", f"name={FW_CFG_CMDLINE},string={_escape(append)}"]
    return argv


def _escape(value: str) -> str:
    """QEMU option values: a comma is written as two."""
    return value.replace(",", ",,")
