"""lab/target/elfsections.py reads the same sections, with the same bytes, as pyelftools, on ELF
files of both classes and both byte orders (made here with binutils' `as` and `objcopy`, which
set-up installs), and Symbols.from_elf finds the same symbols through it; a damaged file is a
UserError naming it, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from lab.errors import UserError
from lab.target.elfsections import ElfSections
from lab.target.symbols import Symbols

SOURCE = """.text
.globl entry
.type entry, @function
entry: nop
       ret
.size entry, 2
.data
.globl counter
.type counter, @object
counter: .long 0x11223344, 0x55667788
.size counter, 8
.bss
buffer: .skip 64
"""


def _elf(tmp: Path, bits: int, big: bool) -> Path:
    """An x86 object assembled from SOURCE; big-endian (which `as` cannot make for x86, nor
    objcopy convert an object with relocations to): a blob wrapped by `objcopy -I binary`."""
    if big:
        blob, out = tmp / "blob.bin", tmp / f"t{bits}be.o"
        blob.write_bytes(bytes(range(40)))
        subprocess.run(["objcopy", "-I", "binary", "-O", f"elf{bits}-big", blob.name, out], check=True, cwd=tmp)
        return out
    src, obj = tmp / "t.S", tmp / f"t{bits}.o"
    src.write_text(SOURCE)
    subprocess.run(["as", f"--{bits}", "-o", obj, src], check=True)
    return obj


CASES = [(32, False), (64, False), (32, True), (64, True)]


def _reference(path: Path):
    with open(path, "rb") as f:
        elf = ELFFile(f)
        return (elf.elfclass, elf.little_endian,
                [(s.name, s["sh_flags"], s["sh_addr"], s["sh_offset"], s["sh_size"], s["sh_link"],
                  b"" if s["sh_type"] == "SHT_NOBITS" else s.data()) for s in elf.iter_sections()])


@pytest.mark.parametrize("bits, big", CASES, ids=[f"elf{b}-{'big' if g else 'little'}" for b, g in CASES])
def test_the_sections_are_pyelftools(tmp_path, bits, big):
    path = _elf(tmp_path, bits, big)
    with open(path, "rb") as f:
        ours = ElfSections(f)
        got = (ours.elfclass, ours.little_endian,
               [(s.name, s.flags, s.addr, s.offset, s.size, s.link, ours.data(s)) for s in ours.sections])
    assert got == _reference(path)
    assert got[0] == bits and got[1] is not big
    assert ({".data", ".symtab", ".strtab"} if big else {".text", ".data", ".bss", ".symtab", ".strtab"}) <= {s[0] for s in got[2]}


@pytest.mark.parametrize("bits, big", CASES, ids=[f"elf{b}-{'big' if g else 'little'}" for b, g in CASES])
def test_symbols_come_through_it(tmp_path, bits, big):
    symbols = Symbols.from_elf(_elf(tmp_path, bits, big))
    if big:
        start, end = symbols.lookup("_binary_blob_bin_start"), symbols.lookup("_binary_blob_bin_end")
        assert (start.kind, start.section, end.address - start.address) == ("other", ".data", 40)
        assert symbols._sections[".data"] == (0, bytes(range(40)))  # what reads of memory fall back to
        return
    entry, counter = symbols.lookup("entry"), symbols.lookup("counter")
    assert (entry.kind, entry.size, entry.section) == ("func", 2, ".text")
    assert (counter.kind, counter.size, counter.section) == ("object", 8, ".data")
    assert symbols._sections[".data"][1] == bytes.fromhex("4433221188776655")


def test_this_interpreter_reads_as_pyelftools_reads_it():
    """A linked, real-world executable (many sections, a section name table far in)."""
    path = Path(sys.executable).resolve()
    with open(path, "rb") as f:
        ours = ElfSections(f)
        got = [(s.name, s.flags, s.addr, s.offset, s.size, s.link, ours.data(s)) for s in ours.sections]
    assert got == _reference(path)[2] and len(got) > 10


def _damaged(tmp_path, how) -> Path:
    data = bytearray(_elf(tmp_path, 64, False).read_bytes())
    how(data)
    out = tmp_path / "damaged.o"
    out.write_bytes(bytes(data))
    return out


DAMAGE = {
    "truncated header": lambda d: d.__delitem__(slice(40, None)),
    "cut before the sections": lambda d: d.__delitem__(slice(len(d) // 2, None)),
    "e_shoff past the end": lambda d: d.__setitem__(slice(0x28, 0x30), (2**63).to_bytes(8, "little")),
    "e_shentsize wrong": lambda d: d.__setitem__(slice(0x3A, 0x3C), (12).to_bytes(2, "little")),
    "e_shstrndx past the sections": lambda d: d.__setitem__(slice(0x3E, 0x40), (0xFF00).to_bytes(2, "little")),
    "unknown class": lambda d: d.__setitem__(4, 7),
    "no magic": lambda d: d.__setitem__(slice(0, 4), b"\0ELF"),
}


@pytest.mark.parametrize("how", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_file_is_a_user_error(tmp_path, how):
    path = _damaged(tmp_path, DAMAGE[how])
    with pytest.raises(UserError, match="not a readable ELF file"):
        Symbols.from_elf(path)
