//! Per-CPU data: one 64-byte `PerCpu` per CPU (the boot CPU's `PERCPU`, AP k's
//! `smp::AP_PERCPU[k - 1]`), reached through that CPU's own GS base in kernel mode (`swapgs`
//! exchanges IA32_GS_BASE and IA32_KERNEL_GS_BASE at every user/kernel crossing of the syscall
//! path). The context switch (`task::lab_switch_to`) reads and writes it through GS only, so
//! one routine serves every CPU: it changes the data in the area (current, kernel_rsp, the
//! RSP0 of the TSS `tss` names), never the GS base.
//!
//! The fields the syscall entry touches before anything is saved sit in one cache line at
//! fixed offsets (`percpu_off`), asserted below and mirrored in `lab/labkernel/layouts.py`.

use core::mem::{offset_of, size_of};

use crate::task::Task;

#[repr(C, align(64))]
pub struct PerCpu {
    /// The running task.
    pub current: *mut Task,
    /// Top of the current task's kernel stack: the syscall entry's RSP.
    pub kernel_rsp: u64,
    /// Scratch slot for the user RSP between `swapgs` and the stack switch.
    pub user_rsp: u64,
    pub switches: u64,
    /// Its own address, so code holding only GS can find the structure.
    pub self_ptr: u64,
    /// This CPU's own TSS (the one its TR selects): the switch writes its RSP0 through it.
    pub tss: u64,
    /// This CPU's index (its initial APIC ID; 0 is the boot CPU): whose task table `schedule`
    /// picks from.
    pub cpu: u64,
    _pad: u64,
}
const _: () = assert!(size_of::<PerCpu>() == 64);

impl PerCpu {
    /// An area with nothing in it yet.
    pub const EMPTY: PerCpu = PerCpu { current: core::ptr::null_mut(), kernel_rsp: 0, user_rsp: 0, switches: 0,
                                       self_ptr: 0, tss: 0, cpu: 0, _pad: 0 };
}

pub mod percpu_off {
    pub const CURRENT: usize = 0x00;
    pub const KERNEL_RSP: usize = 0x08;
    pub const USER_RSP: usize = 0x10;
    pub const SWITCHES: usize = 0x18;
    pub const SELF_PTR: usize = 0x20;
    pub const TSS: usize = 0x28;
    pub const CPU: usize = 0x30;
}
const _: () = assert!(offset_of!(PerCpu, current) == percpu_off::CURRENT);
const _: () = assert!(offset_of!(PerCpu, kernel_rsp) == percpu_off::KERNEL_RSP);
const _: () = assert!(offset_of!(PerCpu, user_rsp) == percpu_off::USER_RSP);
const _: () = assert!(offset_of!(PerCpu, switches) == percpu_off::SWITCHES);
const _: () = assert!(offset_of!(PerCpu, self_ptr) == percpu_off::SELF_PTR);
const _: () = assert!(offset_of!(PerCpu, tss) == percpu_off::TSS);
const _: () = assert!(offset_of!(PerCpu, cpu) == percpu_off::CPU);

/// The boot CPU's area.
#[unsafe(no_mangle)]
pub static mut PERCPU: PerCpu = PerCpu::EMPTY;

/// This CPU's area, through GS (GS_BASE must be the kernel's: true in kernel mode everywhere
/// but between a `swapgs` and the ring change it belongs to, where interrupts are off).
pub fn this_cpu() -> *mut PerCpu {
    let p: u64;
    // SAFETY: GS_BASE is this CPU's PerCpu, whose self pointer is its address.
    unsafe { core::arch::asm!("mov {}, gs:[{off}]", out(reg) p, off = const percpu_off::SELF_PTR,
                              options(nostack, readonly, preserves_flags)) };
    p as *mut PerCpu
}

/// The running task on this CPU (`gs:[current]`).
pub fn current() -> *mut Task {
    let p: u64;
    // SAFETY: as `this_cpu`.
    unsafe { core::arch::asm!("mov {}, gs:[{off}]", out(reg) p, off = const percpu_off::CURRENT,
                              options(nostack, readonly, preserves_flags)) };
    p as *mut Task
}
