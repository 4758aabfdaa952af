"""What a file given to the lab is: a kernel QEMU can load, or a disk it can boot.

| kind | how it is recognised | how QEMU boots it |
|---|---|---|
| `elf64` / `elf32` | `\\x7fELF`, EI_CLASS, e_machine x86-64 or i386 | `-kernel` (Multiboot header) |
| `bzimage` | `HdrS` at 0x202 (Linux boot protocol, Documentation/arch/x86/boot.rst) | `-kernel`, `-append` |
| `efi` | `MZ`, then `PE\\0\\0` at e_lfanew: PE32+ for x86-64 (the PE/COFF spec), an EFI subsystem | `--uefi`: a FAT image (lab/host/esp.py) |
| `iso` | `CD001` at 0x8001 (ISO 9660's primary volume descriptor, sector 16) | `-drive media=cdrom` (El Torito), hybrid or not |
| `disk` | 0x55 0xAA at 510 (an MBR boot sector, a GPT's protective MBR, a FAT boot sector) | `-drive format=raw` |

An ELF's boot protocol is read from its header: a Multiboot 1 header (magic 0x1BADB002, 4-byte
aligned in the first 8 KiB, Multiboot spec §3.1.1) goes to QEMU's `-kernel`; one with only a
Multiboot2 header (magic 0xE85250D6, 8-byte aligned in the first 32 KiB, Multiboot2 spec §3.1.1)
boots from a GRUB image the lab makes (lab/host/grub.py). Each header counts only with a checksum
that makes its fields sum to 0 (mod 2^32).

A Linux bzImage built with CONFIG_EFI_STUB (Debian's vmlinuz is one) is both a `bzimage` and
an EFI executable: `is_efi_executable` tells, whatever `identify` says.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import UserError

ELF64, ELF32, BZIMAGE, EFI, DISK, ISO = "elf64", "elf32", "bzimage", "efi", "disk", "iso"
#: What boots from --image: a raw disk, or an ISO 9660 image as a CD-ROM.
IMAGE_KINDS = (DISK, ISO)
KERNEL_KINDS = (ELF64, ELF32, BZIMAGE, EFI)

EI_CLASS, ELFCLASS32, ELFCLASS64 = 4, 1, 2
E_MACHINE, EM_386, EM_X86_64 = 18, 0x03, 0x3E
BZ_MAGIC_OFFSET, BZ_MAGIC = 0x202, b"HdrS"
MBR_SIGNATURE_OFFSET, MBR_SIGNATURE = 510, b"\x55\xaa"
ISO_MAGIC_OFFSET, ISO_MAGIC = 0x8001, b"CD001"
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


MB1_MAGIC, MB1_SEARCH, MB1_ALIGN = 0x1BADB002, 8192, 4
MB2_MAGIC, MB2_SEARCH, MB2_ALIGN = 0xE85250D6, 32768, 8


def multiboot_versions(path: Path) -> tuple[int, ...]:
    """The Multiboot versions whose header `path` carries: (), (1,), (2,) or (1, 2)."""
    head = _head(path, MB2_SEARCH)
    word = lambda at: int.from_bytes(head[at:at + 4], "little")
    found = []
    # Multiboot 1: magic, flags, checksum with magic + flags + checksum = 0.
    if any(word(at) == MB1_MAGIC and (word(at) + word(at + 4) + word(at + 8)) & 0xFFFFFFFF == 0
           for at in range(0, min(len(head), MB1_SEARCH) - 11, MB1_ALIGN)):
        found.append(1)
    # Multiboot2: magic, architecture, header_length, checksum, summing to 0.
    if any(word(at) == MB2_MAGIC and sum(word(at + 4 * i) for i in range(4)) & 0xFFFFFFFF == 0
           for at in range(0, len(head) - 15, MB2_ALIGN)):
        found.append(2)
    return tuple(found)


def is_iso(path: Path) -> bool:
    """Whether `path` is an ISO 9660 image (its primary volume descriptor's `CD001`)."""
    return _head(path, ISO_MAGIC_OFFSET + len(ISO_MAGIC))[ISO_MAGIC_OFFSET:] == ISO_MAGIC


def needs_grub(path: Path) -> bool:
    """Whether `path` is an ELF that only GRUB boots: a Multiboot2 header and no Multiboot 1."""
    return path.is_file() and _head(path, 4) == b"\x7fELF" and multiboot_versions(path) == (2,)


def identity(path: Path) -> tuple[str, int, int]:
    """(resolved path, size, mtime in ns): what a boot image made from `path` in this process
    is remembered by (lab/host/esp.py, grub.py), so checking a run's media and then making its
    command line read the file once. UserError when it cannot be read."""
    try:
        st = path.stat()
    except OSError as exc:
        raise UserError(f"kernel cannot be read: {path}: {exc.strerror or exc}") from None
    return str(path.resolve()), st.st_size, st.st_mtime_ns


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
    if is_iso(path):
        return ISO
    if head[MBR_SIGNATURE_OFFSET:MBR_SIGNATURE_OFFSET + 2] == MBR_SIGNATURE:
        return DISK
    raise UserError(f"{path}: not an ELF file, a Linux bzImage ('HdrS' at {BZ_MAGIC_OFFSET:#x}), "
                    f"an EFI executable (PE32+), an ISO 9660 image or a boot disk (0x55AA at "
                    f"{MBR_SIGNATURE_OFFSET})")


def require_kernel(path: Path) -> str:
    kind = identify(path)
    if kind in IMAGE_KINDS:
        raise UserError(f"{path}: a {'disk' if kind == DISK else 'ISO 9660'} image, not a kernel; "
                        f"pass it with --image")
    return kind


def require_disk(path: Path) -> str:
    """`path` must be a disk or an ISO image; its kind."""
    kind = identify(path)
    if kind not in IMAGE_KINDS:
        raise UserError(f"{path}: not a bootable disk image (no 0x55AA boot-sector signature at 510) "
                        f"or ISO 9660 image (no CD001 at {ISO_MAGIC_OFFSET:#x})")
    return kind


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
