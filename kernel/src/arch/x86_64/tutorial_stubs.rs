//! The third handler style, `tutorial`: seed 002's page-fault stub (shared/seeds/), rebuilt
//! with its two properties and used on any vector: fifteen general-purpose registers pushed
//! (RAX last), the stack pointer after them passed as the C function's first argument, then
//! `add rsp, 8` (the error code) and `iretq`. One stub per vector 0-31 (`isr_tut_<v>`) so the
//! function knows the vector; the only other instruction is that `mov esi, <v>`.
//!
//! On a vector that pushes an error code this returns correctly. On one that does not, `add
//! rsp, 8` removes the saved RIP and `iretq` pops CS as RIP: the return faults with #GP at
//! the stub's `iretq`. `kernel/src/trial/tutorial.rs` measures both; `lab fire --style
//! tutorial` runs it on the catalog's error-code scenarios.

use super::idt::Style;

core::arch::global_asm!(
    r#"
.macro LAB_TUT v
.global isr_tut_\v
isr_tut_\v:
.irp r, rbp, r15, r14, r13, r12, r11, r10, r9, r8, rdi, rsi, rdx, rcx, rbx, rax
    push \r
.endr
    mov rdi, rsp
    mov esi, \v
    call lab_tutorial_dispatch
.irp r, rax, rbx, rcx, rdx, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15, rbp
    pop \r
.endr
    add rsp, 8
    iretq
.endm
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
LAB_TUT \v
.endr
.section .rodata
.balign 8
.global lab_tut_table
lab_tut_table:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad isr_tut_\v
.endr
.text
"#
);

/// Registers the stub saves.
pub const SAVED: usize = 15;

unsafe extern "C" {
    static lab_tut_table: [u64; 32];
}

pub fn stub_for(vector: u8) -> Option<u64> {
    // SAFETY: a read-only table emitted by the assembly above.
    (vector < 32).then(|| unsafe { (*(&raw const lab_tut_table))[vector as usize] })
}

/// The frame as the text's function declares its argument: the CPU's five words from offset
/// 0. The stub passes RSP after its fifteen pushes, so `rip` reads the saved RAX: the
/// tutorial's bug, kept in the type so that the DWARF check (`fire.frame-type`) sees it.
#[repr(C)]
pub struct TutorialFrame {
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}
const _: () = assert!(core::mem::size_of::<TutorialFrame>() == 40);

/// What the stub calls, with the text's signature. Unlike the text's function it does not
/// read `regs` as the frame: it finds the real one above the saved registers (and the error
/// code, where the vector has one) and runs the same exception path as the other styles.
#[unsafe(no_mangle)]
extern "C" fn lab_tutorial_dispatch(regs: *const TutorialFrame, vector: u64) {
    let vector = vector as u8;
    let has_error = super::vectors_with_error_code(vector);
    // SAFETY: `regs` is the stub's RSP: SAVED registers, then what the CPU pushed.
    unsafe {
        let above = (regs as *mut u64).add(SAVED);
        let error = has_error.then(|| *above);
        let frame = above.add(has_error as usize) as *mut super::handlers::InterruptFrame;
        super::handlers::exception(vector, frame, error, Style::Tutorial);
    }
}
