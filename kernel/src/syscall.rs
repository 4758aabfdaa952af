//! `syscall`/`sysretq` (SDM vol. 2B SYSCALL/SYSRET; vol. 3A §5.8.8, AMD APM vol. 2 §6.1.1).
//!
//! SYSCALL saves RIP in RCX and RFLAGS in R11, clears the RFLAGS bits set in IA32_FMASK,
//! loads CS/SS from IA32_STAR[47:32] (and +8) and jumps to IA32_LSTAR. It does not switch
//! stacks: the entry stub does, through the per-CPU area, which it can only reach after
//! `swapgs`. Labels mark each step for the lab:
//!
//! | label | state |
//! | `lab_syscall_entry` | RSP is the user's; GS_BASE is the user's |
//! | `lab_syscall_after_swapgs` | GS_BASE = &PERCPU, KERNEL_GS_BASE = the user's |
//! | `lab_syscall_after_stack` | user RSP in PERCPU.user_rsp, RSP = PERCPU.kernel_rsp |
//! | `lab_syscall_sysret` | at `sysretq`: registers and GS are the user's again |
//!
//! The frame built on the kernel stack is a `TrapFrame` (the stub style's `pt_regs`) with
//! vector `SYSCALL_MARK`: RIP = the user's RCX, RFLAGS = R11, RSP and SS the user's.

use core::mem::offset_of;

use crate::arch::x86_64::gdt::sel;
use crate::arch::x86_64::stubs::{pop_trap_gprs, push_trap_gprs, TrapFrame};
use crate::task::percpu_off;

/// TrapFrame.vector for a syscall frame (not a CPU vector).
pub const SYSCALL_MARK: u64 = 0x100;
/// RFLAGS bits cleared on entry: TF, IF, DF, IOPL, NT, AC (what Linux masks).
pub const FMASK: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (3 << 12) | (1 << 14) | (1 << 18);

pub mod nr {
    pub const WRITE: u64 = 1;
    pub const GETPID: u64 = 39;
    pub const YIELD: u64 = 24;
    pub const EXIT: u64 = 60;
}
pub const EFAULT: i64 = -14;
pub const ENOSYS: i64 = -38;

core::arch::global_asm!(
    r#"
    .section .text.lab_syscall, "ax", @progbits
    .global lab_syscall_entry
    .type lab_syscall_entry, @function
lab_syscall_entry:
    swapgs
    .global lab_syscall_after_swapgs
lab_syscall_after_swapgs:
    mov gs:[{user_rsp}], rsp
    mov rsp, gs:[{kernel_rsp}]
    .global lab_syscall_after_stack
lab_syscall_after_stack:
    push {user_ss}
    push qword ptr gs:[{user_rsp}]
    push r11
    push {user_cs}
    push rcx
    push 0                          /* error_code */
    push {mark}                     /* vector */
"#,
    push_trap_gprs!(),
    r#"
    mov rdi, rsp
    call {dispatch}                 /* writes the result into the frame's RAX slot */
"#,
    pop_trap_gprs!(),
    r#"
    add rsp, 16                     /* vector, error_code */
    pop rcx                         /* user RIP */
    add rsp, 8                      /* CS */
    pop r11                         /* user RFLAGS */
    mov rsp, [rsp]                  /* user RSP (interrupts are off: FMASK cleared IF) */
    swapgs
    .global lab_syscall_sysret
lab_syscall_sysret:
    sysretq
    .size lab_syscall_entry, . - lab_syscall_entry
    "#,
    user_rsp = const percpu_off::USER_RSP,
    kernel_rsp = const percpu_off::KERNEL_RSP,
    user_ss = const sel::USER_DATA as u64,
    user_cs = const sel::USER_CODE as u64,
    mark = const SYSCALL_MARK,
    dispatch = sym syscall_dispatch,
);

const _: () = assert!(offset_of!(TrapFrame, iret) == 17 * 8);

unsafe extern "C" {
    fn lab_syscall_entry();
}

/// Enables SYSCALL (EFER.SCE) and programs STAR, LSTAR and FMASK.
pub fn init() {
    use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
    use x86_64::registers::rflags::RFlags;
    use x86_64::structures::gdt::SegmentSelector;
    // SAFETY: the selectors follow the GDT order SYSRET needs (kernel code, kernel data, user
    // data, user code); LSTAR points at a complete entry stub.
    unsafe {
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
        Star::write(SegmentSelector(sel::USER_CODE), SegmentSelector(sel::USER_DATA),
                    SegmentSelector(sel::KERNEL_CODE), SegmentSelector(sel::KERNEL_DATA)).unwrap();
        LStar::write(x86_64::VirtAddr::new(lab_syscall_entry as *const () as u64));
        SFMask::write(RFlags::from_bits_truncate(FMASK));
    }
}

/// Runs one system call; the result goes to the frame's RAX.
#[unsafe(no_mangle)]
pub extern "C" fn syscall_dispatch(frame: &mut TrapFrame) {
    let result: i64 = match frame.rax {
        nr::WRITE => crate::user::sys_write(frame.rdi, frame.rsi, frame.rdx),
        nr::GETPID => crate::user::sys_getpid(),
        nr::YIELD => {
            crate::task::schedule();
            0
        }
        nr::EXIT => crate::user::sys_exit(frame.rdi),
        _ => ENOSYS,
    };
    frame.rax = result as u64;
}

/// Contract: the IA32_FMASK value the kernel programs (gdb cannot read MSRs).
#[unsafe(no_mangle)]
#[used]
pub static LAB_FMASK: u64 = FMASK;
