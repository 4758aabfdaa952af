//! x86-64 architecture: descriptor tables, the TSS, stacks and interrupt handlers.

pub mod fpu;
pub mod gdt;
pub mod handlers;
pub mod hooks;
pub mod idt;
pub mod paging;
pub mod stacks;
pub mod stubs;
pub mod tss;
pub mod tutorial_stubs;

/// The 32-bit code that turns on long mode (SDM vol. 3A §10.8.5, "Initializing IA-32e Mode"),
/// as AT&T assembly text for a `global_asm!` template: CR4.PAE, CR3 = the PML4 (`$pml4`, an
/// immediate: `"$boot_pml4"` or `"${pml4}"`), IA32_EFER.LME and NXE, then CR0.PG, WP and PE.
/// The next far jump to a 64-bit code segment enters it. Used by the Multiboot entry and the
/// APs' trampoline, which run it from protected mode.
macro_rules! long_mode_on {
    ($pml4:literal) => {
        concat!(
            "    movl %cr4, %eax\n",
            "    orl $(1 << 5), %eax         /* CR4.PAE */\n",
            "    movl %eax, %cr4\n",
            "    movl ", $pml4, ", %eax\n",
            "    movl %eax, %cr3\n",
            "    movl $0xC0000080, %ecx      /* IA32_EFER */\n",
            "    rdmsr\n",
            "    orl $((1 << 8) | (1 << 11)), %eax   /* LME | NXE */\n",
            "    wrmsr\n",
            "    movl %cr0, %eax\n",
            "    orl $0x80010001, %eax       /* PG | WP | PE */\n",
            "    movl %eax, %cr0\n",
        )
    };
}
pub(crate) use long_mode_on;

/// Loads GDT (with the TSS descriptor), TR and IDT; enables x87/SSE; maps the test pages.
/// Call once, with interrupts off.
pub fn init() {
    tss::init();
    gdt::init();
    idt::init();
    fpu::init();
    paging::init();
}

/// Whether the CPU pushes an error code for `vector` when it delivers the exception (SDM
/// vol. 3A §6.13, Table 6-1). A software `int n` never pushes one.
pub const fn vectors_with_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}
