"""4-level paging: entry formats and the walk from CR3 (SDM vol. 3A §5.5, "4-Level Paging",
Figure 5-11 and Tables 5-15 to 5-20; AMD APM vol. 2 §5.3).

A linear address splits into PML4, PDPT, PD and PT indices (9 bits each, from bit 39 down)
and a 12-bit offset. Each level's entry holds the next table's physical address (bits 51:12),
or, with PS=1 in a PDPTE or PDE, a 1 GiB or 2 MiB page. Reading physical memory is the
caller's job (`read_phys(address, length) -> bytes`), so the walk is a pure function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lab.x86.addr import is_canonical
from lab.x86.bits import BitField, Layout

ENTRY = Layout("paging-structure entry", 8, "SDM vol. 3A §5.5, Tables 5-15..5-20", (
    BitField("p", 0, 1), BitField("rw", 1, 1), BitField("us", 2, 1), BitField("pwt", 3, 1),
    BitField("pcd", 4, 1), BitField("a", 5, 1), BitField("d", 6, 1), BitField("ps", 7, 1),
    BitField("g", 8, 1), BitField("avl", 9, 3), BitField("addr", 12, 40),
    BitField("avl_hi", 52, 7), BitField("pk", 59, 4), BitField("xd", 63, 1),
))
assert ENTRY.size == 8

LEVELS = ("PML4", "PDPT", "PD", "PT")
INDEX_BITS = 9
PAGE_SHIFT = 12
ENTRY_BYTES = 8
#: Page size mapped by an entry with PS=1 at each level (PML4 entries cannot map pages).
LARGE_PAGE = {"PDPT": 1 << 30, "PD": 1 << 21, "PT": 1 << 12}
CR3_ADDR = BitField("pml4", 12, 40)


def index(va: int, level: int) -> int:
    """The table index of `va` at level 0 (PML4) to 3 (PT)."""
    return (va >> (PAGE_SHIFT + INDEX_BITS * (3 - level))) & ((1 << INDEX_BITS) - 1)


def flags(entry: int) -> str:
    d = ENTRY.decode_int(entry)
    names = [n.upper() for n in ("p", "rw", "us", "pwt", "pcd", "a", "d", "ps", "g", "xd") if d[n]]
    return " ".join(names) or "-"


@dataclass(frozen=True)
class Step:
    level: str
    index: int
    entry_address: int  # physical address of the entry
    entry: int

    @property
    def present(self) -> bool:
        return bool(self.entry & 1)

    @property
    def flags(self) -> str:
        return flags(self.entry)


@dataclass(frozen=True)
class Translation:
    va: int
    cr3: int
    steps: tuple[Step, ...]
    physical: int | None  # None: not mapped
    page_size: int | None
    fault: str | None  # why there is no translation

    @property
    def writable(self) -> bool:
        return all(ENTRY.decode_int(s.entry)["rw"] for s in self.steps)

    @property
    def user(self) -> bool:
        return all(ENTRY.decode_int(s.entry)["us"] for s in self.steps)

    @property
    def executable(self) -> bool:
        return not any(ENTRY.decode_int(s.entry)["xd"] for s in self.steps)

    def to_json(self) -> dict:
        return {"va": self.va, "cr3": self.cr3, "physical": self.physical, "page_size": self.page_size,
                "fault": self.fault, "steps": [{"level": st.level, "index": st.index,
                                                "entry_address": st.entry_address, "entry": st.entry,
                                                "flags": st.flags} for st in self.steps]}


def walk(cr3: int, va: int, read_phys: Callable[[int, int], bytes], maxphyaddr: int = 52) -> Translation:
    if not is_canonical(va):
        return Translation(va, cr3, (), None, None, f"{va:#x} is not canonical")
    table = CR3_ADDR.extract(cr3) << PAGE_SHIFT
    addr_mask = ((1 << maxphyaddr) - 1) & ~((1 << PAGE_SHIFT) - 1)
    steps: list[Step] = []
    for level, name in enumerate(LEVELS):
        i = index(va, level)
        entry_address = table + i * ENTRY_BYTES
        entry = int.from_bytes(read_phys(entry_address, ENTRY_BYTES), "little")
        step = Step(name, i, entry_address, entry)
        steps.append(step)
        if not step.present:
            return Translation(va, cr3, tuple(steps), None, None, f"{name}[{i}] is not present")
        reserved = entry & ~addr_mask & (((1 << 52) - 1) & ~((1 << PAGE_SHIFT) - 1))
        if reserved:
            return Translation(va, cr3, tuple(steps), None, None,
                               f"{name}[{i}] sets reserved bits {reserved:#x} (above MAXPHYADDR {maxphyaddr})")
        large = name != "PML4" and ENTRY.decode_int(entry)["ps"]
        if large or name == "PT":
            size = LARGE_PAGE[name]
            base = entry & addr_mask & ~(size - 1)
            return Translation(va, cr3, tuple(steps), base | (va & (size - 1)), size, None)
        table = entry & addr_mask
    raise AssertionError("unreachable")
