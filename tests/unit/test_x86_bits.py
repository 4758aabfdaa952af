"""Unit tests for lab.x86.bits: declaration validation, decode/encode, errors."""

import pytest

from lab.x86.bits import BitField, Composite, Layout, Struct, StructField
from lab.x86.frames import qwords

DEMO = Layout(
    "demo",
    2,
    "none",
    (
        BitField("lo", 0, 4),
        BitField("flag", 4, 1),
        BitField("rsvd", 5, 3, reserved=True),
        BitField("hi", 8, 8),
    ),
    (Composite("both", ("lo", "hi")),),
)


@pytest.mark.parametrize(
    "hexstr, expected",
    [
        ("00 00", {"lo": 0, "flag": 0, "rsvd": 0, "hi": 0, "both": 0x000}),
        ("1f ab", {"lo": 0xF, "flag": 1, "rsvd": 0, "hi": 0xAB, "both": 0xABF}),
        ("e3 01", {"lo": 0x3, "flag": 0, "rsvd": 7, "hi": 0x01, "both": 0x013}),
    ],
)
def test_layout_decode(hexstr, expected):
    assert DEMO.decode(bytes.fromhex(hexstr)) == expected


@pytest.mark.parametrize("hexstr, ok", [("1f ab", True), ("e3 01", False), ("20 00", False)])
def test_reserved_zero(hexstr, ok):
    assert DEMO.reserved_zero(DEMO.decode(bytes.fromhex(hexstr))) is ok


@pytest.mark.parametrize(
    "kwargs, hexstr",
    [
        ({}, "00 00"),
        ({"lo": 0xF, "flag": 1, "hi": 0xAB}, "1f ab"),
        ({"both": 0xABF, "flag": 1}, "1f ab"),
        ({"both": 0xABF, "lo": 0xF}, "0f ab"),  # consistent composite + part
    ],
)
def test_layout_encode(kwargs, hexstr):
    assert DEMO.encode(**kwargs) == bytes.fromhex(hexstr)


@pytest.mark.parametrize("hexstr", ["1f ab", "ff ff", "00 00", "e3 01"])
def test_layout_roundtrip(hexstr):
    raw = bytes.fromhex(hexstr)
    assert DEMO.encode(**DEMO.decode(raw)) == raw


@pytest.mark.parametrize("length", [0, 1, 3, 16])
def test_layout_decode_wrong_length(length):
    with pytest.raises(ValueError, match=rf"demo.*2 bytes.*got {length}"):
        DEMO.decode(bytes(length))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lo": 0x10},
        {"flag": 2},
        {"hi": -1},
        {"both": 0x1000},
        {"nope": 1},
        {"both": 0xABF, "lo": 0x1},  # inconsistent composite + part
    ],
)
def test_layout_encode_errors(kwargs):
    with pytest.raises(ValueError):
        DEMO.encode(**kwargs)


@pytest.mark.parametrize(
    "fields, composites",
    [
        ((BitField("a", 0, 4), BitField("b", 3, 2)), ()),  # overlap
        ((BitField("a", 0, 8), BitField("b", 0, 1)), ()),  # overlap
        ((BitField("a", 0, 17),), ()),  # beyond 16 bits
        ((BitField("a", 15, 2),), ()),  # beyond 16 bits
        ((BitField("a", 0, 1), BitField("a", 1, 1)), ()),  # duplicate name
        ((BitField("a", 0, 1),), (Composite("c", ("zz",)),)),  # unknown part
        ((BitField("a", 0, 1),), (Composite("a", ("a",)),)),  # name clash
        ((BitField("a", 0, 1), BitField("b", 1, 1)), (Composite("c", ("a",)), Composite("d", ("a", "b")))),
    ],
)
def test_layout_validation(fields, composites):
    with pytest.raises(ValueError):
        Layout("bad", 2, "none", fields, composites)


@pytest.mark.parametrize("lsb, width", [(-1, 1), (0, 0)])
def test_bitfield_validation(lsb, width):
    with pytest.raises(ValueError):
        BitField("x", lsb, width)


@pytest.mark.parametrize(
    "lsb, width, value, expected",
    [(0, 4, 0xABCD, 0xD), (4, 8, 0xABCD, 0xBC), (15, 1, 0x8000, 1), (40, 4, 0x00AF9B000000FFFF, 0xB)],
)
def test_bitfield_extract(lsb, width, value, expected):
    assert BitField("x", lsb, width).extract(value) == expected


def test_bitfield_insert():
    f = BitField("x", 4, 4)
    assert f.insert(0xFFFF, 0x0) == 0xFF0F
    assert f.insert(0x0000, 0xA) == 0x00A0
    with pytest.raises(ValueError):
        f.insert(0, 0x10)


PAIR = Struct("pair", 8, "none", (StructField("a", 0, 2), StructField("b", 4, 4)))


def test_struct_decode_encode():
    raw = bytes.fromhex("34 12 ff ff 78 56 34 12")
    assert PAIR.decode(raw) == {"a": 0x1234, "b": 0x12345678}
    assert PAIR.encode(a=0x1234, b=0x12345678) == bytes.fromhex("34 12 00 00 78 56 34 12")
    assert PAIR.offset("b") == 4
    with pytest.raises(KeyError):
        PAIR.offset("c")


@pytest.mark.parametrize(
    "fields",
    [
        (StructField("a", 0, 4), StructField("b", 2, 4)),  # overlap
        (StructField("a", 6, 4),),  # past the end
        (StructField("a", 0, 2), StructField("a", 2, 2)),  # duplicate
        (StructField("a", -1, 2),),
    ],
)
def test_struct_validation(fields):
    with pytest.raises(ValueError):
        Struct("bad", 8, "none", fields)


def test_struct_errors():
    with pytest.raises(ValueError, match="pair.*8 bytes.*got 7"):
        PAIR.decode(bytes(7))
    with pytest.raises(ValueError):
        PAIR.encode(a=0x10000)


@pytest.mark.parametrize("name, expected", [("a", 0x0201), ("b", 0x08070605)])
def test_struct_read_field_reads_only_that_field(name, expected):
    memory = bytes(range(1, 9))
    base = 0x1000
    reads = []

    def read_memory(address, size):
        reads.append((address, size))
        return memory[address - base:address - base + size]

    assert PAIR.read_field(read_memory, base, name) == expected
    f = PAIR.field(name)
    assert reads == [(base + f.offset, f.size)]


@pytest.mark.parametrize("raw, words", [
    (b"", []),
    (bytes.fromhex("0100000000000000"), [1]),
    (bytes.fromhex("efcdab8967452301" "0000000000000080"), [0x0123456789ABCDEF, 1 << 63]),
])
def test_qwords(raw, words):
    assert qwords(raw) == words


@pytest.mark.parametrize("length", [1, 7, 9, 47])
def test_qwords_rejects_a_partial_word(length):
    with pytest.raises(ValueError, match="not a whole number"):
        qwords(bytes(length))
