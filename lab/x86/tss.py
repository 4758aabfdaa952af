"""64-bit Task State Segment.

Intel SDM vol. 3A §8.7 "Task Management in 64-bit Mode", Figure 8-11 "64-Bit
TSS Format" (Dec 2023 numbering; §7.7 / Figure 7-11 in older editions); AMD
APM vol. 2 §12.2.5 "64-Bit Task State Segment".  104 bytes; the I/O
permission bitmap, if any, follows at ``iomap_base`` (an offset from the TSS
base), so a dump may be longer than 104 bytes.

IST numbering: ``Tss.ist[0]`` is IST1 ... ``Tss.ist[6]`` is IST7.  Hardware
(and a gate's IST field) counts 1..7, with 0 meaning "no IST"; use
``Tss.ist_slot(n)`` with the hardware number to avoid off-by-one mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bits import Struct, StructField

TSS = Struct(
    "64-bit TSS",
    104,
    "Intel SDM vol. 3A §8.7 Figure 8-11; AMD APM vol. 2 §12.2.5",
    (
        StructField("reserved_00", 0x00, 4, reserved=True),
        StructField("rsp0", 0x04, 8),
        StructField("rsp1", 0x0C, 8),
        StructField("rsp2", 0x14, 8),
        StructField("reserved_1c", 0x1C, 8, reserved=True),
        StructField("ist1", 0x24, 8),
        StructField("ist2", 0x2C, 8),
        StructField("ist3", 0x34, 8),
        StructField("ist4", 0x3C, 8),
        StructField("ist5", 0x44, 8),
        StructField("ist6", 0x4C, 8),
        StructField("ist7", 0x54, 8),
        StructField("reserved_5c", 0x5C, 8, reserved=True),
        StructField("reserved_64", 0x64, 2, reserved=True),
        StructField("iomap_base", 0x66, 2),
    ),
)
assert TSS.size == 104
assert TSS.offset("rsp0") == 0x04
assert TSS.offset("ist1") == 0x24
assert TSS.offset("ist7") == 0x54
assert TSS.offset("iomap_base") == 0x66

RSP_NAMES = ("rsp0", "rsp1", "rsp2")
IST_NAMES = ("ist1", "ist2", "ist3", "ist4", "ist5", "ist6", "ist7")
IST_COUNT = len(IST_NAMES)
IOMAP_NONE = TSS.size  # iomap_base > TSS limit: no I/O bitmap (SDM vol. 1 "I/O Permission Bit Map")


@dataclass(frozen=True)
class Tss:
    rsp: tuple[int, int, int]
    ist: tuple[int, ...]   # ist[0] is IST1 ... ist[6] is IST7
    iomap_base: int
    reserved_bits_zero: bool = True

    def ist_slot(self, n: int) -> int:
        """The stack pointer in ISTn, hardware numbering ``n`` in 1..7."""
        if not 1 <= n <= IST_COUNT:
            raise ValueError(f"IST slot must be 1..{IST_COUNT} (hardware numbering), got {n}")
        return self.ist[n - 1]


def decode_tss(raw: bytes) -> Tss:
    """Decode the first 104 bytes of ``raw``; anything after (I/O bitmap) is ignored."""
    if len(raw) < TSS.size:
        raise ValueError(f"{TSS.name}: need at least {TSS.size} bytes, got {len(raw)}")
    f = TSS.decode(bytes(raw[: TSS.size]))
    return Tss(
        rsp=tuple(f[n] for n in RSP_NAMES),  # type: ignore[arg-type]
        ist=tuple(f[n] for n in IST_NAMES),
        iomap_base=f["iomap_base"],
        reserved_bits_zero=TSS.reserved_zero(f),
    )


def encode_tss(
    rsp: tuple[int, ...] = (0, 0, 0),
    ist: tuple[int, ...] = (0,) * IST_COUNT,
    iomap_base: int = IOMAP_NONE,
) -> bytes:
    """104-byte TSS; ``ist[0]`` is IST1.  Reserved fields are zero."""
    if len(rsp) != len(RSP_NAMES) or len(ist) != IST_COUNT:
        raise ValueError(f"need {len(RSP_NAMES)} RSP values and {IST_COUNT} IST values")
    return TSS.encode(
        **dict(zip(RSP_NAMES, rsp)), **dict(zip(IST_NAMES, ist)), iomap_base=iomap_base
    )
