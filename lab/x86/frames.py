"""What the CPU pushes on an exception, what the lab kernel's stubs add, and the bits of the
error codes and RFLAGS the frame checks read.

- Interrupt frame: SDM vol. 3A §6.14.2 "64-Bit Mode Stack Frame", Figure 6-9: in 64-bit mode
  the CPU aligns RSP down to 16 bytes, then pushes SS, RSP, RFLAGS, CS, RIP and, for the
  vectors of Table 6-1 that have one, an error code; SS:RSP are pushed whether or not the
  privilege level changes. AMD APM vol. 2 §8.9.3.
- Selector error code: SDM §6.13, Figure 6-7 (EXT, IDT, TI, segment selector index).
- Page-fault error code: SDM §5.7, Figure 5-12.
- RFLAGS: SDM vol. 1 §3.4.3, Figure 3-8.
"""

from __future__ import annotations

from lab.x86.bits import BitField, Layout, Struct, StructField

QWORD = 8


def qwords(raw: bytes) -> list[int]:
    """``raw`` as consecutive little-endian 64-bit words (SDM vol. 1 §1.3.1)."""
    if len(raw) % QWORD:
        raise ValueError(f"{len(raw)} bytes is not a whole number of {QWORD}-byte words")
    return [int.from_bytes(raw[i:i + QWORD], "little") for i in range(0, len(raw), QWORD)]


INTERRUPT_FRAME = Struct("InterruptFrame", 5 * QWORD, "SDM vol. 3A §6.14.2, Figure 6-9", (
    StructField("rip", 0x00, QWORD),
    StructField("cs", 0x08, QWORD),
    StructField("rflags", 0x10, QWORD),
    StructField("rsp", 0x18, QWORD),
    StructField("ss", 0x20, QWORD),
))
assert INTERRUPT_FRAME.size == 40

#: The frame of a vector that pushes an error code: the error code, then the interrupt frame.
ERROR_FRAME = Struct("ErrorFrame", QWORD + INTERRUPT_FRAME.size, "SDM vol. 3A §6.14.2, Figure 6-9", (
    StructField("error_code", 0, QWORD),
    *(StructField(f.name, QWORD + f.offset, f.size) for f in INTERRUPT_FRAME.fields),
))
assert ERROR_FRAME.size == 48 and ERROR_FRAME.offset("rip") == QWORD


def decode_frame(words: list[int], has_error_code: bool) -> dict[str, int | None]:
    """The CPU's pushed frame from its qwords (lowest address first): rip, cs, rflags, rsp,
    ss and error_code (None when the vector pushes none)."""
    layout = ERROR_FRAME if has_error_code else INTERRUPT_FRAME
    raw = b"".join(w.to_bytes(QWORD, "little") for w in words[: layout.size // QWORD])
    out: dict[str, int | None] = {"error_code": None}
    out.update(layout.decode(raw))
    return out

#: General-purpose registers in the lab kernel's TrapFrame order (lowest address first).
TRAP_FRAME_GPRS = ("r15", "r14", "r13", "r12", "r11", "r10", "r9", "r8",
                   "rbp", "rdi", "rsi", "rdx", "rcx", "rbx", "rax")

# kernel/src/arch/x86_64/stubs.rs `TrapFrame`: 15 GPRs, vector, error code, interrupt frame.
TRAP_FRAME = Struct("TrapFrame", 22 * QWORD, "kernel/src/arch/x86_64/stubs.rs", tuple(
    [StructField(name, i * QWORD, QWORD) for i, name in enumerate(TRAP_FRAME_GPRS)]
    + [StructField("vector", 15 * QWORD, QWORD), StructField("error_code", 16 * QWORD, QWORD)]
    + [StructField(f.name, 17 * QWORD + f.offset, f.size) for f in INTERRUPT_FRAME.fields]
))
assert TRAP_FRAME.size == 176 and TRAP_FRAME.offset("rip") == 17 * QWORD

#: All 64-bit general-purpose registers except RSP, by gdb name.
GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

SELECTOR_ERROR_CODE = Layout("selector error code", 4, "SDM vol. 3A §6.13, Figure 6-7", (
    BitField("ext", 0, 1),
    BitField("idt", 1, 1),
    BitField("ti", 2, 1),
    BitField("index", 3, 13),
))

PF_ERROR_CODE = Layout("page-fault error code", 4, "SDM vol. 3A §5.7, Figure 5-12", (
    BitField("p", 0, 1),      # 0: not present; 1: protection violation
    BitField("w", 1, 1),      # write access
    BitField("us", 2, 1),     # user-mode access
    BitField("rsvd", 3, 1),   # reserved bit set in a paging-structure entry
    BitField("id", 4, 1),     # instruction fetch
    BitField("pk", 5, 1),     # protection key
    BitField("ss", 6, 1),     # shadow stack
    BitField("sgx", 15, 1),
))

RFLAGS = Layout("RFLAGS", 8, "SDM vol. 1 §3.4.3, Figure 3-8", (
    BitField("cf", 0, 1), BitField("pf", 2, 1), BitField("af", 4, 1), BitField("zf", 6, 1),
    BitField("sf", 7, 1), BitField("tf", 8, 1), BitField("if", 9, 1), BitField("df", 10, 1),
    BitField("of", 11, 1), BitField("iopl", 12, 2), BitField("nt", 14, 1),
    BitField("rf", 16, 1), BitField("vm", 17, 1), BitField("ac", 18, 1),
))
RFLAGS_TF = RFLAGS.field("tf").mask
RFLAGS_IF = RFLAGS.field("if").mask
RFLAGS_RF = RFLAGS.field("rf").mask
RFLAGS_CF = RFLAGS.field("cf").mask
#: Status flags set by arithmetic (SDM vol. 1 §3.4.3.1).
ARITHMETIC_FLAGS = sum(RFLAGS.field(n).mask for n in ("cf", "pf", "af", "zf", "sf", "of"))


def selector_error_code(*, index: int, idt: bool = False, ti: bool = False, ext: bool = False) -> int:
    return SELECTOR_ERROR_CODE.encode_int(index=index, idt=int(idt), ti=int(ti), ext=int(ext))


def pf_error_code(**bits: int) -> int:
    return PF_ERROR_CODE.encode_int(**bits)


def describe_pf_error(code: int) -> str:
    d = PF_ERROR_CODE.decode_int(code)
    return " ".join(k.upper() for k, v in d.items() if v) or "(none: read, not present, kernel)"


def frame_bytes(has_error_code: bool) -> int:
    """Bytes the CPU pushes for one event."""
    return INTERRUPT_FRAME.size + (QWORD if has_error_code else 0)


#: The vectors whose error code is a selector error code (SDM vol. 3A §6.13): #TS, #NP, #SS, #GP.
SELECTOR_ERROR_VECTORS = (10, 11, 12, 13)
#: What each page-fault error code bit says when set, and when clear (SDM vol. 3A §5.7).
PF_BIT_MEANING = {
    "p": ("protection violation", "page not present"), "w": ("write", "read"),
    "us": ("user mode", "supervisor mode"), "rsvd": ("reserved bit set", None),
    "id": ("instruction fetch", None), "pk": ("protection key", None),
    "ss": ("shadow stack", None), "sgx": ("SGX", None),
}


def explain_error_code(vector: int, code: int) -> str:
    """An error code in words, by its vector's layout: #PF's bits, or a selector error code's
    EXT/IDT/TI/index; "" for the vectors whose error code has no fields (#DF, #AC: always 0)."""
    if vector == 14:
        bits = PF_ERROR_CODE.decode_int(code)
        words = [PF_BIT_MEANING[k][0 if v else 1] for k, v in bits.items()]
        names = " ".join(k.upper() for k, v in bits.items() if v) or "none set"
        return f"{names}: " + ", ".join(w for w in words if w)
    if vector in SELECTOR_ERROR_VECTORS:
        if code == 0:
            return "0: no selector (the fault is not about one)"
        f = SELECTOR_ERROR_CODE.decode_int(code)
        table = "IDT" if f["idt"] else "LDT" if f["ti"] else "GDT"
        sel = f"vector {f['index']}" if f["idt"] else f"selector {f['index'] << 3 | f['ti'] << 2:#x}"
        return f"{table} index {f['index']} ({sel})" + (", EXT: an external event" if f["ext"] else "")
    return ""
