//! Multiboot 1 entry (QEMU `-kernel`).
//!
//! QEMU's loader rejects 64-bit ELF files unless the Multiboot header carries the address fields
//! (flags bit 16, Multiboot spec 0.6.96 §3.1.3). With them it copies the file, starting at the
//! header's offset minus (header_addr - load_addr), to load_addr, zeroes up to bss_end_addr and
//! jumps to entry_addr in 32-bit protected mode with paging off (spec §3.2: EAX = 0x2BADB002,
//! EBX = physical address of the Multiboot information structure).
//!
//! `_start32` then does what the loader leaves to the kernel (SDM vol. 3A §10.8.5, "Initializing
//! IA-32e Mode"): checks CPUID for long mode and NX, identity-maps the first 1 GiB with 2 MiB
//! pages, sets CR4.PAE, loads CR3, sets EFER.LME and EFER.NXE, sets CR0.PG, loads a minimal
//! 64-bit GDT and far-jumps into 64-bit code.

use crate::arch::x86_64::stacks::{BOOT_STACK, BOOT_STACK_TOP};

/// Multiboot 1 header magic (spec §3.1.2).
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// Value of EAX at entry when a Multiboot 1 loader started us (spec §3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// Flags: bit 1 = memory info wanted, bit 16 = address fields valid.
pub const HEADER_FLAGS: u32 = (1 << 1) | (1 << 16);

core::arch::global_asm!(
    r#"
    .section .multiboot, "a"
    .balign 4
multiboot_header:
    .long {magic}
    .long {flags}
    .long -({magic} + {flags})
    .long multiboot_header      /* header_addr */
    .long __image_start         /* load_addr */
    .long __load_end            /* load_end_addr */
    .long __bss_end             /* bss_end_addr */
    .long _start32              /* entry_addr */

    .section .boot.data, "aw"
    .balign 8
    .global boot_gdt_ptr
boot_gdt:
    .quad 0                     /* null */
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit ring-0 code (L=1, D=0) */
    .quad 0x00cf92000000ffff    /* 0x10: ring-0 data */
boot_gdt_end:
    .balign 8
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt
boot_no_long_mode_msg:
    .asciz "labkernel: CPU lacks long mode or NX; halting\r\n"

    .section .bss.boot_page_tables, "aw", @nobits
    .balign 4096
    .global boot_pml4
    .global boot_pdpt
    .global boot_pd
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096

    .section .boot.text, "ax"
    .code32
    .global _start32
    .type _start32, @function
_start32:
    cli
    cld
    movl %eax, %edi             /* Multiboot magic -> 1st argument of kernel_main */
    movl %ebx, %esi             /* Multiboot info  -> 2nd argument */
    movl ${stack} + {stack_size}, %esp

    /* CPUID 0x80000001: EDX bit 29 = long mode, bit 20 = NX */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb 9f
    movl $0x80000001, %eax
    cpuid
    testl $(1 << 29), %edx
    jz 9f
    testl $(1 << 20), %edx
    jz 9f

    /* PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] = i * 2 MiB | PS | RW | P */
    movl $boot_pdpt, %eax
    orl $0x3, %eax
    movl %eax, boot_pml4
    movl $boot_pd, %eax
    orl $0x3, %eax
    movl %eax, boot_pdpt
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, boot_pd(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b

"#,
    crate::arch::x86_64::long_mode_on!("$boot_pml4"),
    r#"    lgdt boot_gdt_ptr
    ljmp $0x08, $_start64

9:  movl $boot_no_long_mode_msg, %ebx
2:  movb (%ebx), %al
    testb %al, %al
    jz 3f
    movw $0x3f8, %dx
    outb %al, %dx
    incl %ebx
    jmp 2b
3:  hlt
    jmp 3b

    .code64
_start64:
    movl %edi, %edi             /* zero-extend the two arguments */
    movl %esi, %esi
    leaq {entry}(%rip), %rax
    jmp boot_enter_rust
    "#,
    magic = const HEADER_MAGIC,
    flags = const HEADER_FLAGS,
    stack = sym BOOT_STACK,
    stack_size = const BOOT_STACK_TOP,
    entry = sym multiboot_main,
    options(att_syntax)
);

/// Multiboot information structure fields used here (spec §3.3): `flags` at 0, `cmdline`
/// (physical address of a NUL-terminated string, valid when flags bit 2 is set) at 16.
const INFO_FLAGS: usize = 0;
const INFO_CMDLINE: usize = 16;
const INFO_FLAG_CMDLINE: u32 = 1 << 2;

/// The kernel command line (QEMU `-append`), or "" when the loader gave none.
fn cmdline(info: u64) -> &'static str {
    if info == 0 {
        return "";
    }
    // SAFETY: the loader's info block and strings are identity-mapped (first 1 GiB).
    unsafe {
        let base = info as *const u8;
        let flags = (base.add(INFO_FLAGS) as *const u32).read_unaligned();
        if flags & INFO_FLAG_CMDLINE == 0 {
            return "";
        }
        let ptr = (base.add(INFO_CMDLINE) as *const u32).read_unaligned() as *const u8;
        let mut len = 0;
        while len < 4096 && *ptr.add(len) != 0 {
            len += 1;
        }
        core::str::from_utf8(core::slice::from_raw_parts(ptr, len)).unwrap_or("")
    }
}

/// First Rust code on the Multiboot path.
extern "C" fn multiboot_main(magic: u32, info: u32) -> ! {
    let info = if magic == BOOTLOADER_MAGIC { info as u64 } else { 0 };
    crate::kernel_main(crate::boot::BootPath::Multiboot, info, cmdline(info))
}
