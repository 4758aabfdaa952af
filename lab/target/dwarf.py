"""Struct layouts from the DWARF the compiler emitted, to check the lab's declared layouts
against (kernel/src/task.rs `Task`, `SwitchFrame`; kernel/src/percpu.rs `PerCpu`)."""

from __future__ import annotations

from pathlib import Path

#: The kernel crate's compilation unit (DWARF's DW_AT_name of its top DIE starts with this).
KERNEL_CU_PREFIX = b"src/main.rs"


def dwarf_layout(elf_path: Path, struct: str) -> tuple[int, dict[str, int]] | None:
    """(byte size, {member: offset}) of `struct` from the kernel crate's DWARF, or None."""
    from elftools.elf.elffile import ELFFile

    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        if not elf.has_dwarf_info():
            return None
        for cu in elf.get_dwarf_info().iter_CUs():
            name = cu.get_top_DIE().attributes.get("DW_AT_name")
            if not (name and name.value.startswith(KERNEL_CU_PREFIX)):
                continue
            for die in cu.iter_DIEs():
                n = die.attributes.get("DW_AT_name")
                # A declaration (DW_AT_declaration, no size) names the type without laying it out.
                if (die.tag == "DW_TAG_structure_type" and n and n.value == struct.encode()
                        and "DW_AT_byte_size" in die.attributes):
                    members = {c.attributes["DW_AT_name"].value.decode(): c.attributes["DW_AT_data_member_location"].value
                               for c in die.iter_children() if c.tag == "DW_TAG_member"}
                    return die.attributes["DW_AT_byte_size"].value, members
    return None
