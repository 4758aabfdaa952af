"""An ELF file's section headers and section bytes, read with `struct` (System V gABI, "ELF
Header" and "Sections"). Every command reads the kernel's symbols before anything else, and
pyelftools alone takes about as long to import as the whole inspection's checks; the DWARF
reader (lab/target/dwarf.py) still uses pyelftools. tests/unit/test_symbols.py compares this
reader with pyelftools' on ELF files of both classes and both byte orders, and feeds it damaged
ones; a file it cannot read raises ValueError (or struct.error, for a header cut short)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

ELFMAG = b"\x7fELF"
ELFCLASS = {1: 32, 2: 64}  # e_ident[EI_CLASS]
ELFDATA = {1: "<", 2: ">"}  # e_ident[EI_DATA]: little, big endian
# From e_type on; e_ident (16 bytes) comes first.
#   Elf64_Ehdr: e_type u16, e_machine u16, e_version u32, e_entry u64, e_phoff u64, e_shoff u64,
#               e_flags u32, e_ehsize u16, e_phentsize u16, e_phnum u16, e_shentsize u16,
#               e_shnum u16, e_shstrndx u16 (the 32-bit class has u32 addresses and offsets)
EHDR = {64: "HHIQQQIHHHHHH", 32: "HHIIIIIHHHHHH"}
#   Elf64_Shdr: sh_name u32, sh_type u32, sh_flags u64, sh_addr u64, sh_offset u64, sh_size u64,
#               sh_link u32, sh_info u32, sh_addralign u64, sh_entsize u64
SHDR = {64: "IIQQQQIIQQ", 32: "IIIIIIIIII"}
SHT_SYMTAB, SHT_NOBITS = 2, 8
SHT_PROGBITS = 1
SHN_UNDEF, SHN_XINDEX = 0, 0xFFFF  # e_shstrndx: SHN_XINDEX means "in section 0's sh_link"
#: More section headers than this is not a kernel (a damaged e_shnum would read gigabytes).
MAX_SECTIONS = 65536


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int


def _data(f: BinaryIO, sec: Section, file_size: int) -> bytes:
    if sec.type == SHT_NOBITS or sec.size == 0:
        return b""
    if sec.offset + sec.size > file_size:
        raise ValueError(f"section {sec.name or '#?'} runs past the end of the file")
    f.seek(sec.offset)
    return f.read(sec.size)


class ElfSections:
    """The sections of the ELF file open in `f` (binary, seekable)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        f.seek(0, 2)
        self._file_size = f.tell()
        f.seek(0)
        ident = f.read(16)
        if ident[:4] != ELFMAG:
            raise ValueError("no ELF magic")
        if ident[4] not in ELFCLASS or ident[5] not in ELFDATA:
            raise ValueError(f"unknown ELF class {ident[4]} or byte order {ident[5]}")
        self.elfclass, order = ELFCLASS[ident[4]], ELFDATA[ident[5]]
        self.little_endian = order == "<"
        ehdr = struct.Struct(order + EHDR[self.elfclass])
        header = ehdr.unpack(f.read(ehdr.size))
        shoff, shentsize, shnum, shstrndx = header[5], header[10], header[11], header[12]
        shdr = struct.Struct(order + SHDR[self.elfclass])
        self._shdr = shdr
        if shoff == 0:
            self.sections: list[Section] = []
            return
        if shentsize != shdr.size:
            raise ValueError(f"e_shentsize {shentsize}, not {shdr.size}")
        first = self._header(shoff)
        if shnum == 0:
            shnum = first[5]  # sh_size of section 0 holds a count of 0xff00 and more
        if shstrndx == SHN_XINDEX:
            shstrndx = first[6]
        if not 0 < shnum <= MAX_SECTIONS or shoff + shnum * shdr.size > self._file_size:
            raise ValueError(f"{shnum} section headers at {shoff:#x} do not fit in the file")
        raw = [first] + [self._header(shoff + i * shdr.size) for i in range(1, shnum)]
        names = b""
        if shstrndx != SHN_UNDEF:
            if shstrndx >= shnum:
                raise ValueError(f"e_shstrndx {shstrndx} is past the {shnum} sections")
            names = _data(f, self._section(raw[shstrndx], ""), self._file_size)
        self.sections = [self._section(h, self._name(names, h[0])) for h in raw]

    def _header(self, offset: int) -> tuple:
        self._f.seek(offset)
        return self._shdr.unpack(self._f.read(self._shdr.size))

    @staticmethod
    def _name(table: bytes, start: int) -> str:
        if not table:
            return ""
        if start >= len(table):
            raise ValueError(f"a section name at {start} is past the name table")
        end = table.find(b"\0", start)
        return table[start:end if end >= 0 else len(table)].decode("utf-8", errors="replace")

    @staticmethod
    def _section(h: tuple, name: str) -> Section:
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, ...
        return Section(name, h[1], h[2], h[3], h[4], h[5], h[6])

    def data(self, sec: Section) -> bytes:
        return _data(self._f, sec, self._file_size)

    def by_name(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)
