//! Hand-written entry stubs: the second handler style.
//!
//! Every stub brings its vector to one frame layout, `TrapFrame` (the kernel's `pt_regs`):
//! vectors without a CPU error code push a dummy 0 first (SDM vol. 3A §6.13: only 8, 10-14,
//! 17, 21, 29 and 30 push one), then the stub pushes the vector number and jumps to
//! `lab_trap_common`, which pushes all fifteen general-purpose registers, passes RSP as
//! `&mut TrapFrame` to `trap_dispatch`, pops them back, drops vector and error code, and
//! `iretq`s. The stack stays 16-byte aligned at the call: the CPU aligned RSP before pushing
//! (§6.14.2) and the frame is 22 quadwords.

use core::mem::{offset_of, size_of};

use super::handlers::InterruptFrame;
use super::idt::Style;

/// The trap frame, lowest address first. Declared once; `lab/x86/frames.py` mirrors it and the
/// asserts below pin every offset the assembly relies on.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Pushed by the stub.
    pub vector: u64,
    /// Pushed by the CPU, or a dummy 0 pushed by the stub.
    pub error_code: u64,
    /// Pushed by the CPU (RIP, CS, RFLAGS, RSP, SS).
    pub iret: InterruptFrame,
}

const _: () = assert!(size_of::<TrapFrame>() == 22 * 8);
const _: () = assert!(offset_of!(TrapFrame, rax) == 14 * 8);
const _: () = assert!(offset_of!(TrapFrame, vector) == 15 * 8);
const _: () = assert!(offset_of!(TrapFrame, error_code) == 16 * 8);
const _: () = assert!(offset_of!(TrapFrame, iret) == 17 * 8);
const _: () = assert!(size_of::<TrapFrame>() % 16 == 0);

/// Index in `lab_stub_table` of the stub for vector 128 (`int 0x80`).
pub const SOFT_INT_SLOT: usize = 32;

/// The assembly that pushes the fifteen general-purpose registers in `TrapFrame` order (RAX
/// first, so R15 ends at the lowest address). The one copy of that order: `lab_trap_common`
/// and the syscall entry (outside `arch`) both build a `TrapFrame` with it.
macro_rules! push_trap_gprs {
    () => {
        "push rax; push rbx; push rcx; push rdx; push rsi; push rdi; push rbp; push r8; push r9;
         push r10; push r11; push r12; push r13; push r14; push r15"
    };
}
/// The inverse of `push_trap_gprs!`: loads the fifteen registers back from the frame.
macro_rules! pop_trap_gprs {
    () => {
        "pop r15; pop r14; pop r13; pop r12; pop r11; pop r10; pop r9; pop r8; pop rbp; pop rdi;
         pop rsi; pop rdx; pop rcx; pop rbx; pop rax"
    };
}
pub(crate) use {pop_trap_gprs, push_trap_gprs};

core::arch::global_asm!(
    r#"
    .macro LAB_STUB vec, pushes_error
        .section .text.isr_stub_\vec, "ax", @progbits
        .global isr_stub_\vec
        .type isr_stub_\vec, @function
    isr_stub_\vec:
        .if \pushes_error == 0
        push 0
        .endif
        push \vec
        jmp lab_trap_common
        .size isr_stub_\vec, . - isr_stub_\vec
        .pushsection .rodata.lab_stub_table, "a"
        .quad isr_stub_\vec
        .popsection
    .endm

    .section .rodata.lab_stub_table, "a"
    .balign 8
    .global lab_stub_table
    .type lab_stub_table, @object
lab_stub_table:
    LAB_STUB 0, 0
    LAB_STUB 1, 0
    LAB_STUB 2, 0
    LAB_STUB 3, 0
    LAB_STUB 4, 0
    LAB_STUB 5, 0
    LAB_STUB 6, 0
    LAB_STUB 7, 0
    LAB_STUB 8, 1
    LAB_STUB 9, 0
    LAB_STUB 10, 1
    LAB_STUB 11, 1
    LAB_STUB 12, 1
    LAB_STUB 13, 1
    LAB_STUB 14, 1
    LAB_STUB 15, 0
    LAB_STUB 16, 0
    LAB_STUB 17, 1
    LAB_STUB 18, 0
    LAB_STUB 19, 0
    LAB_STUB 20, 0
    LAB_STUB 21, 1
    LAB_STUB 22, 0
    LAB_STUB 23, 0
    LAB_STUB 24, 0
    LAB_STUB 25, 0
    LAB_STUB 26, 0
    LAB_STUB 27, 0
    LAB_STUB 28, 0
    LAB_STUB 29, 1
    LAB_STUB 30, 1
    LAB_STUB 31, 0
    LAB_STUB 128, 0
    .section .rodata.lab_stub_table, "a"
    .size lab_stub_table, 33 * 8

    .section .text.lab_trap_common, "ax", @progbits
    .global lab_trap_common
    .type lab_trap_common, @function
lab_trap_common:
"#,
    push_trap_gprs!(),
    r#"
    mov rdi, rsp
    cld
    call {dispatch}
"#,
    pop_trap_gprs!(),
    r#"
    add rsp, 16                     /* vector, error_code */
    iretq
    .size lab_trap_common, . - lab_trap_common
    "#,
    dispatch = sym trap_dispatch,
);

unsafe extern "C" {
    static lab_stub_table: [u64; 33];
}

/// Address of the stub for `vector`, if there is one (0-31 and 128).
pub fn stub_for(vector: u8) -> Option<u64> {
    // SAFETY: a read-only table emitted by the assembly above.
    let table = unsafe { &*(&raw const lab_stub_table) };
    match vector {
        0..=31 => Some(table[vector as usize]),
        128 => Some(table[SOFT_INT_SLOT]),
        _ => None,
    }
}

/// Called by `lab_trap_common` with the frame on the stack; the hooks may edit it before
/// `iretq` (the same exception path as the compiler-ABI handlers, `handlers::exception`).
#[unsafe(no_mangle)]
pub extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    let error = super::vectors_with_error_code(vector).then_some(frame.error_code);
    super::handlers::exception(vector, &raw mut frame.iret, error, Style::Stub);
}
