//! `trial <name>`: the experiments behind the claims of the tutorial texts (`lab claims
//! --seed`), each measured by the CPU in the kernel and reported as `key=value` lines.
//!
//! Every experiment runs with interrupts off on a private IDT (a copy of the kernel's, with
//! the vectors it needs pointed at the recording handlers below), so it never reaches the
//! kernel's hooks, and restores IDTR, the TSS slots and the MSRs it touched before it prints.
//!
//! The recording handler (`trial_rec_<v>`) stores what the CPU delivered in `TRIAL_RECORD`
//! and jumps back to the `trial_try` that started the experiment (a setjmp/longjmp pair):
//! the first handler the CPU reaches ends the experiment, which is what the nested-delivery
//! pairs measure (did #DF arrive, or the second exception on its own?).

pub mod eoi;
pub mod pairs;
pub mod rings;
pub mod tlb;
pub mod tutorial;

use core::mem::{offset_of, size_of};

use crate::arch::x86_64::gdt::sel;
use crate::arch::x86_64::idt::{self, gate_type, Gate, GateDecl, ENTRIES};
use crate::arch::x86_64::tss;
use crate::serial_println;

/// What the first handler reached saw; `trial_record` (asm) writes it by these field offsets.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Record {
    pub vector: u64,
    /// The CPU's error code; `u64::MAX` for a vector that pushes none.
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
    /// RSP at the handler's first instruction (the lowest slot the CPU wrote).
    pub entry_rsp: u64,
    pub cr2: u64,
    pub gs_base: u64,
}
const _: () = assert!(size_of::<Record>() == 80);
// `trial_record` copies the six words the CPU (and the stub) left above the vector into
// error..ss in one run: they must stay consecutive, in the frame's order.
const _: () = assert!(offset_of!(Record, rip) == offset_of!(Record, error) + 8
    && offset_of!(Record, cs) == offset_of!(Record, error) + 16
    && offset_of!(Record, rflags) == offset_of!(Record, error) + 24
    && offset_of!(Record, rsp) == offset_of!(Record, error) + 32
    && offset_of!(Record, ss) == offset_of!(Record, error) + 40);

pub const NONE: u64 = u64::MAX;

#[unsafe(no_mangle)]
pub static mut TRIAL_RECORD: Record = Record {
    vector: NONE, error: NONE, rip: 0, cs: 0, rflags: 0, rsp: 0, ss: 0, entry_rsp: 0, cr2: 0, gs_base: 0,
};
/// Where `trial_record` resumes: the RSP and RIP `trial_try` saved, and SS (a delivery that
/// switched stacks loaded the null selector into SS; the jump back restores the caller's).
#[unsafe(no_mangle)]
static mut TRIAL_JMP: [u64; 3] = [0; 3];
/// RSP just before a trigger's `int` (rings.rs) or the tutorial stub's `call` (tutorial.rs).
#[unsafe(no_mangle)]
pub static mut TRIAL_RSP_MARK: u64 = 0;

#[repr(C, align(16))]
pub struct PrivateIdt(pub [Gate; ENTRIES]);
const _: () = assert!(size_of::<PrivateIdt>() == 4096);

pub static mut TRIAL_IDT: PrivateIdt = PrivateIdt([Gate::MISSING; ENTRIES]);

/// The IST slot the experiments point at their own stacks (slots 1-3 are the kernel's).
pub const TRIAL_IST: u8 = 6;

core::arch::global_asm!(
    r#"
.macro TRIAL_REC v, pushes_error
.global trial_rec_\v
trial_rec_\v:
.if \pushes_error
    push \v
.else
    push -1
    push \v + 0x100
.endif
    jmp trial_record
.endm
.irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
TRIAL_REC \v, 0
.endr
// The vectors that push an error code: ERROR_CODE_VECTORS below, checked against the arch table.
.irp v, 8,10,11,12,13,14,17,21,29,30
TRIAL_REC \v, 1
.endr

// [rsp] vector (+0x100: the stub pushed the error slot), [rsp+8] error, [rsp+16..] RIP..SS.
.global trial_record
trial_record:
    lea rcx, [rsp + 8]
    mov rax, [rsp]
    bt rax, 8
    jnc 1f
    add rcx, 8
1:  movzx eax, al
    lea rdx, [rip + TRIAL_RECORD]
    mov [rdx + {vector}], rax
    mov [rdx + {entry_rsp}], rcx
    /* error, RIP, CS, RFLAGS, RSP, SS: the six words above the vector, in the Record's order */
.irp i, 0, 1, 2, 3, 4, 5
    mov rax, [rsp + 8 + 8 * \i]
    mov [rdx + {error} + 8 * \i], rax
.endr
    mov rax, cr2
    mov [rdx + {cr2}], rax
    mov r8, rdx
    mov ecx, {gs_base_msr}
    rdmsr
    shl rdx, 32
    or rax, rdx
    mov [r8 + {gs_base}], rax
    mov rsp, [rip + TRIAL_JMP]
    jmp [rip + TRIAL_JMP + 8]

// u64 trial_try(void (*f)(void)): 0 if f returned, 1 if a recording handler ended it.
.global trial_try
trial_try:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    sub rsp, 8
    mov [rip + TRIAL_JMP], rsp
    lea rax, [rip + 2f]
    mov [rip + TRIAL_JMP + 8], rax
    mov [rip + TRIAL_JMP + 16], ss
    call rdi
    xor eax, eax
    jmp 3f
2:  mov ss, [rip + TRIAL_JMP + 16]
    mov eax, 1
3:  add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
"#,
    vector = const offset_of!(Record, vector),
    error = const offset_of!(Record, error),
    entry_rsp = const offset_of!(Record, entry_rsp),
    cr2 = const offset_of!(Record, cr2),
    gs_base = const offset_of!(Record, gs_base),
    gs_base_msr = const rings::IA32_GS_BASE,
);

unsafe extern "C" {
    pub fn trial_try(f: unsafe extern "C" fn()) -> u64;
}

/// The `.irp` list of error-code recorders above, as data: it must be the arch table's set.
const ERROR_CODE_VECTORS: [u8; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];
const _: () = {
    let mut v = 0u8;
    while v < 32 {
        let mut listed = false;
        let mut i = 0;
        while i < ERROR_CODE_VECTORS.len() {
            listed |= ERROR_CODE_VECTORS[i] == v;
            i += 1;
        }
        assert!(listed == crate::arch::x86_64::vectors_with_error_code(v));
        v += 1;
    }
};

/// The recording handler of `vector` (0-31).
pub fn recorder(vector: u8) -> u64 {
    // The handlers come from the asm macro above; each is looked up by its name.
    macro_rules! pick {
        ($($v:literal => $name:ident),* $(,)?) => {{
            unsafe extern "C" { $( fn $name(); )* }
            match vector { $( $v => $name as *const () as u64, )* _ => 0 }
        }};
    }
    pick!(
        0 => trial_rec_0, 1 => trial_rec_1, 2 => trial_rec_2, 3 => trial_rec_3, 4 => trial_rec_4,
        5 => trial_rec_5, 6 => trial_rec_6, 7 => trial_rec_7, 8 => trial_rec_8, 9 => trial_rec_9,
        10 => trial_rec_10, 11 => trial_rec_11, 12 => trial_rec_12, 13 => trial_rec_13,
        14 => trial_rec_14, 15 => trial_rec_15, 16 => trial_rec_16, 17 => trial_rec_17,
        18 => trial_rec_18, 19 => trial_rec_19, 20 => trial_rec_20, 21 => trial_rec_21,
        22 => trial_rec_22, 23 => trial_rec_23, 24 => trial_rec_24, 25 => trial_rec_25,
        26 => trial_rec_26, 27 => trial_rec_27, 28 => trial_rec_28, 29 => trial_rec_29,
        30 => trial_rec_30, 31 => trial_rec_31,
    )
}

pub fn decl(dpl: u8, ist: u8) -> GateDecl {
    GateDecl { present: 1, gate_type: gate_type::INTERRUPT, dpl, ist }
}

/// Fills the private IDT: the kernel's gates, then 0-31 on the recorders (#DF on IST1).
pub fn prepare_idt() {
    // SAFETY: one CPU, interrupts off; the private IDT is not loaded while it is written.
    unsafe {
        let idt = &mut *(&raw mut TRIAL_IDT);
        idt.0 = (*(&raw const idt::IDT)).gates;
        for v in 0..32u8 {
            let ist = if v == idt::vector::DOUBLE_FAULT { tss::ist::DOUBLE_FAULT } else { 0 };
            idt.0[v as usize] = Gate::new(recorder(v), sel::KERNEL_CODE, decl(0, ist));
        }
    }
}

pub fn set_gate(vector: u8, gate: Gate) {
    // SAFETY: as in `prepare_idt`.
    unsafe { (*(&raw mut TRIAL_IDT)).0[vector as usize] = gate };
}

pub fn edit_gate(vector: u8, f: impl FnOnce(&mut Gate)) {
    // SAFETY: as in `prepare_idt`.
    unsafe { f(&mut (*(&raw mut TRIAL_IDT)).0[vector as usize]) };
}

fn load(base: u64) {
    use x86_64::structures::DescriptorTablePointer;
    use x86_64::VirtAddr;
    // SAFETY: both tables are 256 valid (or deliberately broken) gates for the experiment.
    unsafe { x86_64::instructions::tables::lidt(&DescriptorTablePointer { limit: idt::LIMIT, base: VirtAddr::new(base) }) };
}

/// Runs `f` on the private IDT with interrupts off and returns whether a recorder ended it,
/// then the kernel's IDT and the trial IST slot again.
pub fn run(f: unsafe extern "C" fn()) -> bool {
    let was = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    // SAFETY: reset before the run; read after it by the caller.
    unsafe { (*(&raw mut TRIAL_RECORD)).vector = NONE };
    load(&raw const TRIAL_IDT as u64);
    // SAFETY: `f` is one of this module's triggers; the recorders return here.
    let trapped = unsafe { trial_try(f) } != 0;
    load(idt::base());
    set_ist(0);
    if was {
        x86_64::instructions::interrupts::enable();
    }
    trapped
}

/// Loads the private IDT for an experiment that returns from its handlers (eoi.rs).
pub fn load_private() {
    load(&raw const TRIAL_IDT as u64);
}

pub fn load_kernel() {
    load(idt::base());
}

pub fn set_ist(top: u64) {
    // SAFETY: the trial slot is the experiments' own; the CPU reads it only at delivery.
    unsafe { (*(&raw mut tss::TSS)).interrupt_stack_table[TRIAL_IST as usize - 1] = top };
}

pub fn record() -> Record {
    // SAFETY: written by the recorder before `trial_try` returned.
    unsafe { *(&raw const TRIAL_RECORD) }
}

pub fn rsp_mark() -> u64 {
    // SAFETY: written by a trigger before the event.
    unsafe { *(&raw const TRIAL_RSP_MARK) }
}

/// A 16 KiB stack for the trial IST slot.
#[repr(C, align(16))]
pub struct TrialStack(pub [u8; 16384]);
#[unsafe(no_mangle)]
pub static mut TRIAL_STACK: TrialStack = TrialStack([0; 16384]);

pub fn trial_stack_top() -> u64 {
    &raw const TRIAL_STACK as u64 + size_of::<TrialStack>() as u64
}

pub fn hex_or_none(v: u64) -> HexOrNone {
    HexOrNone(v)
}

pub struct HexOrNone(u64);
impl core::fmt::Display for HexOrNone {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        if self.0 == NONE { write!(f, "-1") } else { write!(f, "{:#x}", self.0) }
    }
}

/// `trial <name>`; false for an unknown name.
pub fn execute(name: &str) -> bool {
    match name {
        "pairs" => pairs::run_all(),
        "tlb" => tlb::run(),
        "eoi" => eoi::run(),
        "stacks" => rings::stacks(),
        "swapgs" => rings::swapgs(),
        "tutorial" => tutorial::run(),
        _ => return false,
    }
    serial_println!("trial done name={name}");
    true
}
