//! x87 and SSE enablement, so the #NM, #MF and #XM scenarios can run.
//!
//! SDM vol. 3A §2.5 (CR0.MP/EM/TS/NE, CR4.OSFXSR/OSXMMEXCPT), §9.2 and §13.1. With CR0.NE=1,
//! unmasked x87 errors are reported as #MF at the next waiting x87 instruction; with
//! CR4.OSXMMEXCPT=1, unmasked SIMD floating-point errors raise #XM (else #UD). The kernel's own
//! Rust code is compiled soft-float (the target disables SSE), so only the lab's scenarios touch
//! these units.

use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};

/// MXCSR after reset (SDM vol. 1 §10.2.3.1): all exceptions masked, flags clear.
pub const MXCSR_DEFAULT: u32 = 0x1F80;

pub fn init() {
    // SAFETY: enabling the FPU/SSE units does not affect memory safety.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
            // Alignment checking for CPL 3 when RFLAGS.AC is set (the `ac` user program).
            f.insert(Cr0Flags::ALIGNMENT_MASK);
        });
        Cr4::update(|f| f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE));
        reset_x87();
    }
}

static MXCSR_RESET: u32 = MXCSR_DEFAULT;

/// Clears x87 state and exceptions, masking all (the #MF fix-up).
pub fn reset_x87() {
    // SAFETY: touches only x87 control state.
    unsafe { core::arch::asm!("fninit", options(nostack, nomem)) };
}

/// Resets MXCSR: exceptions masked, flags clear (the #XM fix-up). Not used at boot: on a
/// nested AMD host KVM fails to run SSE instructions ("KVM internal error", emulation of
/// LDMXCSR), so only the `xm` scenario executes one.
pub fn reset_sse() {
    // SAFETY: touches only SSE control state.
    unsafe { core::arch::asm!("ldmxcsr [{0}]", in(reg) &raw const MXCSR_RESET, options(nostack)) };
}

/// Clears CR0.TS (the #NM fix-up; what CLTS does).
pub fn clear_task_switched() {
    // SAFETY: CLTS only clears CR0.TS.
    unsafe { Cr0::update(|f| f.remove(Cr0Flags::TASK_SWITCHED)) };
}

pub fn set_task_switched() {
    // SAFETY: sets CR0.TS; the next x87/SSE instruction raises #NM.
    unsafe { Cr0::update(|f| f.insert(Cr0Flags::TASK_SWITCHED)) };
}
