"""Kernel symbols from an ELF (lab/target/elfsections.py): address -> symbol+offset, name -> address/size."""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pydemumble

from lab.errors import UserError
from lab.x86.addr import code_address_error

# System V ABI (gABI), "Symbol Table" and "Sections". Field order differs by class:
#   Elf64_Sym (24 bytes): st_name u32, st_info u8, st_other u8, st_shndx u16, st_value u64, st_size u64
#   Elf32_Sym (16 bytes): st_name u32, st_value u32, st_size u32, st_info u8, st_other u8, st_shndx u16
ELF_SYM = {64: ("IBBHQQ", ("name", "info", "other", "shndx", "value", "size")),
           32: ("IIIBBH", ("name", "value", "size", "info", "other", "shndx"))}
assert struct.calcsize("<" + ELF_SYM[64][0]) == 24 and struct.calcsize("<" + ELF_SYM[32][0]) == 16
STT_NOTYPE, STT_OBJECT, STT_FUNC = 0, 1, 2  # st_info & 0xf
SYMBOL_KINDS = {STT_FUNC: "func", STT_OBJECT: "object", STT_NOTYPE: "other"}
SHN_LORESERVE = 0xFF00  # st_shndx at or above: special (SHN_ABS, SHN_COMMON...), no section
SHF_ALLOC = 0x2


def _unpack_symbols(table: bytes, strtab: bytes, section_names: list[str], elfclass: int,
                    little_endian: bool) -> list["Symbol"]:
    """The named function, object and untyped symbols of a symbol table's raw bytes."""
    fmt, fields = ELF_SYM[elfclass]
    layout = struct.Struct(("<" if little_endian else ">") + fmt)
    i_name, i_info, i_shndx = fields.index("name"), fields.index("info"), fields.index("shndx")
    i_value, i_size = fields.index("value"), fields.index("size")
    out = []
    usable = len(table) - len(table) % layout.size
    for entry in layout.iter_unpack(table[:usable]):
        kind = SYMBOL_KINDS.get(entry[i_info] & 0xF)
        start = entry[i_name]
        if kind is None or start == 0:
            continue
        name = strtab[start:strtab.index(b"\0", start)].decode("utf-8", errors="replace")
        if not name:
            continue
        shndx = entry[i_shndx]
        section = section_names[shndx] if 0 < shndx < min(len(section_names), SHN_LORESERVE) else None
        out.append(Symbol(name, entry[i_value], entry[i_size], kind, section))
    return out


def is_elf(path: Path) -> bool:
    """Whether `path` starts with the ELF magic."""
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


#: How mangled names begin: C++ (Itanium, and Rust's legacy scheme, which reuses it) and
#: Rust's v0 scheme.
MANGLED_PREFIXES = ("_Z", "__Z", "_R")


@lru_cache(maxsize=None)
def demangle(name: str) -> str:
    """`name` demangled (Rust legacy and v0, C++; pydemumble wraps LLVM's demanglers, and drops
    Rust's legacy hash suffix), or `name` itself when it is not a mangled name."""
    if not name.startswith(MANGLED_PREFIXES):
        return name
    return pydemumble.demangle(name) or name  # "" when it cannot parse the name


@dataclass(frozen=True)
class Symbol:
    name: str  # as in the symbol table (mangled)
    address: int
    size: int
    kind: str  # "func", "object", "other"
    section: str | None = None

    @property
    def end(self) -> int:
        return self.address + self.size

    @property
    def display(self) -> str:
        """The name a person reads: demangled."""
        return demangle(self.name)


@dataclass(frozen=True)
class Location:
    symbol: Symbol
    offset: int

    def __str__(self) -> str:
        return self._with_offset(self.symbol.display)

    @property
    def mangled(self) -> str:
        """As `str()`, with the symbol table's own (mangled) name."""
        return self._with_offset(self.symbol.name)

    def _with_offset(self, name: str) -> str:
        return name if self.offset == 0 else f"{name}+{self.offset:#x}"


class Symbols:
    """A sorted symbol table. Built from an ELF, or from a list (tests, System.map)."""

    def __init__(self, symbols: list[Symbol], *, path: Path | None = None,
                 section_data: dict[str, tuple[int, bytes]] | None = None) -> None:
        self.path = path
        self._by_addr = sorted((s for s in symbols if s.address), key=lambda s: (s.address, -s.size))
        self._addrs = [s.address for s in self._by_addr]
        self._by_name = {s.name: s for s in symbols}
        self._by_display: dict[str, list[Symbol]] | None = None  # built on the first miss
        self._sections = section_data or {}

    @classmethod
    def empty(cls) -> "Symbols":
        return cls([])

    @classmethod
    def from_elf(cls, path: Path) -> "Symbols":
        """The ELF's function, object and untyped symbols, and its allocated PROGBITS sections'
        bytes. The symbol entries are unpacked here with one
        struct per table (ELF_SYM), which is fifty times faster than pyelftools' per-symbol
        parse (50 ms for the lab kernel's 850 symbols, on every command's critical path). The
        sections are read by lab/target/elfsections.py (pyelftools' import alone cost as much)."""
        from lab.target.elfsections import SHT_PROGBITS, ElfSections

        try:
            with open(path, "rb") as f:
                elf = ElfSections(f)
                sections = elf.sections
                names = [s.name for s in sections]
                syms: list[Symbol] = []
                symtab = elf.by_name(".symtab")
                if symtab is not None:
                    strtab = elf.data(sections[symtab.link])
                    syms = _unpack_symbols(elf.data(symtab), strtab, names, elf.elfclass, elf.little_endian)
                data = {}
                for sec in sections:
                    if sec.type == SHT_PROGBITS and sec.flags & SHF_ALLOC:
                        data[sec.name] = (sec.addr, elf.data(sec))
        except FileNotFoundError:
            raise UserError(f"kernel not found: {path}") from None
        except (OSError, ValueError, IndexError, struct.error) as exc:
            raise UserError(f"{path}: not a readable ELF file ({exc})") from None
        return cls(syms, path=path, section_data=data)

    @classmethod
    def from_system_map(cls, path: Path) -> "Symbols":
        """`nm`-style lines, `ADDRESS TYPE NAME` (a Linux System.map, `nm -n` output). Sizes are
        not in the file: each symbol is taken to run to the next address."""
        kinds = {"t": "func", "w": "func", "d": "object", "b": "object", "r": "object"}
        entries = []
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
        for n, line in enumerate(lines, 1):
            parts = line.split()
            if len(parts) < 3:
                continue
            try:
                address = int(parts[0], 16)
            except ValueError:
                raise UserError(f"{path}:{n}: not a System.map line: {line[:80]!r}") from None
            entries.append((address, kinds.get(parts[1].lower(), "other"), parts[2]))
        entries.sort()
        syms = []
        for i, (address, kind, name) in enumerate(entries):
            nxt = next((a for a, _, _ in entries[i + 1:] if a > address), address)
            syms.append(Symbol(name, address, nxt - address, kind))
        if not syms:
            raise UserError(f"{path}: no symbols (System.map lines are ADDRESS TYPE NAME)")
        return cls(syms, path=path)

    @classmethod
    def load(cls, path: Path) -> "Symbols":
        """Symbols from an ELF with a symbol table, or from a System.map."""
        if not path.is_file():
            raise UserError(f"symbols not found: {path}")
        return cls.from_elf(path) if is_elf(path) else cls.from_system_map(path)

    @classmethod
    def for_kernel(cls, kernel: Path | None, symbols: Path | None = None) -> "Symbols":
        """The symbols to name a kernel's addresses with: from `symbols` (an ELF or a
        System.map) when given, else the kernel's own when it is an ELF, else none."""
        if symbols is not None:
            return cls.load(symbols)
        if kernel is not None and is_elf(kernel):
            return cls.from_elf(kernel)
        return cls.empty()

    def address_of(self, text: str) -> int | None:
        """`text` as an address: a number (0x... or decimal) or a symbol's name; None if it
        is neither."""
        try:
            return int(text, 0)
        except ValueError:
            sym = self.lookup(text)
            return sym.address if sym is not None else None

    def require_address(self, text: str) -> int:
        """`address_of`, or one line (a UserError) saying why `text` names no address."""
        address = self.address_of(text)
        if address is not None and not 0 <= address < 1 << 64:
            raise UserError(f"{text!r} is not a 64-bit address")

        if address is None:
            where = f" of {self.path}" if len(self) and self.path else \
                (" of the kernel" if len(self) else " (no symbols: pass --symbols)")
            raise UserError(f"{text!r} is neither an address nor a symbol{where}")
        return address

    def require_code_address(self, text: str) -> int:
        """`require_address`, for a place to break at: one line when no CPU can run there."""
        address = self.require_address(text)
        why = code_address_error(address)
        if why is not None:
            raise UserError(f"{text}: {why}")
        return address

    def __len__(self) -> int:
        return len(self._by_name)

    def lookup(self, name: str) -> Symbol | None:
        """The symbol called `name` in the table, or whose demangled name is `name`
        (`kernel::init`); UserError when several symbols demangle to `name`."""
        found = self._by_name.get(name)
        if found is not None or "::" not in name:
            return found
        if self._by_display is None:
            self._by_display = {}
            for sym in self._by_name.values():
                if sym.name.startswith(MANGLED_PREFIXES):
                    self._by_display.setdefault(sym.display, []).append(sym)
        matches = {s.address: s for s in self._by_display.get(name, ())}
        if len(matches) > 1:
            raise UserError(f"{name!r} names {len(matches)} symbols: " +
                            ", ".join(f"{s.name} ({a:#x})" for a, s in sorted(matches.items())[:4]))
        return next(iter(matches.values()), None)

    def resolve(self, address: int) -> Location | None:
        """The symbol containing `address` (sized symbols), or starting exactly at it."""
        i = bisect.bisect_right(self._addrs, address) - 1
        for j in range(i, max(i - 8, -1), -1):  # a few candidates: symbols may nest
            s = self._by_addr[j]
            if s.address == address or s.address <= address < s.end:
                return Location(s, address - s.address)
        return None

    def describe(self, address: int) -> str:
        """`symbol+offset` for `address`, demangled; "" when no symbol holds it."""
        loc = self.resolve(address)
        return str(loc) if loc else ""

    def describe_mangled(self, address: int) -> str:
        """As `describe`, with the symbol table's own name."""
        loc = self.resolve(address)
        return loc.mangled if loc else ""

    def stack_ending_at(self, address: int, section: str | None = None) -> Symbol | None:
        """A data object whose end is `address` (the top of a stack), optionally restricted to
        a section."""
        loc = self.resolve(address - 1) if address else None
        if loc is None:
            return None
        s = loc.symbol
        if s.end != address or s.kind != "object":
            return None
        if section is not None and s.section != section:
            return None
        return s

    def read(self, name: str) -> bytes | None:
        """Initialised bytes of an object symbol, from the ELF's allocated sections."""
        s = self.lookup(name)
        if s is None:
            return None
        for base, data in self._sections.values():
            if base <= s.address and s.end <= base + len(data):
                return data[s.address - base:s.end - base]
        return None
