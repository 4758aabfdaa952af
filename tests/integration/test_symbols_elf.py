"""lab/target/symbols.py's own symbol-table decoder agrees with pyelftools' on the lab kernel's ELF
(no QEMU: the built kernel is the input)."""

from elftools.elf.elffile import ELFFile

from lab.target.symbols import Symbols


def test_decoder_agrees_with_pyelftools(kernel):
    ours = Symbols.from_elf(kernel)
    with open(kernel, "rb") as f:
        elf = ELFFile(f)
        names = [s.name for s in elf.iter_sections()]
        reference = {}
        for s in elf.get_section_by_name(".symtab").iter_symbols():
            kind = {"STT_FUNC": "func", "STT_OBJECT": "object", "STT_NOTYPE": "other"}.get(s["st_info"]["type"])
            if kind is None or not s.name:
                continue
            shndx = s["st_shndx"]
            section = names[shndx] if isinstance(shndx, int) and 0 < shndx < len(names) else None
            reference[s.name] = (s["st_value"], s["st_size"], kind, section)
    assert len(reference) > 500
    assert {n: (s.address, s.size, s.kind, s.section) for n, s in ours._by_name.items()} == reference
