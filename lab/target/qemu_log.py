"""QEMU's TCG exception log (`-d int`): one line per delivered event, plus the
`check_exception` lines that show how faults combine (SDM vol. 3A §6.15, Table 6-5).

Line formats (QEMU 7.2 target/i386/tcg/seg_helper.c, helper.c):
    `check_exception old: 0xffffffff new 0xe`
    `    12: v=0e e=0002 i=0 cpl=0 IP=0008:000000000010235c pc=000000000010235c SP=0010:0000000000110f40 CR2=0000000040001000`
    `     2: v=08 e=0000 i=0 cpl=0 IP=0008:0000000000106ccd pc=0000000000106ccd SP=0010:0000000000142fd0 env->regs[R_EAX]=00000000001430f8`
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lab.x86.vectors import DF

_EVENT = re.compile(
    r"^\s*(?P<n>\d+): v=(?P<v>[0-9a-f]{2}) e=(?P<e>[0-9a-f]{4}) i=(?P<i>\d) cpl=(?P<cpl>\d) "
    r"IP=(?P<cs>[0-9a-f]{4}):(?P<ip>[0-9a-f]+) pc=(?P<pc>[0-9a-f]+) "
    r"SP=(?P<ss>[0-9a-f]{4}):(?P<sp>[0-9a-f]+)(?: CR2=(?P<cr2>[0-9a-f]+))?"
    r"(?: env->regs\[R_EAX\]=(?P<eax>[0-9a-f]+))?")
_CHECK = re.compile(r"^check_exception old: 0x(?P<old>[0-9a-f]+) new 0x(?P<new>[0-9a-f]+)")
_TRIPLE = "Triple fault"


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
    rax: int | None = None  # printed for some vectors (#DF): env->regs[R_EAX]


@dataclass(frozen=True)
class CheckException:
    old: int | None  # None: no exception was being delivered (0xffffffff)
    new: int
    line: str


@dataclass(frozen=True)
class TripleFault:
    """`-d cpu_reset`: the CPU shut down (SDM §6.15: a fault while delivering #DF)."""

    line: str


def parse(text: str) -> list[LogEvent | CheckException | TripleFault]:
    out: list[LogEvent | CheckException | TripleFault] = []
    for line in text.splitlines():
        if line.strip() == _TRIPLE:
            out.append(TripleFault(line.strip()))
            continue
        if m := _EVENT.match(line):
            out.append(LogEvent(int(m["v"], 16), int(m["e"], 16), m["i"] == "1", int(m["cpl"]),
                                int(m["cs"], 16), int(m["ip"], 16), int(m["ss"], 16),
                                int(m["sp"], 16), int(m["cr2"], 16) if m["cr2"] else None,
                                line.strip(), int(m["eax"], 16) if m["eax"] else None))
        elif m := _CHECK.match(line):
            old = int(m["old"], 16)
            out.append(CheckException(None if old == 0xFFFFFFFF else old, int(m["new"], 16), line.strip()))
    return out


def chain(items, mnemonic) -> list[str]:
    """The exception chain QEMU's log shows, e.g. ["#PF", "#PF", "#DF", "#PF", "triple fault"].

    Each `check_exception` line names an exception raised while the previous one was being
    delivered (`old`); when `old` is 8 the pair before it had become a #DF (Table 6-5), so
    the #DF appears in the chain before the exception raised during its delivery. A #DF that
    was delivered (a `v=08` event) ends the chain unless more follows."""
    out: list[str] = []
    for item in items:
        if isinstance(item, CheckException):
            if item.old == DF and (not out or out[-1] != "#DF"):
                out.append("#DF")
            out.append(mnemonic(item.new))
        elif isinstance(item, LogEvent) and item.vector == DF and not item.software:
            if not out or out[-1] != "#DF":
                out.append("#DF")
        elif isinstance(item, TripleFault):
            out.append("triple fault")
    return out


def state_at_last_event(text: str, max_lines: int = 24) -> list[str]:
    """The last delivered event's line and the register dump QEMU prints after it."""
    lines = text.splitlines()
    last = max((i for i, l in enumerate(lines) if _EVENT.match(l)), default=None)
    if last is None:
        return []
    block = [lines[last].strip()]
    for l in lines[last + 1:last + 1 + max_lines]:
        if _EVENT.match(l) or _CHECK.match(l) or l.strip() in (_TRIPLE, ""):
            break
        block.append(l.rstrip())
    return block


@dataclass(frozen=True)
class ChainEntry:
    """One exception of a fatal chain: raised by an instruction, or while the CPU delivered
    the one before it (SDM vol. 3A §6.15, Table 6-5)."""

    number: int  # 1-based, as lab-chain lists and lab-goto takes
    vector: int  # the exception raised
    during: int | None  # the vector being delivered when it was raised; None: an instruction raised it
    delivery: LogEvent | None  # the `v=` line of its delivery (a #DF when it combined into one)
    position: LogEvent | None  # where the CPU was: IP and SP of the delivery (or of the one before)
    outcome: str  # delivered | "raised #N while delivered" | triple fault
    handled: bool = False  # delivered, and nothing was raised during the delivery: its handler ran


def fatal_chain(items) -> list[ChainEntry]:
    """The exceptions from the last one an instruction raised (`check_exception old:
    0xffffffff`) to the end of the log, each with the delivery it led to."""
    starts = [i for i, it in enumerate(items) if isinstance(it, CheckException) and it.old is None]
    if not starts:
        return []
    tail = items[starts[-1]:]
    raised = [(i, it) for i, it in enumerate(tail) if isinstance(it, CheckException)]
    out: list[ChainEntry] = []
    for n, (i, ce) in enumerate(raised, 1):
        end = raised[n][0] if n < len(raised) else len(tail)
        between = tail[i + 1:end]
        delivery = next((e for e in between if isinstance(e, LogEvent) and e.vector in (ce.new, DF)), None)
        position = delivery if delivery is not None else (out[-1].position if out else None)
        handled = False
        if any(isinstance(e, TripleFault) for e in between):
            outcome = "triple fault: the CPU shut down"
        elif n < len(raised):
            outcome = f"its delivery raised #{n + 1}"
        else:
            outcome, handled = "delivered", delivery is not None
        if delivery is not None and delivery.vector != ce.new:
            outcome = f"combined with #{n - 1} into #DF; " + outcome.replace("its delivery", "the #DF's delivery")
        out.append(ChainEntry(n, ce.new, ce.old, delivery, position, outcome, handled))
    return out
