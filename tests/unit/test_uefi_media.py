"""The uefi boot path without QEMU: EFI executables recognised, OVMF found (or one line naming
the package), the FAT image made by the real mtools and cached by content, the startup.nsh
escaping, the QEMU arguments, and the --uefi option."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from lab.errors import LabError, UserError
from lab.host import esp, ovmf
from lab.host.bootpath import (MULTIBOOT, UEFI, check_media, media_args, memory_for,
                               serial_handshake)
from lab.host.kernelfile import BZIMAGE, EFI, identify, is_efi_executable, require_efi

MTOOLS = {"MTOOLSRC": os.devnull, "MTOOLS_SKIP_CHECK": "1"}


def pe32plus(machine: int = 0x8664, subsystem: int = 10, magic: int = 0x20B, bzimage: bool = False) -> bytes:
    """The headers of a PE32+ image: the MZ stub with e_lfanew, "PE\\0\\0", the COFF header and
    the optional header up to Subsystem; `bzimage` adds Linux's "HdrS" at 0x202 (the EFI stub)."""
    data = bytearray(4096)
    data[:2] = b"MZ"
    struct.pack_into("<I", data, 0x3C, 0x80)
    data[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<H", data, 0x84, machine)
    struct.pack_into("<H", data, 0x98, magic)  # optional header, after the 20-byte COFF header
    struct.pack_into("<H", data, 0x98 + 68, subsystem)
    if bzimage:
        data[0x202:0x206] = b"HdrS"
    return bytes(data)


@pytest.fixture
def efi_app(tmp_path) -> Path:
    app = tmp_path / "app.efi"
    app.write_bytes(pe32plus() + b"payload" * 1000)
    return app


@pytest.fixture
def firmware(tmp_path, monkeypatch) -> ovmf.Firmware:
    code, store = tmp_path / "CODE.fd", tmp_path / "VARS.fd"
    code.write_bytes(b"c" * 4096)
    store.write_bytes(b"v" * 4096)
    monkeypatch.setenv(ovmf.ENV_CODE, str(code))
    monkeypatch.setenv(ovmf.ENV_VARS, str(store))
    return ovmf.Firmware(code, store)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "x86-kernel-lab" / "esp"


# -- EFI executables -------------------------------------------------------------------------

def test_an_efi_application_is_its_own_kind(efi_app):
    assert identify(efi_app) == EFI and is_efi_executable(efi_app)
    require_efi(efi_app)


def test_an_efi_stub_bzimage_is_a_bzimage_and_an_efi_executable(tmp_path):
    linux = tmp_path / "vmlinuz"
    linux.write_bytes(pe32plus(bzimage=True))
    assert identify(linux) == BZIMAGE and is_efi_executable(linux)


@pytest.mark.parametrize("data, needle", [
    (pe32plus(machine=0x14C), "not an ELF file, a Linux bzImage"),  # i386 PE: no kind at all
    (pe32plus(subsystem=3), "not an ELF file, a Linux bzImage"),  # a Windows console program
    (pe32plus(magic=0x10B), "not an ELF file, a Linux bzImage"),  # PE32, not PE32+
    (bytes(0x202) + b"HdrS" + bytes(100), "a Linux bzImage without the EFI stub"),
    (b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + b"\x02\x00\x3e\x00" + bytes(100), "a 64-bit ELF, not an EFI"),
    (bytes(510) + b"\x55\xaa", "a disk image, not an EFI executable; pass it with --image"),
])
def test_what_is_not_an_efi_executable_is_one_line(tmp_path, data, needle):
    path = tmp_path / "file"
    path.write_bytes(data)
    with pytest.raises(UserError, match=needle) as err:
        require_efi(path)
    assert "\n" not in str(err.value)


def test_an_efi_executable_without_uefi_is_refused(efi_app):
    with pytest.raises(UserError, match="an EFI executable; boot it with --uefi"):
        check_media(MULTIBOOT, efi_app)


# -- OVMF ------------------------------------------------------------------------------------

def test_missing_firmware_names_the_variable_and_the_package(monkeypatch):
    monkeypatch.setenv(ovmf.ENV_CODE, "/nonexistent/OVMF_CODE.fd")
    monkeypatch.delenv(ovmf.ENV_VARS, raising=False)
    with pytest.raises(UserError) as err:
        ovmf.find()
    message = str(err.value)
    assert message.startswith("UEFI firmware not found: /nonexistent/OVMF_CODE.fd (LAB_OVMF_CODE=")
    assert "Debian's ovmf package" in message and "\n" not in message


def test_the_store_defaults_to_the_codes_sibling(tmp_path, monkeypatch):
    code = tmp_path / "OVMF_CODE_4M.fd"
    code.write_bytes(b"c")
    monkeypatch.setenv(ovmf.ENV_CODE, str(code))
    monkeypatch.delenv(ovmf.ENV_VARS, raising=False)
    with pytest.raises(UserError, match="OVMF_VARS_4M.fd \\(default for LAB_OVMF_VARS\\)"):
        ovmf.find()
    (tmp_path / "OVMF_VARS_4M.fd").write_bytes(b"v")
    assert ovmf.find() == ovmf.Firmware(code, tmp_path / "OVMF_VARS_4M.fd")


def test_debians_firmware_when_installed(monkeypatch):
    monkeypatch.delenv(ovmf.ENV_CODE, raising=False)
    monkeypatch.delenv(ovmf.ENV_VARS, raising=False)
    if not (ovmf.DEBIAN_DIR / "OVMF_CODE_4M.fd").is_file():
        pytest.skip("Debian's ovmf package is not installed")
    fw = ovmf.find()
    assert fw.code.name == "OVMF_CODE_4M.fd" and fw.vars_template.name == "OVMF_VARS_4M.fd"


def test_pflash_code_read_only_and_a_private_copy_of_the_store(firmware, tmp_path):
    private = tmp_path / "run"
    private.mkdir(mode=0o700)
    argv = firmware.pflash_args(private)
    copy = private / ovmf.VARS_COPY
    assert argv == ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={firmware.code}",
                    "-drive", f"if=pflash,format=raw,unit=1,file={copy}"]
    assert copy.read_bytes() == firmware.vars_template.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    copy.write_bytes(b"written by the firmware")
    assert firmware.vars_template.read_bytes() == b"v" * 4096  # the template is never written


# -- the FAT image ---------------------------------------------------------------------------

def _ls(image: Path, path: str) -> str:
    return subprocess.run(["mdir", "-b", "-i", str(image), path], capture_output=True, text=True,
                          env={**os.environ, **MTOOLS}).stdout


def _cat(image: Path, path: str) -> bytes:
    return subprocess.run(["mtype", "-i", str(image), path], capture_output=True,
                          env={**os.environ, **MTOOLS}, check=True).stdout


def test_without_a_command_line_the_executable_is_the_default_boot_file(efi_app, cache):
    image = esp.esp_image(efi_app)
    assert image.parent == cache and stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert "BOOTX64.EFI" in _ls(image, "::/EFI/BOOT").upper()
    assert "startup.nsh" not in _ls(image, "::/").lower()
    assert subprocess.run(["mcopy", "-n", "-i", str(image), "::/EFI/BOOT/BOOTX64.EFI", str(efi_app.with_name("back"))],
                          env={**os.environ, **MTOOLS}).returncode == 0
    assert efi_app.with_name("back").read_bytes() == efi_app.read_bytes()
    # Nothing is written next to the user's file (the copy above is the test's own).
    assert sorted(p.name for p in efi_app.parent.iterdir() if p.is_file()) == ["app.efi", "back"]


def test_with_a_command_line_startup_nsh_runs_it(efi_app, cache):
    image = esp.esp_image(efi_app, "console=ttyS0 a,b x=\"y z\" 100% #1")
    assert "KERNEL.EFI" in _ls(image, "::/EFI/LAB").upper()
    assert "BOOTX64" not in _ls(image, "::/").upper()  # so OVMF falls back to its shell
    assert _cat(image, "::/startup.nsh") == (b"@echo -off\r\nfs0:\r\n"
                                             b'\\EFI\\LAB\\KERNEL.EFI console=ttyS0 a,b x="y z" 100^% ^#1\r\n')


def test_images_are_cached_by_content(efi_app, cache):
    first = esp.esp_image(efi_app)
    assert esp.esp_image(efi_app) == first
    assert esp.esp_image(efi_app, "quiet") != first  # another script
    efi_app.write_bytes(efi_app.read_bytes() + b"changed")
    changed = esp.esp_image(efi_app)
    assert changed != first and first.is_file()
    assert not list(cache.glob(".tmp-*"))  # every image was renamed into place


@pytest.mark.parametrize("cmdline, needle", [
    ("a|b", "does not pass | on"),
    ("a > b < c", "does not pass < > on"),
    ("a^b", "does not pass \\^ on"),
    ("a\nb", "one line of printable ASCII"),
    ("caf\u00e9", "one line of printable ASCII"),
])
def test_a_command_line_the_shell_would_change_is_refused(cmdline, needle):
    with pytest.raises(UserError, match=needle):
        esp.startup_script(cmdline)


def test_missing_mtools_is_one_line(efi_app, cache, monkeypatch):
    monkeypatch.setenv("PATH", str(efi_app.parent))  # no mformat there
    with pytest.raises(UserError, match="mformat not found: .*Debian's mtools package") as err:
        esp.esp_image(efi_app, "other")
    assert "\n" not in str(err.value)


# -- the QEMU arguments ----------------------------------------------------------------------

def test_uefi_media_args(efi_app, firmware, cache, tmp_path):
    private = tmp_path / "run"
    private.mkdir()
    argv = media_args(UEFI, efi_app, "console=ttyS0", private_dir=private)
    image = esp.esp_image(efi_app, "console=ttyS0")
    assert argv == [*firmware.pflash_args(private), "-drive", f"format=raw,file={image},snapshot=on"]
    assert serial_handshake(UEFI, efi_app, "console=ttyS0") == (esp.SHELL_COUNTDOWN, "")
    assert serial_handshake(UEFI, efi_app, None) is None  # BOOTX64.EFI: no shell, no countdown


def test_a_uefi_disk_image_is_booted_as_given(firmware, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(510) + b"\x55\xaa")
    argv = media_args(UEFI, None, None, disk, private_dir=tmp_path)
    assert argv[-2:] == ["-drive", f"format=raw,file={disk},snapshot=on"]
    assert serial_handshake(UEFI, None, "x", disk) is None


def test_uefi_needs_a_private_dir_an_efi_kernel_and_flash(efi_app, firmware, tmp_path):
    with pytest.raises(LabError, match="private directory"):
        media_args(UEFI, efi_app)
    with pytest.raises(UserError, match="--uefi boots an EFI executable \\(--kernel\\) or a UEFI disk"):
        check_media(UEFI, None)
    with pytest.raises(UserError, match="microvm machine has no flash"):
        check_media(UEFI, efi_app, machine="microvm")


@pytest.mark.parametrize("memory, expected", [
    ("128M", "256M"), ("128", "256M"), ("200m", "256M"), ("256M", "256M"), ("1G", "1G"),
    ("262144K", "262144K"), ("size=1G", "size=1G"),
])
def test_uefi_gets_at_least_256_mib(memory, expected):
    assert memory_for(UEFI, memory) == expected
    assert memory_for(MULTIBOOT, memory) == memory


# -- the option ------------------------------------------------------------------------------

def test_the_uefi_option_is_the_uefi_boot_path(capsys):
    from lab.cli.commands import COMMANDS
    from lab.cli.options import parser

    p = parser(COMMANDS)
    assert p.parse_args(["inspect", "--uefi", "--kernel", "k"]).boot == UEFI
    assert p.parse_args(["inspect", "--boot", "uefi"]).boot == UEFI
    assert p.parse_args(["inspect"]).boot is None
    with pytest.raises(SystemExit) as exit:
        p.parse_args(["inspect", "--uefi", "--boot", "bios"])
    assert exit.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args(["build", "--boot", "uefi"])  # the lab kernel is not built for UEFI


def test_uefi_without_a_kernel_or_image_does_not_build_the_lab_kernel():
    from lab.runs.vm import kernel_for

    with pytest.raises(UserError, match="--uefi boots an EFI executable"):
        kernel_for(None, boot=UEFI)
