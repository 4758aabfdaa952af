"""Guest physical memory through QEMU's human monitor (`xp`), for page walks: gdb's memory
reads are linear (through the CPU's current page tables), the walk needs physical reads."""

from __future__ import annotations

import re

from lab.errors import GuestError

_XP_LINE = re.compile(r"^(?P<addr>[0-9a-f]+): (?P<values>(?:0x[0-9a-f]+\s*)+)$")


def parse_xp(text: str) -> dict[int, int]:
    """QEMU HMP `xp /Ngx ADDR` output -> {physical address: 64-bit value}."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        m = _XP_LINE.match(line.strip())
        if not m:
            continue
        base = int(m["addr"], 16)
        for i, v in enumerate(m["values"].split()):
            out[base + 8 * i] = int(v, 16)
    return out


def phys_reader(monitor):
    """read_phys(address, length) through QEMU's human monitor command `xp` (physical memory);
    `monitor` runs one HMP command (QMP's human-monitor-command, or gdb's `monitor`)."""
    def read(address: int, length: int) -> bytes:
        words = (length + 7) // 8
        values = parse_xp(monitor(f"xp /{words}gx {address:#x}"))
        try:
            return b"".join(values[address + 8 * i].to_bytes(8, "little") for i in range(words))[:length]
        except KeyError:
            raise GuestError(f"QEMU's xp returned no data for physical address {address:#x}") from None
    return read
