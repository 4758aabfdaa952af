"""What a file given to the lab is: a kernel QEMU can load, or a disk it can boot.

| kind | how it is recognised | how QEMU boots it |
|---|---|---|
| `elf64` / `elf32` | `\\x7fELF`, EI_CLASS, e_machine x86-64 or i386 | `-kernel` (Multiboot header) |
| `bzimage` | `HdrS` at 0x202 (Linux boot protocol, Documentation/arch/x86/boot.rst) | `-kernel`, `-append` |
| `disk` | 0x55 0xAA at 510 (an MBR boot sector) | `-drive format=raw` |
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import UserError

ELF64, ELF32, BZIMAGE, DISK = "elf64", "elf32", "bzimage", "disk"
KERNEL_KINDS = (ELF64, ELF32, BZIMAGE)

EI_CLASS, ELFCLASS32, ELFCLASS64 = 4, 1, 2
E_MACHINE, EM_386, EM_X86_64 = 18, 0x03, 0x3E
BZ_MAGIC_OFFSET, BZ_MAGIC = 0x202, b"HdrS"
MBR_SIGNATURE_OFFSET, MBR_SIGNATURE = 510, b"\x55\xaa"


def identify(path: Path) -> str:
    """The kind of `path`; a UserError in one line when it is none the lab can boot."""
    if not path.exists():
        raise UserError(f"kernel not found: {path}")
    if not path.is_file():
        raise UserError(f"kernel is not a file: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(0x210)
    except OSError as exc:
        raise UserError(f"kernel cannot be read: {path}: {exc.strerror or exc}") from None
    if head[:4] == b"\x7fELF":
        if len(head) < 20:
            raise UserError(f"{path}: truncated ELF header")
        machine = head[E_MACHINE]
        if machine not in (EM_386, EM_X86_64):
            raise UserError(f"{path}: ELF for machine {machine:#x}, not x86")
        return ELF64 if head[EI_CLASS] == ELFCLASS64 else ELF32
    if head[BZ_MAGIC_OFFSET:BZ_MAGIC_OFFSET + 4] == BZ_MAGIC:
        return BZIMAGE
    if head[MBR_SIGNATURE_OFFSET:MBR_SIGNATURE_OFFSET + 2] == MBR_SIGNATURE:
        return DISK
    raise UserError(f"{path}: not an ELF file, a Linux bzImage ('HdrS' at {BZ_MAGIC_OFFSET:#x}) "
                    f"or a boot disk (0x55AA at {MBR_SIGNATURE_OFFSET})")


def require_kernel(path: Path) -> str:
    kind = identify(path)
    if kind == DISK:
        raise UserError(f"{path}: a disk image, not a kernel; pass it with --image")
    return kind


def require_disk(path: Path) -> None:
    if identify(path) != DISK:
        raise UserError(f"{path}: not a bootable disk image (no 0x55AA boot-sector signature at 510)")
