"""The GRUB image the lab makes for a Multiboot2 kernel (`--kernel ELF` with a Multiboot2 header).

QEMU's `-kernel` loads Multiboot 1 kernels (and Linux), not Multiboot2 ones: it refuses them
("Error loading uncompressed kernel without PVH ELF Note"). For those the lab makes an ISO 9660
image with `grub-mkrescue` (Debian's grub-common, with grub-pc-bin for BIOS and
grub-efi-amd64-bin for UEFI, and xorriso), holding the kernel as `/boot/kernel.elf` and a
`grub.cfg` that boots it at once:

    set timeout=0
    menuentry "lab" { multiboot2 /boot/kernel.elf ARGS...; boot }

The one image boots both ways, as a CD-ROM (El Torito): SeaBIOS runs GRUB's i386-pc core, OVMF
its x86_64-efi one (the ESP image inside the ISO). GRUB enters the kernel in 32-bit protected
mode with EAX = 0x36d76289 and EBX = the Multiboot2 information (Multiboot2 spec §3.3), on both.
`--append` is the kernel's command line (GRUB splits it into words and joins them with single
spaces; each word is single-quoted in grub.cfg, so `$` and `;` reach the kernel as written;
GRUB itself writes a backslash before each quote and backslash, grub_create_loader_cmdline). Symbols come from the ELF itself.

Images are cached by content (the kernel's bytes, the grub.cfg and GRUB's version) in
`$XDG_CACHE_HOME/x86-kernel-lab/grub`, written to a temporary file there and renamed into place,
like the EFI system partitions (lab/host/esp.py). Delete the folder to reclaim the space (each
image is about 5 MiB plus the kernel).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from lab.host.cache import cache_dir as host_cache
from lab.errors import LabError, ToolMissing, UserError
from lab.host.kernelfile import identity

#: Bumped whenever the layout of the image changes, so older cached images are not reused.
FORMAT = b"lab-grub-1"
KERNEL_PATH = "boot/kernel.elf"
GRUB_PACKAGE_HINT = ("install Debian's grub-common, grub-pc-bin, grub-efi-amd64-bin and xorriso "
                     "(bash lab/setup.sh)")
#: GRUB's platform directories grub-mkrescue puts in the image, and the package of each.
PLATFORMS = {"i386-pc": "grub-pc-bin", "x86_64-efi": "grub-efi-amd64-bin"}
GRUB_LIB = Path("/usr/lib/grub")
MKRESCUE_TIMEOUT = 120.0  # seconds; normally about 1 s


def cache_dir() -> Path:
    return host_cache("grub")


def _quote(word: str) -> str:
    """One word of a grub.cfg command, single-quoted (GRUB's script quoting follows sh)."""
    return "'" + word.replace("'", "'\\''") + "'"


def grub_cfg(cmdline: str | None) -> str:
    """The grub.cfg that boots the kernel with `cmdline` at once."""
    if cmdline is not None and not cmdline.isprintable():
        raise UserError(f"--append {cmdline!r}: a GRUB command line is one line of printable text")
    args = "".join(" " + _quote(w) for w in (cmdline or "").split())
    return "\n".join(("set timeout=0", "set default=0", 'menuentry "lab" {',
                      f"    multiboot2 /{KERNEL_PATH}{args}", "    boot", "}", ""))


def mkrescue() -> str:
    """grub-mkrescue's path, with both platforms and xorriso present; ToolMissing otherwise."""
    tool = shutil.which("grub-mkrescue")
    if tool is None:
        raise ToolMissing(f"grub-mkrescue not found: a Multiboot2 kernel boots from a GRUB image; "
                          f"{GRUB_PACKAGE_HINT}")
    for platform, package in PLATFORMS.items():
        if not (GRUB_LIB / platform).is_dir():
            raise ToolMissing(f"GRUB's {platform} modules are missing ({GRUB_LIB / platform}): "
                              f"install Debian's {package} (bash lab/setup.sh)")
    if shutil.which("xorriso") is None:
        raise ToolMissing(f"xorriso not found (grub-mkrescue writes the ISO with it): {GRUB_PACKAGE_HINT}")
    return tool


def _version(tool: str) -> bytes:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().encode()


#: This process's answers: (file, size, mtime, cmdline, cache) -> image.
_made: dict[tuple, Path] = {}


def grub_image(kernel: Path, cmdline: str | None = None, cache: Path | None = None) -> Path:
    """The GRUB ISO that boots the Multiboot2 `kernel` with `cmdline`, made once and cached."""
    cfg = grub_cfg(cmdline)
    cache = cache or cache_dir()
    known = (*identity(kernel), cmdline, str(cache))
    if known in _made and _made[known].is_file():
        return _made[known]
    try:
        data = kernel.read_bytes()  # only on a miss: the content names the cached image
    except OSError as exc:
        raise UserError(f"kernel cannot be read: {kernel}: {exc.strerror or exc}") from None
    tool = mkrescue()
    digest = hashlib.sha256(b"\0".join((FORMAT, _version(tool), cfg.encode(), data))).hexdigest()
    image = cache / f"{digest[:40]}.iso"
    if not image.is_file():
        _make(tool, image, data, cfg)
    _made[known] = image
    return image


def _make(tool: str, image: Path, data: bytes, cfg: str) -> None:
    cache = image.parent
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the GRUB image cache {cache}: {exc.strerror or exc}") from None
    with tempfile.TemporaryDirectory(dir=cache, prefix=".tree-") as tree:
        root = Path(tree)
        (root / "boot" / "grub").mkdir(parents=True)
        (root / KERNEL_PATH).write_bytes(data)
        (root / "boot" / "grub" / "grub.cfg").write_text(cfg)
        fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=".tmp-", suffix=".iso")
        os.close(fd)
        tmp = Path(tmp_name)
        argv = [tool, "-o", str(tmp), str(root)]
        try:
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=MKRESCUE_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise LabError(f"grub-mkrescue did not finish in {MKRESCUE_TIMEOUT:.0f} s",
                               command=argv) from None
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise LabError(f"grub-mkrescue failed: {last}", command=argv, status=done.returncode)
            os.replace(tmp, image)
        finally:
            tmp.unlink(missing_ok=True)
