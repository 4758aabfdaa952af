"""The 4-level page walk over hand-built tables (physical memory as a dict)."""

from __future__ import annotations

import pytest

from lab.target.memory import parse_xp
from lab.x86.paging import ENTRY, index, walk

P, RW, US, PS, XD = 1, 2, 4, 0x80, 1 << 63
PML4, PDPT, PD, PT = 0x1000, 0x2000, 0x3000, 0x4000


def memory(entries: dict[int, int]):
    def read(address: int, length: int) -> bytes:
        return entries.get(address, 0).to_bytes(8, "little")[:length]
    return read


BASE = {PML4 + 0 * 8: PDPT | P | RW, PDPT + 1 * 8: PD | P | RW, PD + 1 * 8: PT | P | RW,
        PT + 3 * 8: 0x9000 | P | RW}


def tables(changes: dict[int, int] | None = None):
    """VA below: PML4[0] -> PDPT[1] -> PD[1] -> PT[3] -> 0x9000, with `changes` applied."""
    return memory({**BASE, **(changes or {})})


VA = (1 << 30) | (1 << 21) | (3 << 12) | 0x123


def test_indices():
    assert [index(VA, level) for level in range(4)] == [0, 1, 1, 3]
    assert [index(0xFFFF_8000_0000_0000, level) for level in range(4)] == [256, 0, 0, 0]


def test_4k_page():
    t = walk(PML4, VA, tables())
    assert t.physical == 0x9123 and t.page_size == 4096 and t.fault is None
    assert [s.level for s in t.steps] == ["PML4", "PDPT", "PD", "PT"]
    assert t.writable and not t.user and t.executable


def test_cr3_low_bits_are_not_part_of_the_address():
    assert walk(PML4 | 0x18, VA, tables()).physical == 0x9123  # PWT/PCD in CR3


@pytest.mark.parametrize("where, entry, fault", [
    (PT + 3 * 8, 0, "PT[3] is not present"),
    (PD + 1 * 8, 0, "PD[1] is not present"),
    (PML4, 0, "PML4[0] is not present"),
])
def test_not_present(where, entry, fault):
    t = walk(PML4, VA, tables({where: entry}))
    assert t.physical is None and t.fault == fault


def test_2m_and_1g_pages():
    two_m = memory({PML4: PDPT | P | RW, PDPT + 8: PD | P | RW, PD + 8: 0x20_0000 | P | RW | PS})
    t = walk(PML4, VA, two_m)
    assert t.page_size == 2 << 20 and t.physical == 0x20_0000 + (VA & ((2 << 20) - 1))
    one_g = memory({PML4: PDPT | P | RW, PDPT + 8: 0x4000_0000 | P | RW | PS})
    t = walk(PML4, VA, one_g)
    assert t.page_size == 1 << 30 and t.physical == 0x4000_0000 + (VA & ((1 << 30) - 1))


def test_flags_are_combined_over_levels():
    t = walk(PML4, VA, memory({PML4: PDPT | P | RW | US, PDPT + 8: PD | P | US, PD + 8: PT | P | RW | US,
                               PT + 24: 0x9000 | P | RW | US | XD}))
    assert t.user and not t.writable and not t.executable
    assert t.steps[-1].flags == "P RW US XD"


def test_reserved_bits_above_maxphyaddr_are_reported():
    t = walk(PML4, VA, tables({PT + 24: (1 << 45) | 0x9000 | P}), maxphyaddr=40)
    assert t.physical is None and "reserved bits 0x200000000000" in t.fault


def test_non_canonical():
    assert walk(PML4, 0x8000_0000_0000_0000, tables()).fault.endswith("is not canonical")


def test_entry_layout():
    assert ENTRY.decode_int(0x8000_0000_0011_b067)["addr"] == 0x11B
    assert ENTRY.decode_int(0x8000_0000_0011_b067)["xd"] == 1


@pytest.mark.parametrize("text, expected", [
    ("000000000011b000: 0x0000000000116003 0x0000000000000000\r\n",
     {0x11B000: 0x116003, 0x11B008: 0}),
    ("0000000000000000: 0xf000ff53f000ff53 0xf000ff53f000e2c3\r\n00000010: 0x1 0x2\r\n",
     {0: 0xF000FF53F000FF53, 8: 0xF000FF53F000E2C3, 0x10: 1, 0x18: 2}),
    ("Cannot access memory\r\n", {}),
])
def test_parse_xp(text, expected):
    assert parse_xp(text) == expected
