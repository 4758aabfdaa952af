//! BIOS entry: a raw disk image made by `cargo bootimage` (bootimage 0.10, bootloader 0.9).
//!
//! What bootloader 0.9 hands over (its `src/main.rs`, `stage_4` and `bootloader_main`): it loads
//! the kernel's ELF file (debug info stripped) at physical 4 MiB, maps every PT_LOAD segment at
//! its virtual address onto the frames of that file copy (bss on fresh frames, zeroed), maps all
//! physical memory at `BootInfo::physical_memory_offset` (feature `map_physical_memory`), sets
//! EFER.NXE and CR0.WP, and calls the ELF entry point in 64-bit mode on a stack of its own, with
//! RDI = `&BootInfo` (System V ABI).
//!
//! So the kernel runs at its link addresses, but its frames are elsewhere. The rest of the
//! kernel, like the Multiboot path, relies on the identity map (user address spaces, the #PF
//! test pages, every physical address the lab reads). `_start_bios` makes that true, then joins
//! the Multiboot path's tail:
//!
//! 1. `bios_prepare` (Rust, on BOOT_STACK under the bootloader's mapping) checks in the
//!    bootloader's memory map that the frames at the link addresses are free, fills the same
//!    identity tables `_start32` fills (first 1 GiB, 2 MiB pages), and returns the offset of the
//!    physical-memory window.
//! 2. The image, `__image_start..__bss_end`, is copied through that window onto the frames at
//!    its link addresses.
//! 3. CR3 = `boot_pml4`: the next fetch reads the copy, the same bytes at the same address.
//! 4. The boot GDT is loaded and `boot_enter_rust` calls `bios_main` on a fresh BOOT_STACK.
//!
//! The ELF entry point (`ENTRY(_start_bios)` in linker.ld) is only read by ELF loaders such as
//! bootloader 0.9; QEMU's Multiboot loader jumps to the header's `entry_addr` (`_start32`).

use bootloader::bootinfo::{BootInfo, MemoryRegionType};

use crate::arch::x86_64::paging::{pte, pte_cache};
use crate::arch::x86_64::stacks::{BOOT_STACK, BOOT_STACK_TOP};
use crate::drivers::fw_cfg;

core::arch::global_asm!(
    r#"
    .section .boot.text, "ax"
    .code64
    .global _start_bios
    .type _start_bios, @function
_start_bios:
    cli
    cld
    leaq {stack} + {stack_size}(%rip), %rsp
    xorl %ebp, %ebp
    call {prepare}              /* RDI = &BootInfo; returns the physical-memory offset */

    leaq __image_start(%rip), %rsi
    leaq (%rsi,%rax), %rdi      /* the frame at the link address, through the window */
    leaq __bss_end(%rip), %rcx
    subq %rsi, %rcx
    shrq $3, %rcx
    rep movsq

    movq %cr4, %rax
    andq $~(1 << 7), %rax       /* CR4.PGE off: no global translation of the old mapping survives */
    movq %rax, %cr4
    leaq boot_pml4(%rip), %rax
    movq %rax, %cr3             /* from here on, the copy runs */

    leaq {stack} + {stack_size}(%rip), %rsp
    lgdt boot_gdt_ptr(%rip)
    pushq $0x08
    leaq 1f(%rip), %rax
    pushq %rax
    lretq                       /* CS = boot GDT 0x08 */
1:  leaq {main}(%rip), %rax
    jmp boot_enter_rust
    "#,
    stack = sym BOOT_STACK,
    stack_size = const BOOT_STACK_TOP,
    prepare = sym bios_prepare,
    main = sym bios_main,
    options(att_syntax)
);

unsafe extern "C" {
    static __image_start: u8;
    static __bss_end: u8;
    static mut boot_pml4: [u64; 512];
    static mut boot_pdpt: [u64; 512];
    static mut boot_pd: [u64; 512];
}

/// Physical address of the bootloader's `BootInfo` page, kept for `kernel_main` (the
/// bootloader's virtual address of it is gone once CR3 changes). Written before the copy.
static mut BOOT_INFO_PHYS: u64 = 0;

const TWO_MIB: u64 = 2 << 20;

extern "C" fn bios_prepare(info: &'static BootInfo) -> u64 {
    crate::drivers::serial::init();
    // Linker symbols: only their addresses are used.
    let (start, end) = (&raw const __image_start as u64, &raw const __bss_end as u64);
    let mut boot_info_phys = 0;
    for region in info.memory_map.iter() {
        let (lo, hi) = (region.range.start_addr(), region.range.end_addr());
        if region.region_type == MemoryRegionType::BootInfo {
            boot_info_phys = lo;
        }
        if lo < end && start < hi && region.region_type != MemoryRegionType::Usable {
            panic!(
                "bios: the kernel's frames {start:#x}..{end:#x} overlap a {:?} region \
                 {lo:#x}..{hi:#x} in the bootloader's memory map; cannot move the kernel there",
                region.region_type
            );
        }
    }
    // SAFETY: single CPU, interrupts off, nothing else uses these tables yet; they are in the
    // image, so the copy carries them to their link addresses, which is what CR3 will name.
    unsafe {
        BOOT_INFO_PHYS = boot_info_phys;
        let pml4 = &mut *(&raw mut boot_pml4);
        let pdpt = &mut *(&raw mut boot_pdpt);
        let pd = &mut *(&raw mut boot_pd);
        pml4[0] = (&raw const boot_pdpt as u64) | pte::PRESENT | pte::WRITABLE;
        pdpt[0] = (&raw const boot_pd as u64) | pte::PRESENT | pte::WRITABLE;
        for (i, entry) in pd.iter_mut().enumerate() {
            *entry = i as u64 * TWO_MIB | pte::PRESENT | pte::WRITABLE | pte_cache::PS;
        }
    }
    info.physical_memory_offset
}

/// First Rust code on the BIOS path after the move: the command line comes from fw_cfg.
extern "C" fn bios_main() -> ! {
    static mut CMDLINE: [u8; 256] = [0; 256];
    // SAFETY: runs once, before anything else could use the buffer.
    let buf = unsafe { &mut *(&raw mut CMDLINE) };
    let cmdline = fw_cfg::read_file(fw_cfg::CMDLINE_FILE, buf)
        .and_then(|b| core::str::from_utf8(b).ok())
        .unwrap_or("");
    // SAFETY: written once by bios_prepare before the copy.
    let info = unsafe { BOOT_INFO_PHYS };
    crate::kernel_main(crate::boot::BootPath::Bios, info, cmdline.trim_end_matches('\0'))
}
