"""Tiny 64-bit kernels assembled by the tests themselves (GNU as + ld, nothing downloaded).

`tiny_kernel(directory, name, spec)` writes a Multiboot 1 ELF (32-bit, which QEMU's loader
takes) whose 32-bit entry builds 4-level page tables, sets CR4.PAE, EFER.LME and NXE, turns on
paging and far-jumps into 64-bit code. That code loads the kernel's own GDT, fills its TSS
descriptor and IDT gates as `TinySpec` says, does `lidt` and `ltr`, and halts at the global
symbol `tiny_ready`, where `lab inspect --kernel tiny.elf --at tiny_ready` stops.

The memory map: the ELF is linked at 1 MiB; the first 2 MiB are mapped with 4 KiB pages (so
single pages can be left unmapped or made no-execute, the `unmapped` and `nx` page addresses
below 2 MiB), the rest of the first GiB with 2 MiB pages, all writable and executable by
default. Everything is identity-mapped, so every address fits in 32 bits.

The default `TinySpec` is a healthy kernel with no ring-3 code: a #DF gate on IST1, NMI on
IST2, RSP0 at the top of its own stack, every stack in the ELF and named by a symbol.
"""

from __future__ import annotations

import dataclasses
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

STOP = "tiny_ready"
KERNEL_CS, KERNEL_DS, USER_DS, USER_CS, TSS_SEL = 0x08, 0x10, 0x18, 0x20, 0x28
LINK_ADDRESS = 0x100000
# Addresses outside the ELF (it ends well below 0x180000), inside the 4 KiB-page region.
UNMAPPED_PAGE, NX_PAGE, VC_STACK_PAGE = 0x1E0000, 0x1E1000, 0x1F0000
RUNTIME_STUBS = 0x200000  # in a 2 MiB page; the kernel writes its stubs there at run time
STUB_BYTES = 0x90FDEBF4  # hlt; jmp .-1 (to the hlt); nop
INTERRUPT, TRAP = 0xE, 0xF
DF, NMI, VC = 8, 2, 29


@dataclass(frozen=True)
class Gate:
    handler: str | int = "tiny_isr"  # a symbol or an address
    ist: int = 0
    dpl: int = 0
    type: int = INTERRUPT
    present: bool = True
    selector: int = KERNEL_CS


def _default_gates() -> dict[int, Gate]:
    gates = {v: Gate() for v in range(32)}
    gates[DF] = Gate(ist=1)
    gates[NMI] = Gate(ist=2)
    return gates


@dataclass(frozen=True)
class TinySpec:
    #: vector -> gate; vectors not named get no gate (all-zero, not present).
    gates: dict[int, Gate] = field(default_factory=_default_gates)
    #: TSS.RSP0 and IST1..7: a symbol expression ("rsp0_stack_top - 8") or a 64-bit number.
    rsp0: str | int = "rsp0_stack_top"
    ist: tuple[str | int, ...] = ("df_stack_top", "nmi_stack_top", 0, 0, 0, 0, 0)
    user_segments: bool = False  # DPL-3 data and 64-bit code descriptors at 0x18 and 0x20
    syscall: bool = False  # EFER.SCE
    #: stop in ring 3: iretq to `tiny_ready` at CPL 3 (CS 0x23; needs user_segments; every
    #: page user-accessible), where it spins (hlt would #GP)
    ring3: bool = False
    unmapped: tuple[int, ...] = ()  # 4 KiB pages below 2 MiB left out of the page tables
    nx: tuple[int, ...] = ()  # 4 KiB pages below 2 MiB mapped with XD set
    runtime_stubs: tuple[int, ...] = ()  # vectors whose gate points at a stub written at run time
    pad: int = 0  # bytes of nop before the handlers: moves them and everything after (data, stacks)
    #: 1: a Multiboot 1 header (QEMU's -kernel loads it); 2: only a Multiboot2 header (GRUB
    #: loads it; the lab makes the GRUB image); "2-bad": a Multiboot2 header with a wrong checksum
    multiboot: int | str = 1
    #: False: no `lidt` and no `ltr`, the kernel stops with the IDTR and TR the loader left
    load_idt: bool = True
    #: a `lidt` of a null IDTR (base 0, limit 0) first, as Limine leaves it
    null_idtr: bool = False
    #: the IDTR's base instead of the IDT's (e.g. an unmapped page: an IDT gdb cannot read)
    idt_base: int | None = None
    #: how the kernel parks at `tiny_ready`: "hlt" (IF=0, hlt), "sti-hlt" (the PIC masked,
    #: sti; hlt: a kernel idling) or "jmp" (`jmp .`, IF=0)
    idle: str = "hlt"
    #: printed on COM1 (0x3f8) just before the kernel parks
    message: str = ""
    #: after loading its tables, a loop of this many iterations (boot work), then `ud2` (#UD)
    fault_after: int | None = None

    def with_gates(self, **changes: Gate | None) -> "TinySpec":
        """This spec with gates replaced (`v8=Gate(...)`) or removed (`v8=None`)."""
        gates = dict(self.gates)
        for key, gate in changes.items():
            vector = int(key[1:])
            if gate is None:
                gates.pop(vector, None)
            else:
                gates[vector] = gate
        return dataclasses.replace(self, gates=gates)


def _qword(value: str | int) -> str:
    """A 64-bit field as two .long: a symbol expression (below 4 GiB) or a number."""
    if isinstance(value, int):
        return f".long {value & 0xFFFFFFFF:#x}, {value >> 32:#x}"
    return f".long {value}, 0"


def _page_table(spec: TinySpec) -> str:
    lines = []
    for i in range(512):
        page = i << 12
        if page in spec.unmapped:
            lines.append(".long 0, 0")
        else:
            lines.append(f".long {page | (7 if spec.ring3 else 3):#x}, {0x80000000 if page in spec.nx else 0:#x}")
    return "\n        ".join(lines)


def _ists(spec: TinySpec) -> str:
    assert len(spec.ist) == 7
    return "\n        ".join(_qword(x) for x in spec.ist)


def _gates(spec: TinySpec) -> str:
    lines = []
    for vector, g in sorted(spec.gates.items()):
        handler = RUNTIME_STUBS + 16 * vector if vector in spec.runtime_stubs else g.handler
        attr = (0x80 if g.present else 0) | (g.dpl << 5) | g.type
        lines.append(f"gate {vector}, {handler}, {g.ist}, {attr:#x}, {g.selector:#x}")
    return "\n        ".join(lines)


def _to_ring3(spec: TinySpec) -> str:
    """iretq to the stop at CPL 3 on the spare stack, interrupts off (SDM §6.14.3)."""
    if not spec.ring3:
        return ""
    assert spec.user_segments, "ring 3 needs the user descriptors"
    return f"""push $0x1b                      # SS: user data, RPL 3
        mov $spare_stack_top, %eax
        push %rax                       # RSP
        push $2                         # RFLAGS: IF clear
        push $0x23                      # CS: user code, RPL 3
        mov ${STOP}, %eax
        push %rax                       # RIP
        iretq"""


MB1_MAGIC, MB2_MAGIC, MB2_HEADER_LENGTH = 0x1BADB002, 0xE85250D6, 24


def _multiboot_header(spec: TinySpec) -> str:
    """Multiboot 1 (spec §3.1.1: magic, flags, checksum) or Multiboot2 (§3.1.1: magic,
    architecture 0 = i386, header length, checksum, then the end tag: type 0, flags 0, size 8)."""
    if spec.multiboot == 1:
        return f".align 4\n        .long {MB1_MAGIC:#x}, 0, -{MB1_MAGIC:#x}"
    checksum = f"-({MB2_MAGIC:#x} + {MB2_HEADER_LENGTH})" + (" + 1" if spec.multiboot == "2-bad" else "")
    return (f".align 8\n        .long {MB2_MAGIC:#x}, 0, {MB2_HEADER_LENGTH}, {checksum}\n"
            f"        .word 0, 0\n        .long 8")
def _null_idtr(spec: TinySpec) -> str:
    return "mov $null_idtr, %edi\n        lidt (%rdi)" if spec.null_idtr else ""


def _load_tables(spec: TinySpec) -> str:
    if not spec.load_idt:
        return ""
    base = f"movl ${spec.idt_base:#x}, 2(%rdi)\n        " if spec.idt_base is not None else ""
    return f"""mov $idtr, %edi
        {base}lidt (%rdi)
        mov ${TSS_SEL:#x}, %ax
        ltr %ax"""


def _fault(spec: TinySpec) -> str:
    """Boot work (a countdown), then #UD at the global symbol `tiny_fault`."""
    if spec.fault_after is None:
        return ""
    return f"""mov ${spec.fault_after:#x}, %ecx
2:      dec %ecx
        jnz 2b
        .globl tiny_fault
tiny_fault:
        ud2"""


def _message(spec: TinySpec) -> str:
    return "\n        ".join(f"mov ${ord(c)}, %al\n        mov $0x3f8, %dx\n        out %al, (%dx)"
                             for c in spec.message + ("\n" if spec.message else ""))


def _park(spec: TinySpec) -> str:
    if spec.ring3:
        body = f"pause\n        jmp {STOP}"
    elif spec.idle == "sti-hlt":
        # every PIC line masked: nothing interrupts the idle loop (the IDT has no IRQ gates)
        body = f"mov $0xff, %al\n        out %al, $0x21\n        out %al, $0xa1\n        sti\n{STOP}_loop:\n        hlt\n        jmp {STOP}_loop"
    elif spec.idle == "jmp":
        body = "jmp ."
    else:
        assert spec.idle == "hlt", spec.idle
        body = f"hlt\n        jmp {STOP}"
    return f""".globl {STOP}
        .type {STOP}, @function
{STOP}:
        {body}
        .size {STOP}, . - {STOP}"""


def source(spec: TinySpec) -> str:
    user_bit = 4 if spec.ring3 else 0
    user = ("0x0000ffff, 0x00cff200", "0x0000ffff, 0x00affa00") if spec.user_segments else ("0, 0", "0, 0")
    efer = 0x100 | 0x800 | (1 if spec.syscall else 0)  # LME, NXE, SCE
    return f"""
        .macro gate vec, handler, ist, attr, sel
        mov $\\handler, %eax
        mov $(idt + 16 * \\vec), %edi
        mov %ax, (%rdi)
        movw $\\sel, 2(%rdi)
        movb $\\ist, 4(%rdi)
        movb $\\attr, 5(%rdi)
        shr $16, %eax
        mov %ax, 6(%rdi)
        movl $0, 8(%rdi)
        movl $0, 12(%rdi)
        .endm

        .section .text
        .code32
        {_multiboot_header(spec)}
        .globl _start
        .type _start, @function
_start: cli
        mov %eax, boot_magic            # the loader's magic and information pointer
        mov %ebx, boot_info
        mov $boot_stack_top, %esp
        mov %cr4, %eax
        or $0x20, %eax                  # PAE
        mov %eax, %cr4
        mov $pml4, %eax
        mov %eax, %cr3
        mov $0xC0000080, %ecx           # IA32_EFER
        rdmsr
        or ${efer:#x}, %eax
        wrmsr
        mov %cr0, %eax
        or $0x80000001, %eax            # PG, PE
        mov %eax, %cr0
        lgdt gdtr
        ljmp ${KERNEL_CS:#x}, $long_mode
        .size _start, . - _start

        .code64
        .type long_mode, @function
long_mode:
        mov ${KERNEL_DS:#x}, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov %ax, %fs
        mov %ax, %gs
        mov $boot_stack_top, %esp
        mov $tss, %eax                  # the TSS descriptor's base (register-indirect:
        mov $gdt_tss, %edi              # an ELF32 object has no 64-bit absolute relocation)
        mov %ax, 2(%rdi)
        shr $16, %eax
        mov %al, 4(%rdi)
        mov %ah, 7(%rdi)
        mov ${RUNTIME_STUBS:#x}, %edi   # stubs built at run time, outside every symbol
        mov $256, %ecx
1:      movl ${STUB_BYTES:#x}, (%rdi)
        add $16, %rdi
        loop 1b
        {_gates(spec)}
        {_null_idtr(spec)}
        {_load_tables(spec)}
        {_fault(spec)}
        {_message(spec)}
        {_to_ring3(spec)}
        {_park(spec)}
        .size {STOP}, . - {STOP}
        .size long_mode, . - long_mode

        .skip {spec.pad}, 0x90
        .globl tiny_isr
        .type tiny_isr, @function
tiny_isr:
        hlt
        jmp tiny_isr
        .size tiny_isr, . - tiny_isr
        .globl tiny_other
        .type tiny_other, @function
tiny_other:                             # a second handler, for a gate of its own
        hlt
        jmp tiny_other
        .size tiny_other, . - tiny_other

        .section .data
        .align 16
        .type gdt, @object
gdt:    .long 0, 0
        .long 0x0000ffff, 0x00af9a00    # 0x08 kernel code, 64-bit
        .long 0x0000ffff, 0x00cf9200    # 0x10 kernel data
        .long {user[0]}                 # 0x18 user data (DPL 3) or null
        .long {user[1]}                 # 0x20 user code, 64-bit (DPL 3) or null
gdt_tss:
        .long 0x00000067, 0x00008900    # 0x28 TSS, available; base filled at run time
        .long 0, 0
        .size gdt, . - gdt
gdtr:   .word gdt_tss + 16 - gdt - 1
        .long gdt
idtr:   .word 256 * 16 - 1
        .long idt, 0
        .globl boot_magic, boot_info
boot_magic: .long 0                     # EAX at entry: 0x2BADB002 (Multiboot 1), 0x36d76289 (2)
boot_info:  .long 0                     # EBX at entry: the loader's information structure
null_idtr: .word 0
        .long 0, 0

        .align 16
        .globl tss
        .type tss, @object
tss:    .long 0
        {_qword(spec.rsp0)}
        .long 0, 0, 0, 0, 0, 0
        {_ists(spec)}
        .long 0, 0
        .word 0, 104
        .size tss, . - tss

        .align 16
        .type idt, @object
idt:    .fill 256 * 16, 1, 0
        .size idt, . - idt

        .align 4096
pml4:   .long pdpt + {3 | user_bit}, 0
        .fill 511, 8, 0
pdpt:   .long pd + {3 | user_bit}, 0
        .fill 511, 8, 0
pd:     .long pt + {3 | user_bit}, 0
        .set .Lpage, 1
        .rept 511
        .long (.Lpage << 21) | {0x83 | user_bit:#x}, 0
        .set .Lpage, .Lpage + 1
        .endr
pt:     {_page_table(spec)}

        .section .bss
        .align 4096
        .irp name, boot_stack, rsp0_stack, df_stack, nmi_stack, spare_stack
        .globl \\name
        .type \\name, @object
        .size \\name, 4096
\\name: .skip 4096
\\name\\()_top:
        .endr
"""


def tiny_kernel(directory: Path, name: str, spec: TinySpec = TinySpec()) -> Path:
    """Assembles and links `spec` into `directory/name.elf`."""
    src, obj, elf = (directory / f"{name}{ext}" for ext in (".S", ".o", ".elf"))
    src.write_text(source(spec))
    subprocess.run(["as", "--32", "-o", obj, src], check=True, capture_output=True, text=True)
    subprocess.run(["ld", "-m", "elf_i386", "-z", "noseparate-code", f"-Ttext={LINK_ADDRESS:#x}", "-e", "_start", "-o", elf, obj],
                   check=True, capture_output=True, text=True)
    return elf
