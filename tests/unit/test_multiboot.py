"""Which loader a kernel file needs, from its bytes: Multiboot 1 and Multiboot2 headers (magic,
alignment, search range, checksum), ISO 9660 images, the grub.cfg the lab writes and the drive
QEMU is given. No QEMU."""

from __future__ import annotations

import struct

import pytest

from lab.errors import ToolMissing, UserError
from lab.host import bootpath, grub
from lab.host.kernelfile import DISK, ELF32, ISO, identify, multiboot_versions, needs_grub, require_disk, require_kernel

MB1, MB2 = 0x1BADB002, 0xE85250D6


def elf32() -> bytearray:
    head = bytearray(64)
    head[:4], head[4], head[18] = b"\x7fELF", 1, 0x03  # ELFCLASS32, EM_386
    return head


def mb1(flags: int = 0, fix: int = 0) -> bytes:
    return struct.pack("<III", MB1, flags, (-(MB1 + flags) + fix) & 0xFFFFFFFF)


def mb2(length: int = 24, fix: int = 0) -> bytes:
    return struct.pack("<IIII", MB2, 0, length, (-(MB2 + length) + fix) & 0xFFFFFFFF) + struct.pack("<HHI", 0, 0, 8)


def kernel_with(*headers: tuple[int, bytes], size: int = 40000) -> bytes:
    data = elf32() + bytearray(size - 64)
    for at, header in headers:
        data[at:at + len(header)] = header
    return bytes(data)


@pytest.mark.parametrize("headers, versions", [
    ([], ()),
    ([(4096, mb1())], (1,)),
    ([(4096, mb2())], (2,)),
    ([(64, mb1()), (128, mb2())], (1, 2)),
    ([(4096, mb1(fix=1))], ()),                 # checksum off by one
    ([(4096, mb2(fix=1))], ()),
    ([(4098, mb1())], ()),                      # not 4-byte aligned
    ([(4100, mb2())], ()),                      # 4-byte but not 8-byte aligned
    ([(8192, mb1())], ()),                      # past Multiboot 1's 8 KiB
    ([(8192, mb2())], (2,)),                    # inside Multiboot2's 32 KiB
    ([(32768, mb2())], ()),                     # past it
    ([(32768 - 16, mb2())], (2,)),              # the last place it may start (16 fixed bytes)
    ([(4096, mb1(flags=3))], (1,)),             # flags count in the checksum
])
def test_multiboot_headers(tmp_path, headers, versions):
    k = tmp_path / "k.elf"
    k.write_bytes(kernel_with(*headers))
    assert multiboot_versions(k) == versions
    assert needs_grub(k) == (versions == (2,))


def test_a_short_file_has_no_header(tmp_path):
    k = tmp_path / "k.elf"
    k.write_bytes(bytes(elf32()) + mb2()[:10])
    assert multiboot_versions(k) == ()


def test_a_multiboot2_header_in_a_non_elf_needs_no_grub(tmp_path):
    disk = bytearray(40000)
    disk[510:512] = b"\x55\xaa"
    disk[4096:4096 + 24] = mb2()
    d = tmp_path / "d.img"
    d.write_bytes(bytes(disk))
    assert identify(d) == DISK and not needs_grub(d)


def _iso(hybrid: bool) -> bytes:
    data = bytearray(0x9000)
    data[0x8000:0x8006] = b"\x01CD001"
    if hybrid:
        data[510:512] = b"\x55\xaa"
    return bytes(data)


@pytest.mark.parametrize("hybrid", [True, False])
def test_an_iso_is_an_image_not_a_kernel(tmp_path, hybrid):
    iso = tmp_path / "x.iso"
    iso.write_bytes(_iso(hybrid))
    assert identify(iso) == ISO and require_disk(iso) == ISO
    with pytest.raises(UserError, match="ISO 9660 image, not a kernel; pass it with --image"):
        require_kernel(iso)
    argv = bootpath.media_args("multiboot", None, image=iso)
    assert argv[:2] == ["-drive", f"format=raw,media=cdrom,readonly=on,file={iso}"]


def test_cd001_elsewhere_is_not_an_iso(tmp_path):
    f = tmp_path / "x.img"
    data = bytearray(_iso(False))
    data[0x8000:0x8006] = b"\x01CD002"
    f.write_bytes(bytes(data))
    with pytest.raises(UserError, match="not an ELF file"):
        identify(f)


def test_a_disk_is_still_a_disk_drive(tmp_path):
    d = tmp_path / "d.img"
    d.write_bytes(bytes(510) + b"\x55\xaa")
    assert bootpath.media_args("bios", None, image=d, append="x")[:2] == \
        ["-drive", f"format=raw,file={d},snapshot=on"]


@pytest.mark.parametrize("cmdline, line", [
    (None, "multiboot2 /boot/kernel.elf"),
    ("", "multiboot2 /boot/kernel.elf"),
    ("a  b", "multiboot2 /boot/kernel.elf 'a' 'b'"),
    ("$HOME;reboot", "multiboot2 /boot/kernel.elf '$HOME;reboot'"),
    ("it's", "multiboot2 /boot/kernel.elf 'it'\\''s'"),
])
def test_grub_cfg_quotes_every_word(cmdline, line):
    cfg = grub.grub_cfg(cmdline)
    assert f"    {line}\n" in cfg and "set timeout=0" in cfg and cfg.count("multiboot2") == 1


def test_grub_cfg_refuses_a_newline():
    with pytest.raises(UserError, match="one line of printable text"):
        grub.grub_cfg("a\nreboot")


def test_missing_grub_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(grub.shutil, "which", lambda name: None)
    k = tmp_path / "k.elf"
    k.write_bytes(kernel_with((4096, mb2())))
    with pytest.raises(ToolMissing, match="grub-mkrescue not found: .*grub-pc-bin"):
        grub.grub_image(k, None, cache=tmp_path / "c")


def test_missing_platform_names_its_package(tmp_path, monkeypatch):
    monkeypatch.setattr(grub, "GRUB_LIB", tmp_path / "nothing")
    monkeypatch.setattr(grub.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(ToolMissing, match="i386-pc modules are missing.*grub-pc-bin"):
        grub.mkrescue()
