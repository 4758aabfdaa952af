"""QEMU's TCG exception log (`-d int`): one line per delivered event, plus the
`check_exception` lines that show how faults combine (SDM vol. 3A §6.15, Table 6-5).

Line formats (QEMU 7.2 target/i386/tcg/seg_helper.c, helper.c):
    `check_exception old: 0xffffffff new 0xe`
    `    12: v=0e e=0002 i=0 cpl=0 IP=0008:000000000010235c pc=000000000010235c SP=0010:0000000000110f40 CR2=0000000040001000`
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EVENT = re.compile(
    r"^\s*(?P<n>\d+): v=(?P<v>[0-9a-f]{2}) e=(?P<e>[0-9a-f]{4}) i=(?P<i>\d) cpl=(?P<cpl>\d) "
    r"IP=(?P<cs>[0-9a-f]{4}):(?P<ip>[0-9a-f]+) pc=(?P<pc>[0-9a-f]+) "
    r"SP=(?P<ss>[0-9a-f]{4}):(?P<sp>[0-9a-f]+)(?: CR2=(?P<cr2>[0-9a-f]+))?")
_CHECK = re.compile(r"^check_exception old: 0x(?P<old>[0-9a-f]+) new 0x(?P<new>[0-9a-f]+)")


@dataclass(frozen=True)
class LogEvent:
    vector: int
    error_code: int
    software: bool  # i=1: `int n`, int3, into
    cpl: int
    cs: int
    rip: int
    ss: int
    rsp: int
    cr2: int | None
    line: str


@dataclass(frozen=True)
class CheckException:
    old: int | None  # None: no exception was being delivered (0xffffffff)
    new: int
    line: str


def parse(text: str) -> list[LogEvent | CheckException]:
    out: list[LogEvent | CheckException] = []
    for line in text.splitlines():
        if m := _EVENT.match(line):
            out.append(LogEvent(int(m["v"], 16), int(m["e"], 16), m["i"] == "1", int(m["cpl"]),
                                int(m["cs"], 16), int(m["ip"], 16), int(m["ss"], 16),
                                int(m["sp"], 16), int(m["cr2"], 16) if m["cr2"] else None,
                                line.strip()))
        elif m := _CHECK.match(line):
            old = int(m["old"], 16)
            out.append(CheckException(None if old == 0xFFFFFFFF else old, int(m["new"], 16), line.strip()))
    return out
