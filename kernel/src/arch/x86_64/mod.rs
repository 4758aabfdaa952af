//! x86-64 architecture: descriptor tables, the TSS, stacks and interrupt handlers.

pub mod gdt;
pub mod handlers;
pub mod idt;
pub mod stacks;
pub mod tss;

/// Loads GDT (with the TSS descriptor), TR and IDT. Call once, with interrupts off.
pub fn init() {
    tss::init();
    gdt::init();
    idt::init();
}
