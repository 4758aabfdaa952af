"""Table-driven tests for the IDT gate, GDT descriptor and TSS decoders.

Expected values come from independent sources, never from our own encoder:
hand-decoded hex dumps, the Linux / rust-osdev x86_64 crate descriptor
constants (x86_64 src/structures/gdt.rs, test ``linux_kernel_defaults``), the
OSDev-wiki long-mode GDT entry 0x00209a0000000000 and the older x86_64 crate's
minimal ``kernel_code_segment`` (USER_SEGMENT|PRESENT|EXECUTABLE|LONG_MODE =
0x0020980000000000), and ``struct.pack`` for the TSS.
"""

import struct

import pytest

from lab.x86.addr import is_canonical
from lab.x86.gdt import (
    SEGMENT,
    SYSTEM,
    decode_descriptor,
    decode_gdt,
    decode_selector,
    encode_code_data,
    encode_selector,
    encode_system,
)
from lab.x86.idt import GATE, decode_gate, decode_idt, encode_gate, read_gate
from lab.x86.tss import TSS, decode_tss, encode_tss


def h(s: str) -> bytes:
    return bytes.fromhex(s)


def q(value: int) -> bytes:
    """A GDT entry written as a u64 constant, as stored in memory."""
    return value.to_bytes(8, "little")


# ---------------------------------------------------------------------------
# IDT gates
# ---------------------------------------------------------------------------
GATE_CASES = [
    # raw 16 bytes,                                      offset, sel, ist, type, dpl, P, rsvd-zero, type_name
    ("f0 1b 08 00 01 8e 10 00 00 00 00 00 00 00 00 00", 0x0000_0000_0010_1BF0, 0x08, 1, 0xE, 0, True, True, "interrupt"),
    ("34 12 08 00 00 ef 00 80 ff ff ff ff 00 00 00 00", 0xFFFF_FFFF_8000_1234, 0x08, 0, 0xF, 3, True, True, "trap"),
    ("00 00 10 00 00 8e a0 81 ff ff ff ff 00 00 00 00", 0xFFFF_FFFF_81A0_0000, 0x10, 0, 0xE, 0, True, True, "interrupt"),
    ("00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", 0, 0, 0, 0x0, 0, False, True, "invalid(0x0)"),
    ("00 10 08 00 00 0e 00 00 00 00 00 00 00 00 00 00", 0x1000, 0x08, 0, 0xE, 0, False, True, "interrupt"),
    ("78 56 08 00 00 8e 34 12 00 80 00 00 00 00 00 00", 0x0000_8000_1234_5678, 0x08, 0, 0xE, 0, True, True, "interrupt"),
    ("00 20 10 00 f9 8e 00 00 00 00 00 00 00 00 00 00", 0x2000, 0x10, 1, 0xE, 0, True, False, "interrupt"),
    ("00 20 10 00 00 8e 00 00 00 00 00 00 01 00 00 00", 0x2000, 0x10, 0, 0xE, 0, True, False, "interrupt"),
    ("00 20 10 00 00 9e 00 00 00 00 00 00 00 00 00 00", 0x2000, 0x10, 0, 0xE, 0, True, False, "interrupt"),
    ("ef be 08 00 07 86 ad de 00 00 00 00 00 00 00 00", 0xDEAD_BEEF, 0x08, 7, 0x6, 0, True, True, "invalid(0x6)"),
    ("00 00 08 00 00 cc 00 00 00 00 00 00 00 00 00 00", 0, 0x08, 0, 0xC, 2, True, True, "invalid(0xc)"),
]


@pytest.mark.parametrize("raw, offset, sel, ist, typ, dpl, present, rsvd_ok, type_name", GATE_CASES)
def test_decode_gate(raw, offset, sel, ist, typ, dpl, present, rsvd_ok, type_name):
    g = decode_gate(h(raw), 14)
    assert (g.offset, g.selector, g.ist, g.type, g.dpl, g.present) == (offset, sel, ist, typ, dpl, present)
    assert g.reserved_bits_zero is rsvd_ok
    assert g.type_name == type_name
    assert g.raw == h(raw)
    assert g.mnemonic == "#PF"


@pytest.mark.parametrize(
    "raw, canonical",
    [(GATE_CASES[0][0], True), (GATE_CASES[1][0], True), (GATE_CASES[5][0], False)],
)
def test_gate_offset_canonical(raw, canonical):
    assert is_canonical(decode_gate(h(raw), 0).offset) is canonical


def test_encode_gate_matches_hand_dump():
    assert encode_gate(0x0010_1BF0, 0x08, ist=1) == h(GATE_CASES[0][0])
    assert encode_gate(0xFFFF_FFFF_8000_1234, 0x08, type=0xF, dpl=3) == h(GATE_CASES[1][0])
    assert encode_gate(0x1000, 0x08, present=False) == h(GATE_CASES[4][0])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(offset=0, selector=0),
        dict(offset=0xFFFF_FFFF_FFFF_FFFF, selector=0xFFFF, ist=7, type=0xF, dpl=3),
        dict(offset=0xFFFF_8000_0000_1000, selector=0x08, ist=3, dpl=0, present=False),
        dict(offset=0x0000_7FFF_FFFF_F000, selector=0x2B, type=0x5, dpl=1),
    ],
)
def test_gate_roundtrip(kwargs):
    g = decode_gate(encode_gate(**kwargs), 3)
    expected = dict(ist=0, type=0xE, dpl=0, present=True) | kwargs
    assert {k: getattr(g, k) for k in expected} == expected
    assert g.reserved_bits_zero


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(offset=1 << 64, selector=0),
        dict(offset=-1, selector=0),
        dict(offset=0, selector=0x10000),
        dict(offset=0, selector=0, ist=8),
        dict(offset=0, selector=0, dpl=4),
        dict(offset=0, selector=0, type=0x10),
    ],
)
def test_encode_gate_too_wide(kwargs):
    with pytest.raises(ValueError):
        encode_gate(**kwargs)


@pytest.mark.parametrize("length", [0, 15, 17, 31])
def test_decode_gate_wrong_length(length):
    with pytest.raises(ValueError, match=f"got {length}"):
        decode_gate(bytes(length), 0)


@pytest.mark.parametrize("length", [1, 15, 17, 33, 4095])
def test_decode_idt_wrong_length(length):
    with pytest.raises(ValueError, match="multiple"):
        decode_idt(bytes(length))


def test_decode_idt():
    table = b"".join(h(c[0]) for c in GATE_CASES[:3])
    gates = decode_idt(table)
    assert [g.vector for g in gates] == [0, 1, 2]
    assert [g.mnemonic for g in gates] == ["#DE", "#DB", "NMI"]
    assert [g.offset for g in gates] == [c[1] for c in GATE_CASES[:3]]
    assert decode_idt(b"") == []
    assert len(decode_idt(bytes(256 * 16))) == 256


@pytest.mark.parametrize("vector", [0, 1, 2])
def test_read_gate_reads_the_vectors_slot(vector):
    """read_gate asks for exactly 16 bytes at base + 16 * vector and decodes them."""
    base = 0xFFFF_8000_0000_1000
    table = b"".join(h(c[0]) for c in GATE_CASES[:3])
    reads = []

    def read_memory(address, size):
        reads.append((address, size))
        return table[address - base:address - base + size]

    g = read_gate(read_memory, base, vector)
    assert reads == [(base + 16 * vector, 16)]
    assert (g.vector, g.offset) == (vector, GATE_CASES[vector][1])


def test_gate_layout_declared():
    assert GATE.size == 16
    assert GATE.field("ist").lsb == 32 and GATE.field("type").lsb == 40
    assert GATE.field("dpl").lsb == 45 and GATE.field("p").lsb == 47


# ---------------------------------------------------------------------------
# GDT code/data descriptors
# ---------------------------------------------------------------------------
SEG_CASES = [
    # u64 constant,       kind,   base,        limit_raw, limit,      type, dpl, P,    L,     DB,    G,     code64, flags
    (0x0000000000000000, "null", 0, 0, 0, 0x0, 0, False, False, False, False, False, "NP DPL0"),
    # Linux / x86_64 crate KERNEL_CODE64, KERNEL_CODE32, KERNEL_DATA, USER_CODE64, USER_CODE32, USER_DATA
    (0x00AF9B000000FFFF, "code", 0, 0xFFFFF, 0xFFFFFFFF, 0xB, 0, True, True, False, True, True, "P DPL0 L G A R"),
    (0x00CF9B000000FFFF, "code", 0, 0xFFFFF, 0xFFFFFFFF, 0xB, 0, True, False, True, True, False, "P DPL0 DB G A R"),
    (0x00CF93000000FFFF, "data", 0, 0xFFFFF, 0xFFFFFFFF, 0x3, 0, True, False, True, True, False, "P DPL0 DB G A W"),
    (0x00AFFB000000FFFF, "code", 0, 0xFFFFF, 0xFFFFFFFF, 0xB, 3, True, True, False, True, True, "P DPL3 L G A R"),
    (0x00CFFB000000FFFF, "code", 0, 0xFFFFF, 0xFFFFFFFF, 0xB, 3, True, False, True, True, False, "P DPL3 DB G A R"),
    (0x00CFF3000000FFFF, "data", 0, 0xFFFFF, 0xFFFFFFFF, 0x3, 3, True, False, True, True, False, "P DPL3 DB G A W"),
    # flat 32-bit code, not accessed
    (0x00CF9A000000FFFF, "code", 0, 0xFFFFF, 0xFFFFFFFF, 0xA, 0, True, False, True, True, False, "P DPL0 DB G R"),
    # OSDev wiki "Setting Up Long Mode" GDT: 64-bit code exec/read, and data
    (0x00209A0000000000, "code", 0, 0, 0, 0xA, 0, True, True, False, False, True, "P DPL0 L R"),
    (0x0000920000000000, "data", 0, 0, 0, 0x2, 0, True, False, False, False, False, "P DPL0 W"),
    # old x86_64 crate kernel_code_segment(): execute-only
    (0x0020980000000000, "code", 0, 0, 0, 0x8, 0, True, True, False, False, True, "P DPL0 L"),
    # hand-built: conforming code; non-present data with AVL and a base; expand-down data
    (0x00AF9F000000FFFF, "code", 0, 0xFFFFF, 0xFFFFFFFF, 0xF, 0, True, True, False, True, True, "P DPL0 L G A R C"),
    (0x121012345678ABCD, "data", 0x12345678, 0xABCD, 0xABCD, 0x2, 0, False, False, False, False, False, "NP DPL0 AVL W"),
    (0x00C096000000FFFF, "data", 0, 0xFFFF, 0x0FFFFFFF, 0x6, 0, True, False, True, True, False, "P DPL0 DB G W ED"),
]


@pytest.mark.parametrize(
    "value, kind, base, limit_raw, limit, typ, dpl, present, l, db, g, code64, flags", SEG_CASES
)
def test_decode_segment(value, kind, base, limit_raw, limit, typ, dpl, present, l, db, g, code64, flags):  # noqa: E741
    d = decode_descriptor(q(value), index=3)
    assert (d.kind, d.base, d.limit_raw, d.limit, d.type) == (kind, base, limit_raw, limit, typ)
    assert (d.dpl, d.present, d.l, d.db, d.g) == (dpl, present, l, db, g)
    assert d.is_code64 is code64
    assert d.flags_str == flags
    assert (d.index, d.selector, d.size, d.raw) == (3, 0x18, 8, q(value))
    assert d.s is (kind != "null")


@pytest.mark.parametrize(
    "value, accessed, readable, writable, conforming",
    [
        (0x00AF9B000000FFFF, True, True, False, False),
        (0x0020980000000000, False, False, False, False),
        (0x00AF9F000000FFFF, True, True, False, True),
        (0x00CF93000000FFFF, True, True, True, False),
        (0x0000900000000000, False, True, False, False),  # read-only data
    ],
)
def test_segment_type_bits(value, accessed, readable, writable, conforming):
    d = decode_descriptor(q(value))
    assert (d.accessed, d.readable, d.writable, d.conforming) == (accessed, readable, writable, conforming)


@pytest.mark.parametrize(
    "kwargs, value",
    [
        (dict(type=0xB, limit=0xFFFFF, l=True, g=True), 0x00AF9B000000FFFF),
        (dict(type=0x3, limit=0xFFFFF, db=True, g=True), 0x00CF93000000FFFF),
        (dict(type=0xB, limit=0xFFFFF, l=True, g=True, dpl=3), 0x00AFFB000000FFFF),
        (dict(type=0x3, limit=0xFFFFF, db=True, g=True, dpl=3), 0x00CFF3000000FFFF),
        (dict(type=0xA, l=True), 0x00209A0000000000),
        (dict(type=0x2, base=0x12345678, limit=0xABCD, avl=True, present=False), 0x121012345678ABCD),
    ],
)
def test_encode_code_data_matches_constants(kwargs, value):
    assert encode_code_data(**kwargs) == q(value)


@pytest.mark.parametrize(
    "kwargs",
    [dict(type=0x10), dict(type=0, base=1 << 32), dict(type=0, limit=1 << 20), dict(type=0, dpl=4)],
)
def test_encode_code_data_too_wide(kwargs):
    with pytest.raises(ValueError):
        encode_code_data(**kwargs)


# ---------------------------------------------------------------------------
# GDT system descriptors (16 bytes)
# ---------------------------------------------------------------------------
TSS_AVAIL = "67 00 00 20 10 89 00 00 00 80 ff ff 00 00 00 00"  # base 0xffff800000102000, limit 0x67
TSS_BUSY = "67 00 00 20 10 8b 00 00 00 80 ff ff 00 00 00 00"
SYS_CASES = [
    # raw 16 bytes, kind, base, limit, type, dpl, present, reserved-zero
    (TSS_AVAIL, "tss-available", 0xFFFF_8000_0010_2000, 0x67, 0x9, 0, True, True),
    (TSS_BUSY, "tss-busy", 0xFFFF_8000_0010_2000, 0x67, 0xB, 0, True, True),
    ("67 00 ef cd ab 89 00 89 ff ff ff ff 00 00 00 00", "tss-available", 0xFFFF_FFFF_89AB_CDEF, 0x67, 0x9, 0, True, True),
    ("ff 0f 00 10 00 82 00 00 00 00 00 00 00 00 00 00", "ldt", 0x1000, 0xFFF, 0x2, 0, True, True),
    ("67 00 00 20 10 09 00 00 00 80 ff ff 00 00 00 00", "tss-available", 0xFFFF_8000_0010_2000, 0x67, 0x9, 0, False, True),
    ("00 00 08 00 00 ec 00 00 00 00 00 00 00 00 00 00", "system-other", 0x8, 0, 0xC, 3, True, True),
    ("67 00 00 20 10 89 00 00 00 80 ff ff 00 01 00 00", "tss-available", 0xFFFF_8000_0010_2000, 0x67, 0x9, 0, True, False),
    ("67 00 00 20 10 89 00 00 00 80 ff ff 00 00 00 80", "tss-available", 0xFFFF_8000_0010_2000, 0x67, 0x9, 0, True, False),
]


@pytest.mark.parametrize("raw, kind, base, limit, typ, dpl, present, rsvd_ok", SYS_CASES)
def test_decode_system(raw, kind, base, limit, typ, dpl, present, rsvd_ok):
    d = decode_descriptor(h(raw), index=5)
    assert (d.kind, d.base, d.limit, d.type, d.dpl, d.present) == (kind, base, limit, typ, dpl, present)
    assert d.reserved_bits_zero is rsvd_ok
    assert (d.size, d.selector, d.s) == (16, 0x28, False)


def test_encode_system_matches_hand_dump():
    assert encode_system(type=0x9, base=0xFFFF_8000_0010_2000, limit=0x67) == h(TSS_AVAIL)
    assert encode_system(type=0xB, base=0xFFFF_8000_0010_2000, limit=0x67) == h(TSS_BUSY)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(type=0x9, base=0, limit=0x67),
        dict(type=0xB, base=0xFFFF_FFFF_FFFF_FFFF, limit=0xFFFFF, g=True, dpl=3, avl=True),
        dict(type=0x2, base=0x1234_5678_9ABC_DEF0, limit=0x1, present=False),
    ],
)
def test_system_roundtrip(kwargs):
    d = decode_descriptor(encode_system(**kwargs))
    expected = dict(dpl=0, present=True, avl=False, g=False) | kwargs
    expected["limit_raw"] = expected.pop("limit")
    assert {k: getattr(d, k) for k in expected} == expected


# ---------------------------------------------------------------------------
# Whole GDTs
# ---------------------------------------------------------------------------
def test_decode_gdt_walks_system_descriptors():
    table = b"".join(
        [
            q(0),
            q(0x00AF9B000000FFFF),
            q(0x00CF93000000FFFF),
            q(0x00CFF3000000FFFF),
            q(0x00AFFB000000FFFF),
            h(TSS_AVAIL),
            q(0x00CF9A000000FFFF),
        ]
    )
    gdt = decode_gdt(table)
    assert [d.index for d in gdt] == [0, 1, 2, 3, 4, 5, 7]
    assert [d.selector for d in gdt] == [0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x38]
    assert [d.kind for d in gdt] == ["null", "code", "data", "data", "code", "tss-available", "code"]
    assert [d.size for d in gdt] == [8, 8, 8, 8, 8, 16, 8]
    assert gdt[5].base == 0xFFFF_8000_0010_2000


def test_decode_gdt_truncated_system_descriptor():
    gdt = decode_gdt(q(0) + q(0x00AF9B000000FFFF) + h(TSS_BUSY)[:8])
    assert [d.kind for d in gdt] == ["null", "code", "system-truncated"]
    assert (gdt[2].size, gdt[2].type, gdt[2].base) == (8, 0xB, 0x0010_2000)


def test_decode_gdt_zero_slots_are_null():
    assert [d.kind for d in decode_gdt(bytes(24))] == ["null"] * 3
    assert decode_gdt(b"") == []


@pytest.mark.parametrize("length", [1, 7, 9, 20])
def test_decode_gdt_wrong_length(length):
    with pytest.raises(ValueError, match="multiple"):
        decode_gdt(bytes(length))


@pytest.mark.parametrize("length", [0, 7, 9, 15, 17])
def test_decode_descriptor_wrong_length(length):
    with pytest.raises(ValueError):
        decode_descriptor(bytes(length))


def test_descriptor_layouts_declared():
    assert (SEGMENT.size, SYSTEM.size) == (8, 16)
    assert SEGMENT.field("l").lsb == 53 and SEGMENT.field("db").lsb == 54
    assert SYSTEM.field("base_63_32").lsb == 64


# ---------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, index, ti, rpl",
    [
        (0x0000, 0, 0, 0),
        (0x0008, 1, 0, 0),
        (0x0010, 2, 0, 0),
        (0x001B, 3, 0, 3),
        (0x001C, 3, 1, 0),
        (0x002B, 5, 0, 3),
        (0x0033, 6, 0, 3),
        (0xFFFF, 8191, 1, 3),
    ],
)
def test_selector(value, index, ti, rpl):
    assert decode_selector(value) == (index, ti, rpl)
    assert encode_selector(index, ti, rpl) == value


@pytest.mark.parametrize("value", [-1, 0x10000])
def test_selector_range(value):
    with pytest.raises(ValueError):
        decode_selector(value)


# ---------------------------------------------------------------------------
# TSS
# ---------------------------------------------------------------------------
TSS_FMT = "<I3QQ7QQHH"  # Figure 8-11, packed little-endian
assert struct.calcsize(TSS_FMT) == 104

RSP = (0xFFFF_8000_0001_0000, 0x1111_2222_3333_4444, 0)
IST = (0xFFFF_8000_0002_0000, 0xFFFF_8000_0003_0000, 0, 0, 0, 0, 0xFFFF_8000_0009_0000)


@pytest.mark.parametrize(
    "raw, rsp, ist, iomap, rsvd_ok",
    [
        (struct.pack(TSS_FMT, 0, *RSP, 0, *IST, 0, 0, 104), RSP, IST, 104, True),
        (struct.pack(TSS_FMT, 0, 0, 0, 0, 0, *range(1, 8), 0, 0, 0x68), (0, 0, 0), tuple(range(1, 8)), 0x68, True),
        (struct.pack(TSS_FMT, 0, *RSP, 0, *IST, 0, 0, 0xDFFF), RSP, IST, 0xDFFF, True),
        (struct.pack(TSS_FMT, 1, *RSP, 0, *IST, 0, 0, 104), RSP, IST, 104, False),
        (struct.pack(TSS_FMT, 0, *RSP, 0, *IST, 0, 0xAA, 104), RSP, IST, 104, False),
        (struct.pack(TSS_FMT, 0, *RSP, 0, *IST, 0, 0, 104) + b"\xff" * 8193, RSP, IST, 104, True),
    ],
)
def test_decode_tss(raw, rsp, ist, iomap, rsvd_ok):
    t = decode_tss(raw)
    assert (t.rsp, t.ist, t.iomap_base, t.reserved_bits_zero) == (rsp, ist, iomap, rsvd_ok)


def test_tss_hex_dump():
    # RSP0 = 0xffff800000010000 at 0x04, IST1 = 0xffff800000020000 at 0x24, iomap at 0x66.
    raw = bytearray(104)
    raw[0x04:0x0C] = h("00 00 01 00 00 80 ff ff")
    raw[0x24:0x2C] = h("00 00 02 00 00 80 ff ff")
    raw[0x66:0x68] = h("68 00")
    t = decode_tss(bytes(raw))
    assert t.rsp[0] == 0xFFFF_8000_0001_0000 and t.ist_slot(1) == 0xFFFF_8000_0002_0000
    assert t.ist[0] == t.ist_slot(1) and t.iomap_base == 0x68


@pytest.mark.parametrize("n, value", [(1, IST[0]), (2, IST[1]), (7, IST[6])])
def test_ist_slot_hardware_numbering(n, value):
    assert decode_tss(struct.pack(TSS_FMT, 0, *RSP, 0, *IST, 0, 0, 104)).ist_slot(n) == value


@pytest.mark.parametrize("n", [0, 8, -1])
def test_ist_slot_range(n):
    with pytest.raises(ValueError):
        decode_tss(bytes(104)).ist_slot(n)


@pytest.mark.parametrize("length", [0, 8, 103])
def test_decode_tss_too_short(length):
    with pytest.raises(ValueError, match=f"got {length}"):
        decode_tss(bytes(length))


def test_encode_tss_matches_struct_pack():
    assert encode_tss(RSP, IST, 104) == struct.pack(TSS_FMT, 0, *RSP, 0, *IST, 0, 0, 104)
    t = decode_tss(encode_tss(RSP, IST, 0x1234))
    assert (t.rsp, t.ist, t.iomap_base) == (RSP, IST, 0x1234)


@pytest.mark.parametrize("kwargs", [dict(rsp=(0, 0)), dict(ist=(0,) * 8), dict(iomap_base=0x10000)])
def test_encode_tss_errors(kwargs):
    with pytest.raises(ValueError):
        encode_tss(**kwargs)


def test_tss_struct_declared():
    assert TSS.size == 104
    assert [TSS.offset(n) for n in ("rsp0", "rsp1", "rsp2", "ist1", "ist7", "iomap_base")] == [
        0x04, 0x0C, 0x14, 0x24, 0x54, 0x66,
    ]
