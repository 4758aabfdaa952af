//! `trial tutorial`: the handler style of one tutorial text (seed 002), rebuilt with its two
//! properties and nothing else: the stub saves fifteen general-purpose registers (RAX pushed
//! last), passes the stack pointer after them as the C-ABI function's first argument, which
//! reads it as the CPU's frame (RIP, CS, RFLAGS, RSP, SS), and returns with `add rsp, 8` (the
//! error code) and `iretq`.
//!
//! Run twice: on #PF (vector 14, with an error code; the function maps the page so the retry
//! succeeds) and on #UD (vector 6, no error code; `add rsp, 8` then removes the saved RIP and
//! iretq pops a frame shifted by one slot, which the recorder of the next fault catches).
//! The stub also stores RSP at its `call` in `TRIAL_RSP_MARK`, for the alignment at the
//! function's entry (System V: RSP+8 is a multiple of 16 there, i.e. RSP at the call is).
//!
//! One line each: `trial tutorial vector=… frame_arg=… read_rip=… … call_rsp=… returned=…`.
//!
//! The `tutorial` handler style (`arch/x86_64/tutorial_stubs.rs`, `lab fire --style tutorial`)
//! is the same stub wired to the kernel's exception path; this twin is instrumented instead
//! (RSP at the call, what the text's function reads) and runs on the trial's private IDT.

use crate::arch::x86_64::gdt::sel;
use crate::arch::x86_64::idt::Gate;
use crate::arch::x86_64::paging::{self, pte};
use crate::serial_println;

use super::tlb::{invlpg, pte_of};
use super::{decl, hex_or_none, prepare_idt, record, rsp_mark, set_gate, NONE};

/// Registers the stub saves, in push order (the last, RAX, is at the lowest address).
pub const SAVED: usize = 15;
const PAGE_VA: u64 = paging::TEST_BASE + 9 * paging::PAGE;
const SENT_RAX: u64 = 0x5EED_0000_0000_00AA;
const SENT_RBX: u64 = 0x5EED_0000_0000_00BB;
const SENT_RCX: u64 = 0x5EED_0000_0000_00CC;
const SENT_RDX: u64 = 0x5EED_0000_0000_00DD;
const SENT_RSI: u64 = 0x5EED_0000_0000_005E;

/// The frame as the text's function declares it.
#[repr(C)]
#[derive(Clone, Copy)]
struct TextFrame {
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}
const _: () = assert!(core::mem::size_of::<TextFrame>() == 40);

#[repr(C)]
struct Seen {
    arg: u64,
    read: [u64; 5],
    /// The stack slots just above the saved registers: the CPU's frame (error code first
    /// where the vector pushes one).
    above: [u64; 2],
    calls: u64,
}
static mut SEEN: Seen = Seen { arg: 0, read: [0; 5], above: [0; 2], calls: 0 };
#[unsafe(no_mangle)]
static mut TRIAL_TUT_AFTER: [u64; 2] = [0; 2];

#[repr(C, align(4096))]
struct Frame([u8; 4096]);
static mut TUT_FRAME: Frame = Frame([0; 4096]);

core::arch::global_asm!(
    r#"
.global trial_tut_stub, trial_tut_iretq
trial_tut_stub:
.irp r, rbp, r15, r14, r13, r12, r11, r10, r9, r8, rdi, rsi, rdx, rcx, rbx, rax
    push \r
.endr
    mov [rip + TRIAL_RSP_MARK], rsp
    mov rdi, rsp
    call trial_tut_function
.irp r, rax, rbx, rcx, rdx, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15, rbp
    pop \r
.endr
    add rsp, 8
trial_tut_iretq:
    iretq

.macro SENTINELS
    mov rax, {rax}
    mov rbx, {rbx}
    mov rcx, {rcx}
    mov rdx, {rdx}
    mov rsi, {rsi}
.endm
.global trial_tut_raise_pf, trial_tut_at_pf
trial_tut_raise_pf:
    push rbx
    SENTINELS
    mov r8, {page}
trial_tut_at_pf:
    mov r8, [r8]
    mov [rip + TRIAL_TUT_AFTER], rax
    mov [rip + TRIAL_TUT_AFTER + 8], rbx
    pop rbx
    ret
.global trial_tut_raise_ud, trial_tut_at_ud
trial_tut_raise_ud:
    SENTINELS
trial_tut_at_ud:
    ud2
    mov [rip + TRIAL_TUT_AFTER], rax
    mov [rip + TRIAL_TUT_AFTER + 8], rbx
    ret
"#,
    rax = const SENT_RAX,
    rbx = const SENT_RBX,
    rcx = const SENT_RCX,
    rdx = const SENT_RDX,
    rsi = const SENT_RSI,
    page = const PAGE_VA,
);

unsafe extern "C" {
    fn trial_tut_stub();
    fn trial_tut_iretq();
    fn trial_tut_raise_pf();
    fn trial_tut_at_pf();
    fn trial_tut_raise_ud();
    fn trial_tut_at_ud();
}

/// The function the stub calls: reads its argument as the text does, then (for #PF) maps
/// the page so that the faulting instruction succeeds when retried.
#[unsafe(no_mangle)]
extern "C" fn trial_tut_function(frame: *const TextFrame) {
    // SAFETY: `frame` is the stub's RSP: 15 saved registers, then the CPU's frame.
    unsafe {
        let f = *frame;
        let s = &mut *(&raw mut SEEN);
        s.arg = frame as u64;
        s.read = [f.rip, f.cs, f.rflags, f.rsp, f.ss];
        let above = (frame as *const u64).add(SAVED);
        s.above = [*above, *above.add(1)];
        s.calls += 1;
        pte_of(PAGE_VA).write_volatile(&raw const TUT_FRAME as u64 | pte::PRESENT | pte::WRITABLE);
        invlpg(PAGE_VA);
    }
}

fn once(vector: u8, raise: unsafe extern "C" fn(), at: unsafe extern "C" fn()) {
    prepare_idt();
    set_gate(vector, Gate::new(trial_tut_stub as *const () as u64, sel::KERNEL_CODE, decl(0, 0)));
    // SAFETY: the trial's own page and records.
    unsafe {
        pte_of(PAGE_VA).write_volatile(0);
        invlpg(PAGE_VA);
        *(&raw mut SEEN) = Seen { arg: 0, read: [0; 5], above: [0; 2], calls: 0 };
        *(&raw mut TRIAL_TUT_AFTER) = [0; 2];
    }
    let trapped = super::run(raise);
    let r = if trapped { record() } else { super::Record { vector: NONE, ..record() } };
    // SAFETY: written by the function and the trigger; the page is unmapped again.
    let (s, after) = unsafe {
        pte_of(PAGE_VA).write_volatile(0);
        invlpg(PAGE_VA);
        (&*(&raw const SEEN), *(&raw const TRIAL_TUT_AFTER))
    };
    serial_println!(
        "trial tutorial vector={vector} calls={} frame_arg={:#x} read_rip={:#x} read_cs={:#x} read_rflags={:#x} \
         read_rsp={:#x} read_ss={:#x} slot15={:#x} slot16={:#x} saved_rax={SENT_RAX:#x} saved_rbx={SENT_RBX:#x} \
         call_rsp={:#x} fault_at={:#x} returned={} rax_after={:#x} rbx_after={:#x} then_vector={} then_error={} \
         then_rip={:#x} iretq_at={:#x}",
        s.calls, s.arg, s.read[0], s.read[1], s.read[2], s.read[3], s.read[4], s.above[0], s.above[1],
        rsp_mark(), at as *const () as u64, (!trapped) as u8, after[0], after[1], hex_or_none(r.vector),
        hex_or_none(r.error), r.rip, trial_tut_iretq as *const () as u64,
    );
}

pub fn run() {
    once(14, trial_tut_raise_pf, trial_tut_at_pf);
    once(6, trial_tut_raise_ud, trial_tut_at_ud);
}
