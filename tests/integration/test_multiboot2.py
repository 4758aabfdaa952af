"""A Multiboot2 kernel by `--kernel` alone: the lab sees the header, makes a GRUB image
(grub-mkrescue, cached by content) and boots it as a CD-ROM, through SeaBIOS and through OVMF
(`--uefi`); `--append` reaches the kernel as the Multiboot2 command-line tag. An ISO 9660 image
given by `--image` boots as a CD-ROM, hybrid or not. Controls: the same kernel with a wrong
header checksum is no Multiboot2 kernel (QEMU refuses it, exit 2, with the reason); a Multiboot 1
kernel still goes to QEMU's own loader (EAX 0x2BADB002, no GRUB)."""

from __future__ import annotations

import struct

import pytest

from lab.api import boot
from lab.host import grub
from labtest import lab_cli
from tinykernels import STOP, TinySpec, tiny_kernel

MB2_BOOTLOADER_MAGIC = 0x36D76289  # EAX from a Multiboot2 loader (Multiboot2 spec §3.3)
MB1_BOOTLOADER_MAGIC = 0x2BADB002
MB2_TAG_CMDLINE, MB2_TAG_END = 1, 0
CMDLINE = "console=ttyS0 it's $HOME; x"
# GRUB writes a backslash before each quote and backslash of the arguments it joins
# (grub_create_loader_cmdline), so a kernel can split its command line as Linux does.
SEEN = "console=ttyS0 it\\'s $HOME; x"

pytestmark = pytest.mark.skipif(
    not all(p.is_dir() for p in (grub.GRUB_LIB / "i386-pc", grub.GRUB_LIB / "x86_64-efi")),
    reason="the GRUB image needs Debian's grub-pc-bin, grub-efi-amd64-bin and xorriso (bash lab/setup.sh)")


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    d = tmp_path_factory.mktemp("mb2")
    return {name: tiny_kernel(d, name, TinySpec(multiboot=mb))
            for name, mb in (("mb2", 2), ("mb2-bad", "2-bad"), ("mb1", 1))}


def _boot_record(vm) -> tuple[int, str | None]:
    """EAX at the kernel's entry, and the command line from the Multiboot2 information at EBX."""
    magic, info = struct.unpack("<II", vm.read_memory(vm.address_of("boot_magic"), 8))
    if magic != MB2_BOOTLOADER_MAGIC:
        return magic, None
    total, _ = struct.unpack("<II", vm.read_memory(info, 8))
    data = vm.read_memory(info, total)
    at = 8
    while at + 8 <= total:
        kind, size = struct.unpack_from("<II", data, at)
        if kind == MB2_TAG_CMDLINE:
            return magic, data[at + 8:at + size].split(b"\0")[0].decode()
        if kind == MB2_TAG_END:
            break
        at += (size + 7) & ~7
    return magic, ""


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_a_multiboot2_elf_boots_through_grub(kernels, firmware):
    extra = ["--uefi"] if firmware == "uefi" else []
    r = lab_cli("inspect", "--kernel", str(kernels["mb2"]), "--at", STOP, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"stopped at {STOP}" in " ".join(r.stdout.split())  # the header may wrap
    with boot(kernels["mb2"], at=STOP, append=CMDLINE,
              boot_path="uefi" if firmware == "uefi" else None) as vm:
        magic, cmdline = _boot_record(vm)
    assert magic == MB2_BOOTLOADER_MAGIC, f"EAX at entry {magic:#x}: not entered by a Multiboot2 loader"
    assert cmdline == SEEN  # $ and ; intact: each word is quoted in grub.cfg


def test_the_grub_image_is_cached_by_content(kernels, tmp_path):
    first = grub.grub_image(kernels["mb2"], CMDLINE, cache=tmp_path)
    grub._made.clear()
    again = grub.grub_image(kernels["mb2"], CMDLINE, cache=tmp_path)
    other = grub.grub_image(kernels["mb2"], "other", cache=tmp_path)
    assert first == again and other != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({first.name, other.name})


def test_a_bad_multiboot2_checksum_is_no_kernel(kernels):
    r = lab_cli("inspect", "--kernel", str(kernels["mb2-bad"]), "--at", STOP)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "PVH ELF Note" in r.stderr and "Multiboot2 header" in r.stderr


def test_a_multiboot1_kernel_still_uses_qemus_loader(kernels):
    with boot(kernels["mb1"], at=STOP) as vm:
        magic, _ = _boot_record(vm)
    assert magic == MB1_BOOTLOADER_MAGIC


@pytest.mark.parametrize("hybrid", [True, False])
def test_an_iso_image_boots_as_a_cdrom(kernels, tmp_path, hybrid):
    """grub-mkrescue's image is hybrid (an MBR as well); with the MBR zeroed it is a plain El
    Torito CD, which boots only as a CD-ROM."""
    iso = tmp_path / "k.iso"
    iso.write_bytes(grub.grub_image(kernels["mb2"], None, cache=tmp_path / "cache").read_bytes())
    if not hybrid:
        with open(iso, "r+b") as f:
            f.write(bytes(512))
    r = lab_cli("inspect", "--image", str(iso), "--kernel", str(kernels["mb2"]), "--at", STOP)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"stopped at {STOP}" in " ".join(r.stdout.split())  # the header may wrap
