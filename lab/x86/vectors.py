"""Architectural exception vectors 0-31, as one table.

Sources:

* Intel SDM vol. 3A §6.3 "Sources of Interrupts", Table 6-1 "Protected-Mode
  Exceptions and Interrupts" (mnemonic, description, type, error code), and
  §6.13 "Error Code" (which exceptions push one).
* AMD APM vol. 2 §8.2 "Vectors" (Table 8-1), which adds the AMD-defined
  vectors 28 #HV (hypervisor injection), 29 #VC (VMM communication, pushes an
  error code) and 30 #SX (security exception, pushes an error code).

Conventions:

* ``kind`` is the SDM "Type" column: "fault", "trap", "abort", "interrupt",
  "fault/trap" (#DB: instruction breakpoints are faults, data/single-step are
  traps) or "reserved".
* Vector 9 (coprocessor segment overrun) is reserved since the i486 and in
  64-bit mode; it is listed as "CSO", kind "fault", as in Table 6-1.
* Reserved vectors (15, 22-27, 31) get the mnemonic ``RSVD<n>``.
* ``error_code`` is True exactly for 8, 10-14, 17, 21, 29, 30.  Note #DF and
  #AC always push zero; vectors >= 32 (external interrupts / INT n) never
  push one.
* ``mnemonic(v)`` for v >= 32 returns ``f"IRQ/INT {v}"`` (decimal).
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_USER_VECTOR = 32  # SDM §6.2: vectors 32-255 are user-defined
MAX_VECTOR = 255        # SDM §6.2: the IDT holds at most 256 vectors


@dataclass(frozen=True)
class VectorInfo:
    vector: int
    mnemonic: str
    name: str
    kind: str
    error_code: bool


_V = VectorInfo
VECTORS: tuple[VectorInfo, ...] = (
    _V(0, "#DE", "Divide Error", "fault", False),
    _V(1, "#DB", "Debug Exception", "fault/trap", False),
    _V(2, "NMI", "Non-maskable Interrupt", "interrupt", False),
    _V(3, "#BP", "Breakpoint", "trap", False),
    _V(4, "#OF", "Overflow", "trap", False),
    _V(5, "#BR", "BOUND Range Exceeded", "fault", False),
    _V(6, "#UD", "Invalid Opcode", "fault", False),
    _V(7, "#NM", "Device Not Available", "fault", False),
    _V(8, "#DF", "Double Fault", "abort", True),
    _V(9, "CSO", "Coprocessor Segment Overrun (reserved)", "fault", False),
    _V(10, "#TS", "Invalid TSS", "fault", True),
    _V(11, "#NP", "Segment Not Present", "fault", True),
    _V(12, "#SS", "Stack-Segment Fault", "fault", True),
    _V(13, "#GP", "General Protection", "fault", True),
    _V(14, "#PF", "Page Fault", "fault", True),
    _V(15, "RSVD15", "Reserved", "reserved", False),
    _V(16, "#MF", "x87 FPU Floating-Point Error", "fault", False),
    _V(17, "#AC", "Alignment Check", "fault", True),
    _V(18, "#MC", "Machine Check", "abort", False),
    _V(19, "#XM", "SIMD Floating-Point Exception", "fault", False),
    _V(20, "#VE", "Virtualization Exception", "fault", False),
    _V(21, "#CP", "Control Protection Exception", "fault", True),
    _V(22, "RSVD22", "Reserved", "reserved", False),
    _V(23, "RSVD23", "Reserved", "reserved", False),
    _V(24, "RSVD24", "Reserved", "reserved", False),
    _V(25, "RSVD25", "Reserved", "reserved", False),
    _V(26, "RSVD26", "Reserved", "reserved", False),
    _V(27, "RSVD27", "Reserved", "reserved", False),
    _V(28, "#HV", "Hypervisor Injection Exception (AMD)", "fault", False),
    _V(29, "#VC", "VMM Communication Exception (AMD)", "fault", True),
    _V(30, "#SX", "Security Exception (AMD)", "fault", True),
    _V(31, "RSVD31", "Reserved", "reserved", False),
)
del _V
assert len(VECTORS) == FIRST_USER_VECTOR
assert all(v.vector == i for i, v in enumerate(VECTORS))

# The architectural vectors by name, for code that means one of them (the table is the
# source: each name is asserted against its row's mnemonic).
DE, DB, NMI, BP, OF, BR, UD, NM, DF = range(9)
TS, NP, SS, GP, PF = range(10, 15)
MF, AC, MC, XM, VE, CP = range(16, 22)
HV, VC, SX = 28, 29, 30
assert all(VECTORS[v].mnemonic.lstrip("#") == n for n, v in (
    ("DE", DE), ("DB", DB), ("NMI", NMI), ("BP", BP), ("OF", OF), ("BR", BR), ("UD", UD),
    ("NM", NM), ("DF", DF), ("TS", TS), ("NP", NP), ("SS", SS), ("GP", GP), ("PF", PF),
    ("MF", MF), ("AC", AC), ("MC", MC), ("XM", XM), ("VE", VE), ("CP", CP), ("HV", HV),
    ("VC", VC), ("SX", SX)))
#: Every vector whose delivery pushes an error code, from the table (SDM §6.13, Table 6-1).
ERROR_CODE_VECTORS = tuple(v.vector for v in VECTORS if v.error_code)


def _check(vector: int) -> None:
    if not 0 <= vector <= MAX_VECTOR:
        raise ValueError(f"vector {vector} outside 0..{MAX_VECTOR}")


def info(vector: int) -> VectorInfo | None:
    """The table row for an architectural vector, ``None`` for vectors >= 32."""
    _check(vector)
    return VECTORS[vector] if vector < FIRST_USER_VECTOR else None


def mnemonic(vector: int) -> str:
    """"#PF" etc. for 0-31; ``f"IRQ/INT {vector}"`` for 32-255."""
    row = info(vector)
    return row.mnemonic if row else f"IRQ/INT {vector}"


def pushes_error_code(vector: int) -> bool:
    """Whether the CPU pushes an error code (SDM §6.13); False for >= 32."""
    row = info(vector)
    return row.error_code if row else False


def _norm(name: str) -> str:
    return name.strip().upper().lstrip("#")


_BY_NAME = {_norm(v.mnemonic): v for v in VECTORS}


def vector_by_mnemonic(name: str) -> VectorInfo:
    """Look up by mnemonic, case-insensitive, '#' optional: "#PF", "pf", "PF"."""
    try:
        return _BY_NAME[_norm(name)]
    except KeyError:
        known = ", ".join(v.mnemonic for v in VECTORS)
        raise KeyError(f"unknown vector mnemonic {name!r}; known: {known}") from None
