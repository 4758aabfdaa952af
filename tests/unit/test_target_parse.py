"""`info registers` parsing, against QEMU 7.2's real output (recorded at lab_ready)."""

from pathlib import Path

import pytest

from lab.errors import GuestError
from lab.target.cpu import parse_info_registers

RECORDED = (Path(__file__).parent / "data" / "qemu72_info_registers_lab_ready.txt").read_text()


def test_recorded_dump():
    cpu = parse_info_registers(RECORDED)
    assert (cpu.gdtr.base, cpu.gdtr.limit) == (0x10B020, 0x37)
    assert (cpu.idtr.base, cpu.idtr.limit) == (0x10C000, 0xFFF)
    assert (cpu.tr.selector, cpu.tr.base, cpu.tr.limit, cpu.tr.flags) == (0x28, 0x10B060, 0x67, 0x8900)
    assert cpu.segments["CS"].selector == 0x08 and cpu.segments["CS"].flags == 0x00AF9B00
    assert cpu.values["RIP"] == 0x101480
    assert cpu.values["CR3"] == 0x10D000
    assert cpu.values["EFER"] == 0xD00
    assert cpu.values["RBP"] == 0x120FE0


@pytest.mark.parametrize("line, name, base, limit", [
    ("GDT=     000000000010b020 00000037", "gdtr", 0x10B020, 0x37),
    ("IDT=     fffffe0000000000 00000fff", "idtr", 0xFFFFFE0000000000, 0xFFF),
    ("IDT=     0000000000000000 000003ff", "idtr", 0, 0x3FF),  # real-mode IVT at reset
])
def test_table_registers(line, name, base, limit):
    text = RECORDED.replace("GDT=     000000000010b020 00000037", line if name == "gdtr" else "GDT=     000000000010b020 00000037")
    if name == "idtr":
        text = text.replace("IDT=     000000000010c000 00000fff", line)
    reg = getattr(parse_info_registers(text), name)
    assert (reg.base, reg.limit) == (base, limit)


@pytest.mark.parametrize("line, selector, base, limit, flags", [
    ("TR =0040 fffffe0000003000 00004087 00008900 DPL=0 TSS64-busy", 0x40, 0xFFFFFE0000003000, 0x4087, 0x8900),
    ("TR =0000 0000000000000000 0000ffff 00008b00 DPL=0 TSS64-busy", 0, 0, 0xFFFF, 0x8B00),
])
def test_task_register(line, selector, base, limit, flags):
    text = RECORDED.replace("TR =0028 000000000010b060 00000067 00008900 DPL=0 TSS64-avl", line)
    tr = parse_info_registers(text).tr
    assert (tr.selector, tr.base, tr.limit, tr.flags) == (selector, base, limit, flags)


@pytest.mark.parametrize("drop", ["GDT=", "IDT=", "TR =", "CS ="])
def test_missing_lines_are_an_error(drop):
    text = "\n".join(l for l in RECORDED.splitlines() if not l.startswith(drop))
    with pytest.raises(GuestError, match="lacks"):
        parse_info_registers(text)


def test_garbage_is_an_error():
    with pytest.raises(GuestError):
        parse_info_registers("unknown command: 'info registers'\n")


@pytest.mark.parametrize("text, want", [
    ("cpu index=0 tss=0x1f0 rsp0=0x181000 ipis=2 nmis=0 nmi_frame=0x0\r\ncpu index=1 tss=0x2f0 rsp0=0x1008000 "
     "ipis=5 nmis=1 nmi_frame=0x1011fd8", {0: (2, 0), 1: (5, 1)}),
    ("lab> cpus\ncpu index=1 ipis=3 nmis=0\nnot a cpu line ipis=9", {1: (3, 0)}),  # echo and noise left out
    ("error: cpu 4 is not an application processor", {}),
])
def test_the_cpus_reply_by_index(text, want):
    from lab.target.shell import cpus_reply

    assert {k: (r["ipis"], r["nmis"]) for k, r in cpus_reply(text).items()} == want
