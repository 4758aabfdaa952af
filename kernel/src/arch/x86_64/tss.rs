//! The 64-bit task-state segment.
//!
//! SDM vol. 3A §8.7 "Task Management in 64-bit Mode", Figure 8-11 "64-Bit TSS Format"; AMD APM
//! vol. 2 §12.2.5. In 64-bit mode the TSS holds no register state: only the stack pointers the
//! CPU loads on a privilege change (RSP0-2), the seven interrupt-stack-table pointers, and the
//! offset of the I/O permission bitmap.
//!
//! Quirk: a gate's IST field counts from 1 (1 = IST1 ... 7 = IST7, 0 = no IST switch), while
//! `interrupt_stack_table[0]` here *is* IST1. `ist_slot()` takes the hardware number.

use core::mem::{offset_of, size_of};

use super::stacks;

#[repr(C, packed(4))]
pub struct TaskStateSegment {
    _reserved_1: u32,
    /// RSP0, RSP1, RSP2 at offsets 0x04, 0x0C, 0x14.
    pub privilege_stack_table: [u64; 3],
    _reserved_2: u64,
    /// IST1..IST7 at offsets 0x24..0x54.
    pub interrupt_stack_table: [u64; 7],
    _reserved_3: u64,
    _reserved_4: u16,
    /// Offset of the I/O permission bitmap from the TSS base (0x66).
    pub iomap_base: u16,
}

const _: () = assert!(size_of::<TaskStateSegment>() == 104);
const _: () = assert!(offset_of!(TaskStateSegment, privilege_stack_table) == 0x04);
const _: () = assert!(offset_of!(TaskStateSegment, interrupt_stack_table) == 0x24);
/// Where RSP0 sits (the context switch writes it through a TSS pointer).
pub const RSP0_OFFSET: usize = offset_of!(TaskStateSegment, privilege_stack_table);
const _: () = assert!(offset_of!(TaskStateSegment, iomap_base) == 0x66);

/// Hardware IST numbers (the value written into a gate's IST field).
pub mod ist {
    pub const DOUBLE_FAULT: u8 = 1;
    pub const NMI: u8 = 2;
    pub const MACHINE_CHECK: u8 = 3;
}

impl TaskStateSegment {
    pub const fn new() -> Self {
        TaskStateSegment {
            _reserved_1: 0,
            privilege_stack_table: [0; 3],
            _reserved_2: 0,
            interrupt_stack_table: [0; 7],
            _reserved_3: 0,
            _reserved_4: 0,
            // No I/O bitmap: a base at or beyond the limit means "none" (SDM §20.5.2).
            iomap_base: size_of::<TaskStateSegment>() as u16,
        }
    }

    /// Sets IST`n` using the hardware numbering 1..=7.
    pub fn set_ist_slot(&mut self, n: u8, top: u64) {
        assert!((1..=7).contains(&n), "IST slots are numbered 1..=7");
        self.interrupt_stack_table[n as usize - 1] = top;
    }
}

#[unsafe(no_mangle)]
pub static mut TSS: TaskStateSegment = TaskStateSegment::new();

pub fn init() {
    // SAFETY: runs once on the boot CPU before the TSS is loaded into TR.
    let tss = unsafe { &mut *(&raw mut TSS) };
    tss.privilege_stack_table[0] = stacks::top(&raw const stacks::RSP0_STACK);
    tss.set_ist_slot(ist::DOUBLE_FAULT, stacks::top(&raw const stacks::DOUBLE_FAULT_STACK));
    tss.set_ist_slot(ist::NMI, stacks::top(&raw const stacks::NMI_STACK));
    tss.set_ist_slot(ist::MACHINE_CHECK, stacks::top(&raw const stacks::MACHINE_CHECK_STACK));
}

/// The boot CPU's TSS (each AP has its own: `loaded_base`).
pub fn base() -> u64 {
    &raw const TSS as u64
}

/// The base of the TSS this CPU's TR selects, read back through its own GDTR and TR (STR, the
/// 16-byte descriptor): on any CPU its own TSS; 0 when TR is 0 or outside the GDT.
pub fn loaded_base() -> u64 {
    let gdtr = x86_64::instructions::tables::sgdt();
    let selector: u16;
    // SAFETY: STR only reads TR's selector.
    unsafe { core::arch::asm!("str {0:x}", out(reg) selector, options(nomem, nostack, preserves_flags)) };
    let offset = (selector & !7) as u64;
    if offset == 0 || offset + 15 > gdtr.limit as u64 {
        return 0;
    }
    let at = gdtr.base.as_u64() + offset;
    // SAFETY: inside the loaded GDT's limit; the GDT is mapped.
    let d = unsafe { [(at as *const u64).read_volatile(), ((at + 8) as *const u64).read_volatile()] };
    super::gdt::system_descriptor_base(d)
}
