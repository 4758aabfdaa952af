"""The ELF symbol-table decoder (lab/target/symbols.py), over raw table bytes of both ELF classes."""

import struct

import pytest

from lab.errors import UserError
from lab.target.symbols import ELF_SYM, Symbol, Symbols, _unpack_symbols, demangle

STRTAB = b"\0lab_ready\0TASKS\0marker\0local_label\0"
SECTIONS = ["", ".text", ".data", ".bss"]
NAME = {n: STRTAB.index(n.encode() + b"\0") for n in ("lab_ready", "TASKS", "marker", "local_label")}
FUNC, OBJECT, NOTYPE, SECTION, FILE = 2, 1, 0, 3, 4
GLOBAL, LOCAL = 1 << 4, 0
SHN_ABS, SHN_UNDEF = 0xFFF1, 0


def entry(elfclass, little, name, info, shndx, value, size):
    fmt, fields = ELF_SYM[elfclass]
    values = {"name": name, "info": info, "other": 0, "shndx": shndx, "value": value, "size": size}
    return struct.pack(("<" if little else ">") + fmt, *(values[f] for f in fields))


CASES = [
    # (name offset, st_info, st_shndx, value, size) -> expected Symbol or None (skipped)
    ((NAME["lab_ready"], GLOBAL | FUNC, 1, 0x1063D0, 1), Symbol("lab_ready", 0x1063D0, 1, "func", ".text")),
    ((NAME["TASKS"], GLOBAL | OBJECT, 3, 0x200000, 0x400), Symbol("TASKS", 0x200000, 0x400, "object", ".bss")),
    ((NAME["marker"], LOCAL | NOTYPE, 2, 0x300010, 0), Symbol("marker", 0x300010, 0, "other", ".data")),
    ((NAME["local_label"], LOCAL | NOTYPE, SHN_ABS, 0x1234, 0), Symbol("local_label", 0x1234, 0, "other", None)),
    ((NAME["marker"], GLOBAL | FUNC, SHN_UNDEF, 0, 0), Symbol("marker", 0, 0, "func", None)),
    ((NAME["TASKS"], LOCAL | SECTION, 2, 0x300000, 0), None),  # section symbols are skipped
    ((NAME["TASKS"], LOCAL | FILE, SHN_ABS, 0, 0), None),  # so are file symbols
    ((0, GLOBAL | FUNC, 1, 0x1000, 4), None),  # and unnamed ones
]


@pytest.mark.parametrize("elfclass", [64, 32])
@pytest.mark.parametrize("little", [True, False], ids=["le", "be"])
@pytest.mark.parametrize("fields,expected", CASES)
def test_one_entry(elfclass, little, fields, expected):
    table = entry(elfclass, little, *fields)
    got = _unpack_symbols(table, STRTAB, SECTIONS, elfclass, little)
    assert got == ([expected] if expected else [])


def test_entry_sizes_are_the_gabi_ones():
    assert len(entry(64, True, 0, 0, 0, 0, 0)) == 24
    assert len(entry(32, True, 0, 0, 0, 0, 0)) == 16


def test_a_table_keeps_order_and_ignores_a_truncated_tail():
    rows = [fields for fields, expected in CASES]
    table = b"".join(entry(64, True, *r) for r in rows) + b"\x01\x02\x03"
    got = _unpack_symbols(table, STRTAB, SECTIONS, 64, True)
    assert got == [e for _, e in CASES if e is not None]


def test_the_class_decides_the_field_order():
    """An Elf64 table read as Elf32 gives other symbols: the layouts are not interchangeable."""
    table = entry(64, True, NAME["lab_ready"], GLOBAL | FUNC, 1, 0x1063D0, 1)
    assert _unpack_symbols(table, STRTAB, SECTIONS, 32, True) != [CASES[0][1]]


@pytest.mark.parametrize("raw, shown", [
    ("_RNvNtCs45ALa1WmfXV_9labkernel4fire4fire", "labkernel::fire::fire"),  # Rust v0
    ("_ZN9labkernel4task8schedule17h0123456789abcdefE", "labkernel::task::schedule"),  # Rust legacy
    ("_ZN3foo3barEv", "foo::bar()"),  # C++
    ("isr_gp", "isr_gp"),  # not mangled: as it is
    ("_Rnot-a-name", "_Rnot-a-name"),  # looks mangled, is not: as it is
])
def test_names_are_shown_demangled(raw, shown):
    assert demangle(raw) == shown
    assert Symbol(raw, 0x1000, 16, "func").display == shown


def test_a_demangled_path_finds_its_symbol_and_both_forms_are_described():
    table = Symbols([Symbol("_RNvNtCs45ALa1WmfXV_9labkernel4fire4fire", 0x1000, 0x40, "func"),
                     Symbol("isr_gp", 0x2000, 8, "func")])
    assert table.lookup("labkernel::fire::fire").address == 0x1000
    assert table.address_of("labkernel::fire::fire") == 0x1000
    assert table.describe(0x1004) == "labkernel::fire::fire+0x4"
    assert table.describe_mangled(0x1004) == "_RNvNtCs45ALa1WmfXV_9labkernel4fire4fire+0x4"
    assert table.lookup("labkernel::fire::nothing") is None


def test_a_demangled_path_of_two_symbols_is_ambiguous():
    table = Symbols([Symbol("_ZN3lab4init17h0000000000000001E", 0x1000, 8, "func"),
                     Symbol("_ZN3lab4init17h0000000000000002E", 0x2000, 8, "func")])
    with pytest.raises(UserError, match="'lab::init' names 2 symbols"):
        table.lookup("lab::init")
