"""Decoding the lab kernel's in-guest observer (kernel/src/observer.rs).

The kernel records each delivered exception in a ring of `Record`s (`LAB_OBSERVER`, layouts in
lab/labkernel/layouts.py). The lab gets them either as the raw buffer (a gdb memory read of the
symbol: `decode_buffer`) or over serial (`observed` prints the records not printed yet as hex
lines: `parse_dump`). Both give `ObservedException`s, oldest first.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from lab.errors import GuestError
from lab.labkernel.layouts import (NO_ERROR_CODE, OBSERVED_WORDS, OBSERVER_CAPACITY, OBSERVER_HEADER,
                                   OBSERVER_MAGIC, OBSERVER_RECORD, OBSERVER_SIZE, PLANT)

STYLES = ("x86-interrupt", "stub", "tutorial")  # the kernel's `Style` (idt.rs) as a number: index
HEADER_LINE = re.compile(r"observed count=(\d+) new=(\d+) lost=(\d+) capacity=(\d+) record_size=(\d+)")
RECORD_LINE = re.compile(r"record ([0-9a-f]+)")


@dataclass(frozen=True)
class ObservedException:
    seq: int
    vector: int
    style: str
    error_code: int | None
    entry_rsp: int
    words: tuple[int, ...]  # from the entry RSP up: [error code,] RIP, CS, RFLAGS, RSP, SS
    rflags: int  # inside the handler
    cr2: int
    cr3: int
    cs: int
    ss: int
    gate: bytes  # the live 16-byte IDT gate for `vector`
    ist_top: int
    plant: dict  # rsp, rflags, cs, ss at the harness's plant point
    cpu: int = 0  # the CPU that took it (its initial APIC ID)

    @property
    def frame(self) -> int:
        """Address of the saved RIP."""
        return self.entry_rsp + (8 if self.error_code is not None else 0)

    @property
    def saved_rip(self) -> int:
        return self.words[1 if self.error_code is not None else 0]

    def to_json(self) -> dict:
        d = asdict(self)
        d["gate"] = self.gate.hex()
        d["words"] = list(self.words)
        return d


def decode_record(raw: bytes) -> ObservedException:
    if len(raw) != OBSERVER_RECORD.size:
        raise GuestError(f"an observer record is {OBSERVER_RECORD.size} bytes, got {len(raw)}")
    f = OBSERVER_RECORD.decode(raw)
    if f["style"] >= len(STYLES):
        raise GuestError(f"observer record {f['seq']}: style {f['style']} is not one of 0..{len(STYLES) - 1}")
    return ObservedException(
        seq=f["seq"], vector=f["vector"], style=STYLES[f["style"]],
        error_code=None if f["error_code"] == NO_ERROR_CODE else f["error_code"],
        entry_rsp=f["entry_rsp"],
        # the frame's words: the kernel leaves the last slot 0 where the CPU pushed no error code
        words=tuple(f[f"word{i}"] for i in range(OBSERVED_WORDS if f["error_code"] != NO_ERROR_CODE
                                                  else OBSERVED_WORDS - 1)),
        rflags=f["rflags"], cr2=f["cr2"], cr3=f["cr3"], cs=f["cs"], ss=f["ss"],
        gate=f["gate_low"].to_bytes(8, "little") + f["gate_high"].to_bytes(8, "little"),
        ist_top=f["ist_top"], plant={p.name: f[f"plant_{p.name}"] for p in PLANT.fields}, cpu=f["cpu"])


@dataclass(frozen=True)
class Dump:
    count: int  # records ever made
    lost: int  # overwritten before they were printed
    records: tuple[ObservedException, ...]


def parse_dump(text: str) -> Dump:
    """The output of the shell's `observed` (header line, then `record <hex>` lines)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    headers = [m for m in map(HEADER_LINE.fullmatch, lines) if m]
    if len(headers) != 1:
        raise GuestError(f"`observed` printed {len(headers)} header lines, expected one:\n{text[-300:]}")
    count, new, lost, capacity, size = (int(g) for g in headers[0].groups())
    if size != OBSERVER_RECORD.size or capacity != OBSERVER_CAPACITY:
        raise GuestError(f"the kernel's observer has {capacity} records of {size} bytes; the lab "
                         f"expects {OBSERVER_CAPACITY} of {OBSERVER_RECORD.size} (layouts.py)")
    hexes = [m.group(1) for m in map(RECORD_LINE.fullmatch, lines) if m]
    if len(hexes) != new:
        raise GuestError(f"`observed` announced {new} records and printed {len(hexes)}")
    records = tuple(decode_record(bytes.fromhex(h)) for h in hexes)
    seqs = [r.seq for r in records]
    if seqs != list(range(count - new + 1, count + 1)):
        raise GuestError(f"observer records out of order: seq {seqs}, count {count}")
    return Dump(count, lost, records)


def decode_buffer(raw: bytes, after: int = 0) -> Dump:
    """The whole `LAB_OBSERVER` buffer (e.g. read with gdb): the records with seq > `after`
    still in the ring, oldest first."""
    if len(raw) != OBSERVER_SIZE:
        raise GuestError(f"LAB_OBSERVER is {OBSERVER_SIZE} bytes, got {len(raw)}")
    h = OBSERVER_HEADER.decode(raw[:OBSERVER_HEADER.size])
    if h["magic"] != OBSERVER_MAGIC:
        raise GuestError(f"LAB_OBSERVER's magic is {h['magic']:#x}, not 'LABOBSV1'")
    if h["record_size"] != OBSERVER_RECORD.size or h["capacity"] != OBSERVER_CAPACITY:
        raise GuestError(f"the kernel's observer has {h['capacity']} records of {h['record_size']} "
                         f"bytes; the lab expects {OBSERVER_CAPACITY} of {OBSERVER_RECORD.size}")
    count = h["count"]
    first = max(after, count - OBSERVER_CAPACITY)
    records = []
    for seq in range(first + 1, count + 1):
        at = OBSERVER_HEADER.size + ((seq - 1) % OBSERVER_CAPACITY) * OBSERVER_RECORD.size
        r = decode_record(raw[at:at + OBSERVER_RECORD.size])
        if r.seq != seq:
            raise GuestError(f"observer slot for seq {seq} holds seq {r.seq}")
        records.append(r)
    return Dump(count, first - after, tuple(records))
