//! The application processors' way into long mode: a real-mode trampoline, copied to the low
//! page `BASE` (a STARTUP IPI's vector names the 4 KiB page the AP starts at, CS = vector <<
//! 8, IP = 0: SDM vol. 3A §9.4.4.1, §11.6.1), going 16 -> 32 -> 64-bit as `_start32` does
//! for the boot CPU (SDM §10.8.5): its own small GDT (32-bit code, data, 64-bit code), CR4.PAE,
//! the boot CPU's page tables (`boot_pml4`, identity-mapped below 4 GiB), EFER.LME|NXE, CR0.PG.
//! In 64-bit mode each AP takes its stack from `AP_BOOT_TOPS[its initial APIC ID]` (CPUID.1
//! EBX[31:24]), so all APs can run the trampoline at once, and jumps to `ap_main(apic_id)`.
//! The code is linked inside the kernel image and addresses inside it are computed as
//! `label - lab_smp_trampoline + BASE`, its address once copied.

use super::{AP_BOOT_TOPS, ap_main};

/// Physical address of the copy: page 8, free conventional memory below 1 MiB on both boot paths.
pub const BASE: u64 = 0x8000;
/// The STARTUP IPI's vector: the page number of `BASE`.
pub const SIPI_VECTOR: u32 = (BASE >> 12) as u32;
const _: () = assert!(BASE % 4096 == 0 && BASE < 0xA_0000);

core::arch::global_asm!(
    r#"
    .section .rodata.lab_smp_trampoline, "a"
    .balign 16
    .global lab_smp_trampoline
    .global lab_smp_trampoline_end
    .code16
lab_smp_trampoline:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl (tramp_gdt_ptr - lab_smp_trampoline + {base})
    movl %cr0, %eax
    orl $1, %eax                /* CR0.PE */
    movl %eax, %cr0
    ljmpl $0x08, $(tramp32 - lab_smp_trampoline + {base})

    .code32
tramp32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
"#,
    crate::arch::x86_64::long_mode_on!("${pml4}"),
    r#"    ljmpl $0x18, $(tramp64 - lab_smp_trampoline + {base})

    .code64
tramp64:
    movl $1, %eax
    cpuid
    shrl $24, %ebx              /* CPUID.1 EBX[31:24]: initial APIC ID */
    movl %ebx, %edi
    movabsq ${tops}, %rax
    movq (%rax,%rdi,8), %rsp
    movabsq ${entry}, %rax
    jmp *%rax

    .balign 8
tramp_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
    .quad 0x00af9a000000ffff    /* 0x18: 64-bit code (L=1, D=0) */
tramp_gdt_end:
tramp_gdt_ptr:
    .word tramp_gdt_end - tramp_gdt - 1
    .long tramp_gdt - lab_smp_trampoline + {base}
lab_smp_trampoline_end:
    .text
    "#,
    base = const BASE,
    pml4 = sym boot_pml4,
    tops = sym AP_BOOT_TOPS,
    entry = sym ap_main,
    options(att_syntax)
);

unsafe extern "C" {
    static boot_pml4: [u64; 512];
    static lab_smp_trampoline: u8;
    static lab_smp_trampoline_end: u8;
}

/// Copies the trampoline to `BASE`; returns its length.
pub fn install() -> usize {
    // SAFETY: the linker places both labels in one section; BASE is identity-mapped, writable
    // and unused by the kernel (below its image at 1 MiB).
    unsafe {
        let start = &raw const lab_smp_trampoline;
        let len = (&raw const lab_smp_trampoline_end as usize) - start as usize;
        assert!(len <= 4096, "the SMP trampoline must fit one page");
        core::ptr::copy_nonoverlapping(start, BASE as *mut u8, len);
        len
    }
}
