"""The uefi boot path under real OVMF and QEMU: Debian's vmlinuz (an EFI-stub Linux) on the
FAT image the lab makes, with its command line passed by startup.nsh; the same FAT image inside
a GPT disk with an EFI system partition, booted as a UEFI disk image; and the one-line errors
for missing firmware and for kernels --uefi cannot boot.

At its panic Linux's #VC gate names an IST stack that is not mapped (test_foreign.py), so the
exit status is not asserted here: what is stable is the stop, the decoded tables and checks."""

from __future__ import annotations

import json
import shutil
import struct
import uuid
import zlib
from pathlib import Path

import pytest

from lab.host import esp, ovmf
from labtest import lab_cli

if not (ovmf.DEBIAN_DIR / "OVMF_CODE_4M.fd").is_file() or shutil.which("mformat") is None:
    pytest.skip("the uefi path needs Debian's ovmf and mtools packages (bash lab/setup.sh)",
                allow_module_level=True)

#: Generous: OVMF and the EFI stub's decompression take 15-20 s of TCG on an idle host, and the
#: suite runs beside other VMs.
TIMEOUT = "300"
#: The command line, with characters the UEFI shell would otherwise take: a comma (QEMU's
#: separator), % (a shell variable) and # (a comment). lab.probe= is unknown to Linux: it
#: passes it on to init, and prints it.
CMDLINE = "console=ttyS0 nokaslr lab.probe=a,b%c#d"
#: The cpu_entry_area: where Linux 6.1 keeps its IDT, and its GDT and TSS for CPU 0.
CPU_ENTRY_AREA = 0xFFFFFE0000000000


def _inspect(*args: str, log_dir: Path) -> dict:
    r = lab_cli("inspect", *args, "--when", "Kernel panic", "--ready-timeout", TIMEOUT,
                "--log-dir", str(log_dir), "--json", timeout=float(TIMEOUT) + 60)
    assert r.returncode in (0, 1), r.stderr + r.stdout[-2000:]
    return json.loads(r.stdout)


def _assert_linux_tables(report: dict) -> None:
    """The stop was reached and IDT, GDT and TSS decode as Linux 6.1 sets them up."""
    assert report["ready"] == "stopped on serial match 'Kernel panic'", report["ready"]
    regs = report["registers"]
    assert regs["idtr"] == {"base": CPU_ENTRY_AREA, "limit": 0xFFF}
    assert regs["tr"]["selector"] == 0x40 and regs["tr"]["base"] > CPU_ENTRY_AREA
    assert len(report["idt"]) == 256 and all(g["present"] for g in report["idt"])
    assert report["idt"][8]["ist"] == 1  # #DF on IST1
    assert any(row["kind"] == "code" and row["l"] for row in report["gdt"])  # a 64-bit code segment
    tss = {row["field"]: row["value"] for row in report["tss"]}
    assert tss["rsp0"] > CPU_ENTRY_AREA and tss["ist1"] > CPU_ENTRY_AREA
    verdicts = {c["id"]: c["verdict"] for c in report["checks"]}
    assert {"idt.limit", "idt.gate-type", "gdt.null", "tss.tr-descriptor", "idt.df-ist"} <= set(verdicts)
    assert verdicts["idt.limit"] == verdicts["idt.gate-type"] == verdicts["idt.df-ist"] == "PASS", verdicts


def _command_line_arrived(serial: str) -> bool:
    """Linux prints its command line twice ("Command line:" early, "Kernel command line:" once
    parsed); the shell passes its own path first, then every character of CMDLINE. One intact
    copy is enough: on a loaded host a byte of the console's early burst has been seen lost
    between the UART and the log, while the kernel had the line whole."""
    return any(f"{label}: \\EFI\\LAB\\KERNEL.EFI {CMDLINE}\n" in serial.replace("\r", "")
               for label in ("Command line", "Kernel command line"))


def test_debian_linux_through_uefi_from_the_labs_fat_image(debian_kernel, tmp_path):
    """`lab inspect --uefi --kernel vmlinuz`: OVMF finds no \\EFI\\BOOT\\BOOTX64.EFI, starts its
    shell, the lab answers the startup.nsh countdown, and the EFI stub gets the command line."""
    template = ovmf.find().vars_template
    before = template.read_bytes()
    report = _inspect("--uefi", "--kernel", str(debian_kernel), "--append", CMDLINE, log_dir=tmp_path)
    _assert_linux_tables(report)
    serial = (tmp_path / "serial.log").read_text(errors="replace")
    assert "UEFI Interactive Shell" in serial and "efi: EFI v2.70 by EDK II" in serial
    assert _command_line_arrived(serial), serial[-3000:]
    # The firmware wrote the run's private copy of its variable store, not the package's.
    assert template.read_bytes() == before


def gpt_disk(path: Path, partition: Path, first_lba: int = 2048) -> None:
    """A raw disk with a GUID partition table (UEFI 2.x §5.3): a protective MBR, the primary
    and the backup header with 128 entries, and one EFI system partition holding `partition`."""
    sector, entries = 512, 128
    data = partition.read_bytes()
    part_sectors = -(-len(data) // sector)
    last_usable = first_lba + part_sectors - 1
    total = last_usable + 1 + 32 + 1  # the backup entries, then the backup header
    esp_type = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B").bytes_le
    entry = esp_type + uuid.uuid4().bytes_le + struct.pack("<QQQ", first_lba, last_usable, 0)
    entry += "EFI system partition".encode("utf-16-le").ljust(72, b"\0")
    table = entry.ljust(128, b"\0") + bytes(128 * (entries - 1))
    disk_guid = uuid.uuid4().bytes_le

    def header(current: int, backup: int, table_lba: int) -> bytes:
        fields = struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, current, backup,
                             34, last_usable, disk_guid, table_lba, entries, 128, zlib.crc32(table))
        crc = zlib.crc32(fields)
        return (fields[:16] + struct.pack("<I", crc) + fields[20:]).ljust(sector, b"\0")

    mbr = bytearray(sector)
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\0\x02\0", 0xEE, b"\xff\xff\xff", 1, min(total - 1, 0xFFFFFFFF))
    mbr[510:512] = b"\x55\xaa"
    with open(path, "wb") as f:
        f.write(mbr + header(1, total - 1, 2) + table)
        f.seek(first_lba * sector)
        f.write(data)
        f.seek((last_usable + 1) * sector)
        f.write(table + header(total - 1, 1, last_usable + 1))


def test_debian_linux_through_uefi_from_a_gpt_disk_image(debian_kernel, tmp_path):
    """`lab inspect --uefi --image disk.img`: the same FAT image as an EFI system partition
    in a GPT disk. The lab does not answer the shell's countdown on a disk it did not make: the
    5 s pass, then startup.nsh runs."""
    disk = tmp_path / "disk.img"
    gpt_disk(disk, esp.esp_image(debian_kernel, CMDLINE))
    logs = tmp_path / "logs"
    report = _inspect("--uefi", "--image", str(disk), log_dir=logs)
    _assert_linux_tables(report)
    serial = (logs / "serial.log").read_text(errors="replace")
    assert "HD(1,GPT," in serial, serial[-3000:]  # the shell mapped the GPT partition as FS0
    assert _command_line_arrived(serial), serial[-3000:]


def test_missing_firmware_is_one_line(debian_kernel):
    r = lab_cli("inspect", "--uefi", "--kernel", str(debian_kernel), "--when", "x",
                env={ovmf.ENV_CODE: "/nonexistent/OVMF_CODE.fd"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert "UEFI firmware not found: /nonexistent/OVMF_CODE.fd (LAB_OVMF_CODE=" in r.stderr
    assert "Debian's ovmf package" in r.stderr


@pytest.mark.parametrize("args, needle", [
    ((), "--uefi boots an EFI executable (--kernel) or a UEFI disk image (--image)"),
    (("--kernel", "LAB_KERNEL"), "not an EFI executable (PE32+ for x86-64)"),
    (("--kernel", "LINUX", "--append", "init=/bin/sh|x"), "does not pass | on to the program"),
    (("--kernel", "LINUX", "--profile", "tcg-microvm"), "microvm machine has no flash"),
])
def test_what_uefi_cannot_boot_is_one_line(kernel, debian_kernel, args, needle):
    names = {"LAB_KERNEL": str(kernel), "LINUX": str(debian_kernel)}
    r = lab_cli("inspect", "--uefi", *(names.get(a, a) for a in args))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
