//! Entry paths. Each module brings the CPU from its loader's hand-off to `kernel_main` in 64-bit
//! mode with paging on, the first 1 GiB identity-mapped by `boot_pml4` (so the kernel's frames
//! sit at its link addresses), the boot GDT's flat 64-bit code segment, and RSP at the top of
//! `BOOT_STACK`. Everything after `kernel_main` is shared by all entry paths.
//!
//! | path | loader | CPU state at the kernel's first instruction | module |
//! |---|---|---|---|
//! | multiboot | QEMU `-kernel` (Multiboot 1) | 32-bit protected mode, paging off | `multiboot` |
//! | bios | `cargo bootimage`: bootloader 0.9 from a raw disk | 64-bit, the bootloader's page tables | `bios` |

pub mod bios;
pub mod multiboot;

/// How the kernel was entered; reported by the ready marker and the `info` shell command.
#[derive(Clone, Copy)]
pub enum BootPath {
    Multiboot,
    Bios,
}

impl BootPath {
    pub const fn name(self) -> &'static str {
        match self {
            BootPath::Multiboot => "multiboot",
            BootPath::Bios => "bios",
        }
    }
}

// The tail every path jumps to once CS is the boot GDT's 0x08 and RSP is the top of BOOT_STACK:
// RAX = the Rust entry (extern "C", never returns), RDI and RSI its arguments.
core::arch::global_asm!(
    r#"
    .section .boot.text, "ax"
    .code64
    .global boot_enter_rust
boot_enter_rust:
    movw $0x10, %cx             /* boot GDT: ring-0 data */
    movw %cx, %ds
    movw %cx, %es
    movw %cx, %ss
    xorw %cx, %cx
    movw %cx, %fs
    movw %cx, %gs
    xorl %ebp, %ebp             /* end of the frame-pointer chain */
    call *%rax
    ud2
    "#,
    options(att_syntax)
);
