"""Segment selectors and GDT descriptors (code/data and 64-bit system).

Sources (Intel SDM vol. 3A, Dec 2023 numbering; AMD APM vol. 2):

* Selector: SDM §3.4.2 Figure 3-6 "Segment Selector" -- RPL bits 0-1, TI bit
  2, index bits 3-15.
* Code/data descriptor, 8 bytes: SDM §3.4.5 Figure 3-8 "Segment Descriptor";
  type bits per §3.4.5.1 Table 3-1 "Code- and Data-Segment Types"; AMD APM
  vol. 2 §4.8.1-4.8.2.
* System descriptor in 64-bit mode, 16 bytes: SDM §8.2.3 Figure 8-4 "Format
  of TSS and LDT Descriptors in 64-bit Mode"; types per §3.5 Table 3-2
  (IA-32e column); AMD APM vol. 2 §4.8.3.  Bits 104-108 must be zero, the rest
  of bits 96-127 are reserved.

``decode_gdt`` walks the table 8 bytes at a time.  An all-zero slot is a
"null" descriptor (8 bytes).  A non-zero slot with S=0 is a system descriptor
and consumes 16 bytes; if the table ends after its first 8 bytes it is
returned with kind "system-truncated" (base from the low 8 bytes only) rather
than raising, so a checker can report it.  Kinds: "null", "code", "data",
"tss-available", "tss-busy", "ldt", "system-other", "system-truncated".

``Descriptor.flags_str``: space-separated tokens, in this order: "P" or "NP",
"DPL<n>", then each set flag of "AVL", "L", "DB", "G"; for code/data segments
additionally "A" (accessed), "R"/"W" (readable code / writable data), "C"/"ED"
(conforming code / expand-down data).  Example: 0x00af9b000000ffff ->
"P DPL0 L G A R".
"""

from __future__ import annotations

from dataclasses import dataclass

from .bits import BitField, Composite, Layout

# -- selectors ---------------------------------------------------------------
SELECTOR = Layout(
    "segment selector",
    2,
    "Intel SDM vol. 3A §3.4.2 Figure 3-6",
    (BitField("rpl", 0, 2), BitField("ti", 2, 1), BitField("index", 3, 13)),
)
assert SELECTOR.size == 2


def decode_selector(value: int) -> tuple[int, int, int]:
    """``(index, ti, rpl)`` of a 16-bit selector."""
    f = SELECTOR.decode_int(value)
    return f["index"], f["ti"], f["rpl"]


def encode_selector(index: int, ti: int = 0, rpl: int = 0) -> int:
    return SELECTOR.encode_int(index=index, ti=ti, rpl=rpl)


# -- descriptors -------------------------------------------------------------
_LOW_FIELDS = (
    BitField("limit_15_0", 0, 16),
    BitField("base_23_0", 16, 24),
    BitField("type", 40, 4),
    BitField("s", 44, 1),
    BitField("dpl", 45, 2),
    BitField("p", 47, 1),
    BitField("limit_19_16", 48, 4),
    BitField("avl", 52, 1),
    BitField("l", 53, 1),
    BitField("db", 54, 1),
    BitField("g", 55, 1),
    BitField("base_31_24", 56, 8),
)
_LIMIT = Composite("limit", ("limit_15_0", "limit_19_16"))

SEGMENT = Layout(
    "code/data segment descriptor",
    8,
    "Intel SDM vol. 3A §3.4.5 Figure 3-8; AMD APM vol. 2 §4.8.1-4.8.2",
    _LOW_FIELDS,
    (Composite("base", ("base_23_0", "base_31_24")), _LIMIT),
)
assert SEGMENT.size == 8

SYSTEM = Layout(
    "64-bit system segment descriptor",
    16,
    "Intel SDM vol. 3A §8.2.3 Figure 8-4; AMD APM vol. 2 §4.8.3",
    _LOW_FIELDS
    + (
        BitField("base_63_32", 64, 32),
        BitField("reserved_96_103", 96, 8, reserved=True),
        BitField("zero_104_108", 104, 5, reserved=True),
        BitField("reserved_109_127", 109, 19, reserved=True),
    ),
    (Composite("base", ("base_23_0", "base_31_24", "base_63_32")), _LIMIT),
)
assert SYSTEM.size == 16 and SYSTEM.size == 2 * SEGMENT.size

# Code/data type bits, relative to the 4-bit type field (SDM §3.4.5.1 Table 3-1).
TYPE_ACCESSED = BitField("accessed", 0, 1)
TYPE_RW = BitField("rw", 1, 1)           # code: readable, data: writable
TYPE_CONFORMING = BitField("dc", 2, 1)   # code: conforming, data: expand-down
TYPE_EXECUTABLE = BitField("executable", 3, 1)

# System types valid in IA-32e mode (SDM §3.5 Table 3-2).
SYSTEM_TYPE_LDT = 0x2
SYSTEM_TYPE_TSS_AVAILABLE = 0x9
SYSTEM_TYPE_TSS_BUSY = 0xB
SYSTEM_TYPE_CALL_GATE = 0xC
SYSTEM_TYPE_INTERRUPT_GATE = 0xE
SYSTEM_TYPE_TRAP_GATE = 0xF
SYSTEM_TYPE_NAMES: dict[int, str] = {
    SYSTEM_TYPE_LDT: "LDT",
    SYSTEM_TYPE_TSS_AVAILABLE: "64-bit TSS (available)",
    SYSTEM_TYPE_TSS_BUSY: "64-bit TSS (busy)",
    SYSTEM_TYPE_CALL_GATE: "64-bit call gate",
    SYSTEM_TYPE_INTERRUPT_GATE: "64-bit interrupt gate",
    SYSTEM_TYPE_TRAP_GATE: "64-bit trap gate",
}
_SYSTEM_KINDS = {
    SYSTEM_TYPE_LDT: "ldt",
    SYSTEM_TYPE_TSS_AVAILABLE: "tss-available",
    SYSTEM_TYPE_TSS_BUSY: "tss-busy",
}

GRANULARITY_SHIFT = 12  # SDM §3.4.5: G=1 scales the limit by 4 KByte units
_PAGE_OFFSET = (1 << GRANULARITY_SHIFT) - 1


@dataclass(frozen=True)
class Descriptor:
    index: int
    selector: int
    raw: bytes
    kind: str
    base: int
    limit_raw: int
    limit: int
    type: int
    s: bool
    dpl: int
    present: bool
    avl: bool
    l: bool  # noqa: E741 - the manual's name
    db: bool
    g: bool
    size: int
    reserved_bits_zero: bool = True

    @property
    def is_code_data(self) -> bool:
        return self.kind in ("code", "data")

    def _type_bit(self, bit: BitField, kind: str) -> bool:
        return self.kind == kind and bool(bit.extract(self.type))

    @property
    def is_code64(self) -> bool:
        return self.kind == "code" and self.l and not self.db

    @property
    def accessed(self) -> bool:
        return self.is_code_data and bool(TYPE_ACCESSED.extract(self.type))

    @property
    def readable(self) -> bool:
        """Code segments: readable.  Data segments are always readable."""
        return self.kind == "data" or self._type_bit(TYPE_RW, "code")

    @property
    def writable(self) -> bool:
        return self._type_bit(TYPE_RW, "data")

    @property
    def conforming(self) -> bool:
        return self._type_bit(TYPE_CONFORMING, "code")

    @property
    def expand_down(self) -> bool:
        return self._type_bit(TYPE_CONFORMING, "data")

    @property
    def type_name(self) -> str:
        if self.is_code_data or self.kind == "null":
            return self.kind
        return SYSTEM_TYPE_NAMES.get(self.type, f"reserved(0x{self.type:x})")

    @property
    def flags_str(self) -> str:
        tokens = ["P" if self.present else "NP", f"DPL{self.dpl}"]
        tokens += [n for n, on in (("AVL", self.avl), ("L", self.l), ("DB", self.db), ("G", self.g)) if on]
        if self.is_code_data:
            tokens += [n for n, on in (
                ("A", self.accessed),
                ("R", self.kind == "code" and self.readable),
                ("W", self.writable),
                ("C", self.conforming),
                ("ED", self.expand_down),
            ) if on]
        return " ".join(tokens)


def _kind(f: dict[str, int], raw: bytes) -> str:
    if not any(raw):
        return "null"
    if f["s"]:
        return "code" if TYPE_EXECUTABLE.extract(f["type"]) else "data"
    return _SYSTEM_KINDS.get(f["type"], "system-other")


def _effective_limit(limit_raw: int, g: int) -> int:
    return (limit_raw << GRANULARITY_SHIFT) | _PAGE_OFFSET if g else limit_raw


def _make(index: int, raw: bytes, f: dict[str, int], kind: str, layout: Layout) -> Descriptor:
    return Descriptor(
        index=index,
        selector=encode_selector(index),
        raw=raw,
        kind=kind,
        base=f["base"],
        limit_raw=f["limit"],
        limit=_effective_limit(f["limit"], f["g"]),
        type=f["type"],
        s=bool(f["s"]),
        dpl=f["dpl"],
        present=bool(f["p"]),
        avl=bool(f["avl"]),
        l=bool(f["l"]),
        db=bool(f["db"]),
        g=bool(f["g"]),
        size=len(raw),
        reserved_bits_zero=layout.reserved_zero(f),
    )


def decode_descriptor(raw: bytes, index: int = 0) -> Descriptor:
    """Decode one descriptor: 8 bytes (null/code/data) or 16 bytes (system).

    8 bytes with S=0 and non-zero contents decode as "system-truncated".
    """
    raw = bytes(raw)
    if len(raw) == SYSTEM.size:
        f = SYSTEM.decode(raw)
        low = raw[: SEGMENT.size]
        if f["s"] or not any(low):
            raise ValueError(f"16-byte descriptor at index {index} is not a system descriptor")
        return _make(index, raw, f, _kind(f, low), SYSTEM)
    f = SEGMENT.decode(raw)
    kind = _kind(f, raw)
    if kind not in ("null", "code", "data"):
        kind = "system-truncated"
    return _make(index, raw, f, kind, SEGMENT)


def decode_gdt(table: bytes) -> list[Descriptor]:
    """Walk a raw GDT; system descriptors take two slots (see module docstring)."""
    table = bytes(table)
    if len(table) % SEGMENT.size:
        raise ValueError(
            f"GDT length {len(table)} is not a multiple of the {SEGMENT.size}-byte slot size"
        )
    out: list[Descriptor] = []
    pos = 0
    while pos < len(table):
        low = table[pos : pos + SEGMENT.size]
        f = SEGMENT.decode(low)
        is_system = any(low) and not f["s"]
        size = SYSTEM.size if is_system and pos + SYSTEM.size <= len(table) else SEGMENT.size
        out.append(decode_descriptor(table[pos : pos + size], pos // SEGMENT.size))
        pos += size
    return out


def encode_code_data(
    *,
    type: int,
    base: int = 0,
    limit: int = 0,
    dpl: int = 0,
    present: bool = True,
    avl: bool = False,
    l: bool = False,  # noqa: E741
    db: bool = False,
    g: bool = False,
    s: bool = True,
) -> bytes:
    """8-byte code/data descriptor; ``limit`` is the raw 20-bit field."""
    return SEGMENT.encode(
        base=base, limit=limit, type=type, s=int(s), dpl=dpl, p=int(present),
        avl=int(avl), l=int(l), db=int(db), g=int(g),
    )


def encode_system(
    *,
    type: int,
    base: int,
    limit: int,
    dpl: int = 0,
    present: bool = True,
    avl: bool = False,
    g: bool = False,
) -> bytes:
    """16-byte 64-bit system descriptor (S=0, reserved bits zero)."""
    return SYSTEM.encode(
        base=base, limit=limit, type=type, s=0, dpl=dpl, p=int(present),
        avl=int(avl), g=int(g),
    )
