"""Tiny declarative layout helpers: bit fields and byte-offset structs.

A ``Layout`` is a fixed-size little-endian blob split into ``BitField``s; a
``Struct`` is the same idea with byte offsets (``StructField``).  Both are
validated when constructed: every field must lie inside the blob and no two
fields may overlap (``ValueError`` otherwise).  Bits not covered by a field
decode to nothing and encode as zero.

Fields split across the blob by the architecture (a gate's offset 15:0 /
31:16 / 63:32, a descriptor's base and limit) are declared as a
``Composite`` of parts listed least-significant first; ``decode`` reports the
parts *and* the joined value, ``encode`` accepts either.

Fields marked ``reserved=True`` are the manual's "reserved, must be zero"
bits; ``reserved_zero(decoded)`` checks them.

x86 is little-endian (SDM vol. 1 §1.3.1 "Bit and Byte Order"), so
``decode`` reads the bytes with ``int.from_bytes(raw, "little")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

_BYTE_BITS = 8
_ENDIAN = "little"  # SDM vol. 1 §1.3.1


@dataclass(frozen=True)
class BitField:
    """``width`` bits starting at bit ``lsb`` (bit 0 = LSB of byte 0)."""

    name: str
    lsb: int
    width: int
    reserved: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"bit field name {self.name!r} is not an identifier")
        if self.lsb < 0 or self.width < 1:
            raise ValueError(f"bit field {self.name}: lsb={self.lsb} width={self.width} invalid")

    @property
    def msb(self) -> int:
        return self.lsb + self.width - 1

    @property
    def max_value(self) -> int:
        return (1 << self.width) - 1

    @property
    def mask(self) -> int:
        return self.max_value << self.lsb

    def extract(self, value: int) -> int:
        return (value >> self.lsb) & self.max_value

    def insert(self, value: int, field_value: int) -> int:
        if not 0 <= field_value <= self.max_value:
            raise ValueError(
                f"{self.name}: value {field_value:#x} does not fit in {self.width} bit(s)"
            )
        return (value & ~self.mask) | (field_value << self.lsb)


@dataclass(frozen=True)
class Composite:
    """A logical value stored in several fields; ``parts`` least-significant first."""

    name: str
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """A ``size_bytes``-byte little-endian blob made of ``fields``."""

    name: str
    size_bytes: int
    manual_ref: str
    fields: tuple[BitField, ...]
    composites: tuple[Composite, ...] = ()

    def __post_init__(self) -> None:
        if self.size_bytes < 1:
            raise ValueError(f"{self.name}: size {self.size_bytes} must be positive")
        seen: dict[str, BitField] = {}
        used = 0
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"{self.name}: duplicate field {f.name!r}")
            if f.msb >= self.size_bits:
                raise ValueError(
                    f"{self.name}: field {f.name} (bits {f.lsb}..{f.msb}) "
                    f"exceeds {self.size_bits} bits"
                )
            if used & f.mask:
                other = next(o.name for o in seen.values() if o.mask & f.mask)
                raise ValueError(f"{self.name}: field {f.name} overlaps {other}")
            used |= f.mask
            seen[f.name] = f
        claimed: set[str] = set()
        for i, c in enumerate(self.composites):
            if c.name in seen or any(c.name == o.name for o in self.composites[:i]):
                raise ValueError(f"{self.name}: composite {c.name!r} clashes with another name")
            for part in c.parts:
                if part not in seen:
                    raise ValueError(f"{self.name}: composite {c.name} names unknown field {part!r}")
                if part in claimed:
                    raise ValueError(f"{self.name}: field {part} is in two composites")
                claimed.add(part)

    # -- introspection -----------------------------------------------------
    @property
    def size(self) -> int:
        """Size in bytes (alias of ``size_bytes``)."""
        return self.size_bytes

    @property
    def size_bits(self) -> int:
        return self.size_bytes * _BYTE_BITS

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields) + tuple(c.name for c in self.composites)

    def field(self, name: str) -> BitField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name}: no field {name!r} (known: {', '.join(self.names)})")

    def composite(self, name: str) -> Composite:
        for c in self.composites:
            if c.name == name:
                return c
        raise KeyError(f"{self.name}: no composite {name!r}")

    # -- decoding ----------------------------------------------------------
    def decode_int(self, value: int) -> dict[str, int]:
        if not 0 <= value < (1 << self.size_bits):
            raise ValueError(f"{self.name}: {value:#x} does not fit in {self.size_bits} bits")
        out = {f.name: f.extract(value) for f in self.fields}
        for c in self.composites:
            out[c.name] = self._join(c, out)
        return out

    def decode(self, raw: bytes) -> dict[str, int]:
        if len(raw) != self.size_bytes:
            raise ValueError(
                f"{self.name}: expected exactly {self.size_bytes} bytes, got {len(raw)}"
            )
        return self.decode_int(int.from_bytes(raw, _ENDIAN))

    def reserved_zero(self, decoded: Mapping[str, int]) -> bool:
        """True if every field declared ``reserved=True`` is zero in ``decoded``."""
        return all(decoded[f.name] == 0 for f in self.fields if f.reserved)

    # -- encoding ----------------------------------------------------------
    def encode_int(self, **values: int) -> int:
        parts = self._expand(values)
        out = 0
        for name, v in parts.items():
            out = self.field(name).insert(out, v)
        return out

    def encode(self, **values: int) -> bytes:
        return self.encode_int(**values).to_bytes(self.size_bytes, _ENDIAN)

    # -- internals ---------------------------------------------------------
    def _join(self, c: Composite, decoded: Mapping[str, int]) -> int:
        value, shift = 0, 0
        for part in c.parts:
            value |= decoded[part] << shift
            shift += self.field(part).width
        return value

    def _split(self, c: Composite, value: int) -> dict[str, int]:
        if value < 0:
            raise ValueError(f"{self.name}: {c.name} must be non-negative, got {value}")
        out, rest = {}, value
        for part in c.parts:
            f = self.field(part)
            out[part] = rest & f.max_value
            rest >>= f.width
        if rest:
            raise ValueError(f"{self.name}: {c.name}={value:#x} too wide for its fields")
        return out

    def _expand(self, values: Mapping[str, int]) -> dict[str, int]:
        known = {f.name for f in self.fields}
        comps = {c.name: c for c in self.composites}
        unknown = [n for n in values if n not in known and n not in comps]
        if unknown:
            raise ValueError(
                f"{self.name}: unknown field(s) {unknown} (known: {', '.join(self.names)})"
            )
        out = {n: v for n, v in values.items() if n in known}
        for name, v in values.items():
            if name not in comps:
                continue
            for part, pv in self._split(comps[name], v).items():
                if part in out and out[part] != pv:
                    raise ValueError(f"{self.name}: {name} and {part} given inconsistently")
                out[part] = pv
        return out


@dataclass(frozen=True)
class StructField:
    """An unsigned little-endian integer of ``size`` bytes at byte ``offset``."""

    name: str
    offset: int
    size: int
    reserved: bool = False


@dataclass(frozen=True)
class Struct:
    """A ``size``-byte structure of byte-aligned integer fields."""

    name: str
    size: int
    manual_ref: str
    fields: tuple[StructField, ...]
    _layout: Layout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for f in self.fields:
            if f.offset < 0 or f.size < 1:
                raise ValueError(f"{self.name}: field {f.name} offset/size invalid")
        bit_fields = tuple(
            BitField(f.name, f.offset * _BYTE_BITS, f.size * _BYTE_BITS, f.reserved)
            for f in self.fields
        )
        object.__setattr__(self, "_layout", Layout(self.name, self.size, self.manual_ref, bit_fields))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> StructField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name}: no field {name!r} (known: {', '.join(self.names)})")

    def offset(self, name: str) -> int:
        return self.field(name).offset

    def read_field(self, read_memory, base: int, name: str) -> int:
        """Field ``name`` of the structure at ``base``, read alone through
        ``read_memory(address, size)`` (e.g. ``Gdb.read_memory``)."""
        f = self.field(name)
        return int.from_bytes(read_memory(base + f.offset, f.size), _ENDIAN)

    def decode(self, raw: bytes) -> dict[str, int]:
        return self._layout.decode(raw)

    def encode(self, **values: int) -> bytes:
        return self._layout.encode(**values)

    def reserved_zero(self, decoded: Mapping[str, int]) -> bool:
        return self._layout.reserved_zero(decoded)
