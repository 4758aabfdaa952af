"""Canonical 64-bit linear addresses.

Intel SDM vol. 1 §3.3.7.1 "Canonical Addressing" / AMD APM vol. 2 §5.3.1
"Canonical Address Form": with ``va_bits`` implemented linear-address bits
(48 for 4-level paging, 57 for 5-level), bits 63 down to ``va_bits - 1`` must
all be copies of the same bit.
"""

from __future__ import annotations

from lab.errors import UserError

ADDRESS_BITS = 64
#: The most linear-address bits any x86-64 CPU implements (5-level paging, LA57): an address
#: not canonical at this width is one no CPU can fetch from or break at.
MAX_VA_BITS = 57


def _check_u64(addr: int) -> None:
    if not 0 <= addr < (1 << ADDRESS_BITS):
        raise ValueError(f"{addr:#x} is not a {ADDRESS_BITS}-bit unsigned value")


def sign_extend(value: int, bits: int) -> int:
    """Interpret the low ``bits`` bits of ``value`` as two's complement.

    Returns a Python int (negative if bit ``bits - 1`` is set):
    ``sign_extend(0xff, 8) == -1``.
    """
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got {bits}")
    value &= (1 << bits) - 1
    sign = 1 << (bits - 1)
    return (value ^ sign) - sign


def canonicalize(addr: int, va_bits: int = 48) -> int:
    """Sign-extend bit ``va_bits - 1`` of ``addr`` into a 64-bit unsigned value."""
    return sign_extend(addr, va_bits) & ((1 << ADDRESS_BITS) - 1)


def is_canonical(addr: int, va_bits: int = 48) -> bool:
    """True if bits 63..va_bits-1 of the 64-bit ``addr`` are all equal."""
    _check_u64(addr)
    if not 1 <= va_bits <= ADDRESS_BITS:
        raise ValueError(f"va_bits must be 1..{ADDRESS_BITS}, got {va_bits}")
    return canonicalize(addr, va_bits) == addr


def code_address_error(addr: int) -> str | None:
    """Why no x86-64 CPU can execute at `addr` (a breakpoint there never hits), or None."""
    if not 0 <= addr < 1 << ADDRESS_BITS:
        return f"{addr:#x} is not a {ADDRESS_BITS}-bit address"
    if not is_canonical(addr, MAX_VA_BITS):
        return (f"{addr:#x} is not canonical (bits 63-47 must all be equal with 4-level paging, "
                f"63-56 with 5-level): no code runs there")
    return None


def refuse_noncode_literal(text: str, option: str) -> None:
    """One line (UserError) when `text` is a number no CPU can run at; a symbol's name is
    left to be looked up once the kernel's symbols are read."""
    try:
        addr = int(text, 0)
    except ValueError:
        return
    why = code_address_error(addr)
    if why is not None:
        raise UserError(f"{option} {text}: {why}")
