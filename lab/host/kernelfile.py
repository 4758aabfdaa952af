"""What a file given to the lab is: a kernel QEMU can load, or a disk it can boot.

| kind | how it is recognised | how QEMU boots it |
|---|---|---|
| `elf64` / `elf32` | `\\x7fELF`, EI_CLASS, e_machine x86-64 or i386 | `-kernel` (Multiboot header) |
| `bzimage` | `HdrS` at 0x202 (Linux boot protocol, Documentation/arch/x86/boot.rst) | `-kernel`, `-append` |
| `efi` | `MZ`, then `PE\\0\\0` at e_lfanew: PE32+ for x86-64 (the PE/COFF spec), an EFI subsystem | `--uefi`: a FAT image (lab/host/esp.py) |
| `disk` | 0x55 0xAA at 510 (an MBR boot sector, a GPT's protective MBR, a FAT boot sector) | `-drive format=raw` |

A Linux bzImage built with CONFIG_EFI_STUB (Debian's vmlinuz is one) is both a `bzimage` and
an EFI executable: `is_efi_executable` tells, whatever `identify` says.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import UserError

ELF64, ELF32, BZIMAGE, EFI, DISK = "elf64", "elf32", "bzimage", "efi", "disk"
KERNEL_KINDS = (ELF64, ELF32, BZIMAGE, EFI)

EI_CLASS, ELFCLASS32, ELFCLASS64 = 4, 1, 2
E_MACHINE, EM_386, EM_X86_64 = 18, 0x03, 0x3E
BZ_MAGIC_OFFSET, BZ_MAGIC = 0x202, b"HdrS"
MBR_SIGNATURE_OFFSET, MBR_SIGNATURE = 510, b"\x55\xaa"
# PE/COFF: the MZ stub's e_lfanew at 0x3c points at "PE\0\0", the COFF header (Machine first),
# then the optional header (Magic first; Subsystem at 68 in PE32+).
MZ_MAGIC, PE_OFFSET_FIELD, PE_SIGNATURE = b"MZ", 0x3C, b"PE\0\0"
IMAGE_FILE_MACHINE_AMD64, PE32_PLUS = 0x8664, 0x20B
COFF_HEADER_SIZE, SUBSYSTEM_OFFSET = 20, 68
#: EFI application, boot-service driver, runtime driver.
EFI_SUBSYSTEMS = (10, 11, 12)


def _pe_efi_x64(data: bytes) -> bool:
    """Whether `data` (a file's first bytes) is a PE32+ image for x86-64 with an EFI subsystem."""
    if data[:2] != MZ_MAGIC or len(data) < PE_OFFSET_FIELD + 4:
        return False
    pe = int.from_bytes(data[PE_OFFSET_FIELD:PE_OFFSET_FIELD + 4], "little")
    opt = pe + 4 + COFF_HEADER_SIZE
    if len(data) < opt + SUBSYSTEM_OFFSET + 2 or data[pe:pe + 4] != PE_SIGNATURE:
        return False
    word = lambda at: int.from_bytes(data[at:at + 2], "little")
    return (word(pe + 4) == IMAGE_FILE_MACHINE_AMD64 and word(opt) == PE32_PLUS
            and word(opt + SUBSYSTEM_OFFSET) in EFI_SUBSYSTEMS)


def _head(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as exc:
        raise UserError(f"kernel cannot be read: {path}: {exc.strerror or exc}") from None


#: Enough of a file to hold its PE headers (e_lfanew is small in practice: 0x40-0x100).
PE_HEAD_BYTES = 4096


def is_efi_executable(path: Path) -> bool:
    """Whether `path` is an EFI executable for x86-64 (an EFI-stub Linux included)."""
    return _pe_efi_x64(_head(path, PE_HEAD_BYTES))


def identify(path: Path) -> str:
    """The kind of `path`; a UserError in one line when it is none the lab can boot."""
    if not path.exists():
        raise UserError(f"kernel not found: {path}")
    if not path.is_file():
        raise UserError(f"kernel is not a file: {path}")
    head = _head(path, PE_HEAD_BYTES)
    if head[:4] == b"\x7fELF":
        if len(head) < 20:
            raise UserError(f"{path}: truncated ELF header")
        machine = head[E_MACHINE]
        if machine not in (EM_386, EM_X86_64):
            raise UserError(f"{path}: ELF for machine {machine:#x}, not x86")
        return ELF64 if head[EI_CLASS] == ELFCLASS64 else ELF32
    if head[BZ_MAGIC_OFFSET:BZ_MAGIC_OFFSET + 4] == BZ_MAGIC:
        return BZIMAGE
    if _pe_efi_x64(head):
        return EFI
    if head[MBR_SIGNATURE_OFFSET:MBR_SIGNATURE_OFFSET + 2] == MBR_SIGNATURE:
        return DISK
    raise UserError(f"{path}: not an ELF file, a Linux bzImage ('HdrS' at {BZ_MAGIC_OFFSET:#x}), "
                    f"an EFI executable (PE32+) or a boot disk (0x55AA at {MBR_SIGNATURE_OFFSET})")


def require_kernel(path: Path) -> str:
    kind = identify(path)
    if kind == DISK:
        raise UserError(f"{path}: a disk image, not a kernel; pass it with --image")
    return kind


def require_disk(path: Path) -> None:
    if identify(path) != DISK:
        raise UserError(f"{path}: not a bootable disk image (no 0x55AA boot-sector signature at 510)")


def require_efi(path: Path) -> None:
    """`path` must be an EFI executable (what --uefi puts on its FAT image)."""
    kind = identify(path)
    if kind == DISK:
        raise UserError(f"{path}: a disk image, not an EFI executable; pass it with --image")
    if not is_efi_executable(path):
        what = {ELF64: "a 64-bit ELF", ELF32: "a 32-bit ELF",
                BZIMAGE: "a Linux bzImage without the EFI stub (CONFIG_EFI_STUB)"}[kind]
        raise UserError(f"{path}: {what}, not an EFI executable (PE32+ for x86-64); --uefi boots "
                        f"EFI executables and UEFI disk images")
