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
