"""Unit tests for lab.x86.vectors and lab.x86.addr."""

import pytest

from lab.x86.addr import canonicalize, is_canonical, sign_extend
from lab.x86.vectors import VECTORS, mnemonic, pushes_error_code, vector_by_mnemonic

# SDM vol. 3A §6.13 / Table 6-1 plus AMD #VC (29) and #SX (30).
ERROR_CODE_VECTORS = {8, 10, 11, 12, 13, 14, 17, 21, 29, 30}


def test_table_shape():
    assert [v.vector for v in VECTORS] == list(range(32))


@pytest.mark.parametrize("vector", range(256))
def test_pushes_error_code(vector):
    assert pushes_error_code(vector) is (vector in ERROR_CODE_VECTORS)


@pytest.mark.parametrize(
    "vector, mnem, kind",
    [
        (0, "#DE", "fault"),
        (1, "#DB", "fault/trap"),
        (2, "NMI", "interrupt"),
        (3, "#BP", "trap"),
        (4, "#OF", "trap"),
        (6, "#UD", "fault"),
        (8, "#DF", "abort"),
        (9, "CSO", "fault"),
        (13, "#GP", "fault"),
        (14, "#PF", "fault"),
        (15, "RSVD15", "reserved"),
        (18, "#MC", "abort"),
        (21, "#CP", "fault"),
        (27, "RSVD27", "reserved"),
        (28, "#HV", "fault"),
        (29, "#VC", "fault"),
        (30, "#SX", "fault"),
        (31, "RSVD31", "reserved"),
    ],
)
def test_vector_rows(vector, mnem, kind):
    assert mnemonic(vector) == mnem
    assert VECTORS[vector].kind == kind


@pytest.mark.parametrize("vector, text", [(32, "IRQ/INT 32"), (0x80, "IRQ/INT 128"), (255, "IRQ/INT 255")])
def test_mnemonic_user_vectors(vector, text):
    assert mnemonic(vector) == text


@pytest.mark.parametrize("vector", [-1, 256])
def test_vector_range(vector):
    with pytest.raises(ValueError):
        mnemonic(vector)


@pytest.mark.parametrize(
    "name, vector",
    [("#PF", 14), ("pf", 14), ("PF", 14), (" #gp ", 13), ("nmi", 2), ("#DF", 8), ("cso", 9), ("#sx", 30)],
)
def test_vector_by_mnemonic(name, vector):
    assert vector_by_mnemonic(name).vector == vector


def test_vector_by_mnemonic_unknown():
    with pytest.raises(KeyError, match="#PF"):
        vector_by_mnemonic("#XX")


@pytest.mark.parametrize(
    "addr, va_bits, ok",
    [
        (0x0000_0000_0000_0000, 48, True),
        (0x0000_7FFF_FFFF_FFFF, 48, True),
        (0x0000_8000_0000_0000, 48, False),
        (0xFFFF_7FFF_FFFF_FFFF, 48, False),
        (0xFFFF_8000_0000_0000, 48, True),
        (0xFFFF_FFFF_8000_0000, 48, True),
        (0xFFF0_0000_0000_0000, 48, False),
        (0xFE00_0000_0000_0000, 57, False),
        (0xFFF0_0000_0000_0000, 57, True),
        (0xFF00_0000_0000_0000, 57, True),
        (0x00FF_FFFF_FFFF_FFFF, 57, True),
        (0x0000_8000_0000_0000, 57, True),
        (0x8000_0000_0000_0000, 64, True),
    ],
)
def test_is_canonical(addr, va_bits, ok):
    assert is_canonical(addr, va_bits) is ok


@pytest.mark.parametrize("addr", [-1, 1 << 64])
def test_is_canonical_range(addr):
    with pytest.raises(ValueError):
        is_canonical(addr)


@pytest.mark.parametrize(
    "value, bits, expected",
    [(0xFF, 8, -1), (0x7F, 8, 127), (0x80, 8, -128), (0x1FF, 8, -1), (0x8000_0000_0000, 48, -(1 << 47))],
)
def test_sign_extend(value, bits, expected):
    assert sign_extend(value, bits) == expected


def test_canonicalize():
    assert canonicalize(0x0000_8000_0000_0000) == 0xFFFF_8000_0000_0000
    assert canonicalize(0x1234_7FFF_FFFF_FFFF) == 0x0000_7FFF_FFFF_FFFF
