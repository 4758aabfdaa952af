"""Which type a kernel's handlers read their frame through, from its DWARF (pyelftools).

A *frame reader* is a function with a parameter of struct type, by value (a Rust
`extern "x86-interrupt"` handler's `InterruptStackFrame`) or through a pointer or reference (a
C handler's `struct frame *`, the function an asm stub calls with RSP), where a member of the
struct, nested structs flattened, names RIP and another word of the CPU's frame (CS, RFLAGS; RSP,
SS and the error code are read too). lab/experiments/frame_type.py finds the reader a fired handler reaches;
lab/checks/frame_type.py judges its members' offsets. Parsing takes seconds, so the readers
are cached by the ELF's content (`$XDG_CACHE_HOME/x86-kernel-lab/frametypes`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.host.cache import cache_dir
from lab.host.kernelfile import identity

#: Bump when what is cached changes shape.
SCHEMA = 1
#: Larger .debug_info (a distribution's vmlinux) is not parsed: SKIP, with the size.
MAX_DEBUG_INFO = 64 << 20
#: A member's name -> the frame word it means: its last `_`-separated part(s) (`black_rip`).
WORD_NAMES = {
    "rip": ("rip", "eip", "ip", "instruction_pointer"),
    "cs": ("cs", "code_segment"),
    "rflags": ("rflags", "eflags", "flags", "cpu_flags"),
    "rsp": ("rsp", "esp", "sp", "stack_pointer"),
    "ss": ("ss", "stack_segment"),
    "error_code": ("error_code", "err_code", "errcode", "error", "err", "orig_ax", "orig_rax"),
}
_WORD_RE = {w: re.compile(rf"(?:^|_)(?:{'|'.join(names)})$") for w, names in WORD_NAMES.items()}
_QUALIFIERS = {"DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
               "DW_TAG_restrict_type", "DW_TAG_atomic_type"}
_POINTERS = {"DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type"}
_STRUCTS = {"DW_TAG_structure_type", "DW_TAG_class_type"}
MAX_DEPTH = 4


def word_of(name: str) -> str | None:
    """The frame word a member named `name` reads, by its name, or None."""
    low = name.lower()
    return next((w for w, rx in _WORD_RE.items() if rx.search(low)), None)


@dataclass(frozen=True)
class Member:
    path: str  # "iret.rip": nested members joined by dots
    offset: int  # from the start of the struct
    size: int
    word: str  # a key of WORD_NAMES


@dataclass(frozen=True)
class FrameReader:
    function: str
    address: int  # its first instruction
    param: str
    index: int  # the parameter's position (System V: 0 is RDI)
    by_value: bool  # the struct itself (interrupt ABI), not a pointer to it
    type_name: str
    size: int
    members: tuple[Member, ...]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "FrameReader":
        return cls(**{**d, "members": tuple(Member(**m) for m in d["members"])})


def _name(die) -> str | None:
    a = die.attributes.get("DW_AT_name")
    return a.value.decode(errors="replace") if a else None


def _type(die):
    return die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None


def _strip(t):
    while t is not None and t.tag in _QUALIFIERS:
        t = _type(t)
    return t


def _named(t):
    """(the type under typedefs and qualifiers, the first typedef's name): an anonymous struct
    is known by its typedef."""
    alias = None
    while t is not None and t.tag in _QUALIFIERS:
        alias, t = alias or _name(t), _type(t)
    return t, alias


def _size(t) -> int:
    t = _strip(t)
    a = t.attributes.get("DW_AT_byte_size") if t is not None else None
    return a.value if a else 8


def _location(member) -> int | None:
    """DW_AT_data_member_location: a constant, or DWARF 2's DW_OP_plus_uconst expression."""
    a = member.attributes.get("DW_AT_data_member_location")
    if a is None:
        return 0  # a union's members, and DWARF's default
    if isinstance(a.value, int):
        return a.value
    ops = list(a.value)
    if ops and ops[0] == 0x23:  # DW_OP_plus_uconst, ULEB128 operand
        value, shift = 0, 0
        for b in ops[1:]:
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value
    return None


def flatten(struct, base: int = 0, prefix: str = "", depth: int = 0) -> list[Member]:
    """The members of `struct` that name a frame word, nested structs walked into (a member
    whose own name names a word is taken whole: x86_64's `instruction_pointer: VirtAddr`)."""
    found: list[Member] = []
    for m in struct.iter_children():
        if m.tag != "DW_TAG_member":
            continue
        name, offset = _name(m) or "?", _location(m)
        if offset is None:
            continue
        word, t = word_of(name), _strip(_type(m))
        if word:
            found.append(Member(prefix + name, base + offset, _size(t), word))
        elif t is not None and t.tag in _STRUCTS and depth < MAX_DEPTH:
            found += flatten(t, base + offset, f"{prefix}{name}.", depth + 1)
    return found


def _reader(sub) -> FrameReader | None:
    low = sub.attributes.get("DW_AT_low_pc")
    if low is None or not low.value:  # no code, or code the linker dropped
        return None
    name = _name(sub)
    for ref in ("DW_AT_specification", "DW_AT_abstract_origin"):
        if name is None and ref in sub.attributes:
            name = _name(sub.get_DIE_from_attribute(ref))
    params = [c for c in sub.iter_children() if c.tag == "DW_TAG_formal_parameter"]
    for index, p in enumerate(params):
        t, alias = _named(_type(p))
        by_value = t is not None and t.tag in _STRUCTS
        if t is not None and t.tag in _POINTERS:
            t, alias = _named(_type(t))
        if t is None or t.tag not in _STRUCTS or "DW_AT_byte_size" not in t.attributes:
            continue
        members = flatten(t)
        words = {m.word for m in members}
        if "rip" in words and words & {"cs", "rflags"}:  # a frame, not any struct with an `ip`
            return FrameReader(name or f"{low.value:#x}", low.value, _name(p) or f"arg{index}", index,
                               by_value, _name(t) or alias or "?", _size(t), tuple(members))
    return None


def parse(elf_path: Path) -> dict:
    """{"readers": [FrameReader...]} or {"skip": why}: every frame reader in the ELF's DWARF."""
    from elftools.common.exceptions import DWARFError, ELFError

    try:
        return _parse(elf_path)
    except (ELFError, DWARFError) as exc:  # the reason is the finding: the check SKIPs with it
        return {"skip": f"pyelftools cannot read {elf_path.name}'s DWARF: {exc}"}


def _parse(elf_path: Path) -> dict:
    from elftools.elf.elffile import ELFFile

    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        info = elf.get_section_by_name(".debug_info")
        if info is None:
            return {"skip": "the kernel has no DWARF (.debug_info): build it with debug info"}
        if info.data_size > MAX_DEBUG_INFO:
            return {"skip": f".debug_info is {info.data_size >> 20} MiB: larger than the "
                            f"{MAX_DEBUG_INFO >> 20} MiB the lab parses"}
        readers = []
        for cu in elf.get_dwarf_info().iter_CUs():
            for die in cu.iter_DIEs():
                if die.tag == "DW_TAG_subprogram":
                    r = _reader(die)
                    if r is not None:
                        readers.append(r)
    return {"readers": readers}


_MEMO: dict[tuple, dict] = {}


def frame_readers(elf_path: Path) -> dict:
    """parse(), cached by the ELF's content (and in this process by its identity):
    {"readers": {address: FrameReader}} or {"skip": why}."""
    known = identity(Path(elf_path))
    if known not in _MEMO:
        _MEMO[known] = _cached(Path(elf_path))
    return _MEMO[known]


def _cached(elf_path: Path) -> dict:
    data = elf_path.read_bytes()
    if not data.startswith(b"\x7fELF"):
        return {"skip": f"{elf_path.name} is not an ELF: no DWARF to read"}
    key = hashlib.sha256(data + str(SCHEMA).encode()).hexdigest()[:32]
    path = cache_dir("frametypes") / f"{key}.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        parsed = parse(elf_path)
        raw = {"skip": parsed["skip"]} if "skip" in parsed else {
            "readers": [r.to_json() for r in parsed["readers"]]}
        _store(path, raw)
    if "skip" in raw:
        return {"skip": raw["skip"]}
    return {"readers": {r.address: r for r in map(FrameReader.from_json, raw["readers"])}}


def _store(path: Path, raw: dict) -> None:
    """Best effort: a cache that cannot be written costs the next run the parse again."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(raw, f)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
