"""The arguments of the lab's gdb commands, parsed (outside lab.present.gdbcmds, which needs
gdb's Python, so unit tests can import them): one UserError line for a bad one."""

from __future__ import annotations

from lab.errors import UserError


def parse_int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise UserError(f"{what} must be a number (decimal or 0x hex), not {text!r}") from None


#: The most frames `lab-stack N` walks: a deeper RBP chain is a loop or garbage.
MAX_FRAMES = 1024


def parse_count(text: str, what: str, maximum: int = MAX_FRAMES) -> int:
    """A count of things to show: a whole number 1-`maximum` (0 or less would show nothing)."""
    n = parse_int(text, what)
    if not 1 <= n <= maximum:
        raise UserError(f"{what} must be 1-{maximum}, not {n}")
    return n


def parse_vector(text: str) -> int:
    """A vector: a number 0-255 or a mnemonic (#PF, pf)."""
    from lab.x86.vectors import MAX_VECTOR, vector_by_mnemonic

    if text[:1].isdigit():
        v = parse_int(text, "a vector")
        if not 0 <= v <= MAX_VECTOR:
            raise UserError(f"vector {v} is outside 0-{MAX_VECTOR}")
        return v
    try:
        return vector_by_mnemonic(text).vector
    except KeyError as exc:
        raise UserError(exc.args[0]) from None


def parse_range(arg: str) -> tuple[int, int]:
    """`lab-idt`'s argument: empty (all), VECTOR, or LO-HI."""
    if not arg:
        return 0, 255
    lo, sep, hi = arg.partition("-")
    lo_v = parse_vector(lo.strip())
    hi_v = parse_vector(hi.strip()) if sep else lo_v
    if hi_v < lo_v:
        raise UserError(f"empty range {arg!r}: {lo_v} > {hi_v}")
    return lo_v, hi_v
