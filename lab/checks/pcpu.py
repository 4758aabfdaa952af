"""Checks on the lab kernel's per-CPU area (lab/labkernel/layouts.py `PERCPU`), read through
GS_BASE in kernel mode: where GS points, the hot fields' cache line, and the declared layout
against the DWARF."""

from __future__ import annotations

from lab.checks.base import Check, Checks, Verdict, verdict
from lab.labkernel.layouts import CACHE_LINE, HOT_FIELDS, PERCPU

TIER = "pcpu"
C = Checks(TIER)


def run(gs_base: int, fields: dict, percpu_symbol: int | None, dwarf) -> list[Check]:
    """`fields`: PERCPU decoded at `gs_base`; `percpu_symbol`: the PERCPU symbol's address
    (None: no such symbol); `dwarf`: (size, {member: offset}) from the DWARF, or None."""
    declared = {f.name: f.offset for f in PERCPU.fields}
    return [
        C.result("pcpu.gs-base", "in kernel mode GS_BASE points at PERCPU",
                 percpu_symbol is not None and gs_base == percpu_symbol and fields["self_ptr"] == gs_base,
                 [f"GS_BASE {gs_base:#x}; PERCPU {percpu_symbol or 0:#x}; self_ptr {fields['self_ptr']:#x}"]),
        C.result("pcpu.cache-line", "the hot fields (current, kernel_rsp, user_rsp) share one 64-byte line",
                 gs_base % CACHE_LINE == 0 and all(PERCPU.offset(f) + 8 <= CACHE_LINE for f in HOT_FIELDS),
                 [f"PERCPU at {gs_base:#x} ({gs_base % CACHE_LINE} mod 64); offsets " +
                  ", ".join(f"{f}={PERCPU.offset(f):#x}" for f in HOT_FIELDS)]),
        C.make("pcpu.layout", "the declared PerCpu layout matches the DWARF",
               Verdict.SKIP if dwarf is None else verdict(dwarf == (PERCPU.size, declared)),
               [f"declared {PERCPU.size} bytes {declared}; DWARF {dwarf}"]),
    ]
