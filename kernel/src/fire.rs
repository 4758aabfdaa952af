//! Exception scenarios: one harness per exception the kernel can raise, and the fix-ups that
//! let every one of them return with `iretq` so one VM serves them all.
//!
//! Each harness is an `extern "C"` function built from the same five labels (the lab reads
//! them from the ELF; names use `_` where the shell name uses `-`):
//!
//! | label | where |
//! | `lab_fire_<n>` | entry: saves callee-saved registers and RFLAGS, leaves RSP 8 mod 16, `sti` |
//! | `lab_plant_<n>` | a `nop`; the lab stops here and plants sentinels in the registers; then the interrupted RSP/RFLAGS/CS/SS and a plant count go to `LAB_OBSERVER_PLANT` (observer.rs) |
//! | `lab_fault_<n>` | the instruction that raises the exception |
//! | `lab_fault_end_<n>` | the instruction after it (a trap's saved RIP) |
//! | `lab_resume_<n>` | where fault fix-ups return to; restores and returns |
//!
//! Interrupts are enabled (`sti`) in the interrupted context so RFLAGS.IF inside the handler
//! shows the gate type: an interrupt gate clears it, a trap gate keeps it (SDM §6.12.1.3).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::arch::x86_64::handlers::InterruptFrame;
use crate::arch::x86_64::hooks;
use crate::arch::x86_64::idt::{self, Style};
use crate::arch::x86_64::{fpu, paging};
use crate::serial_println;

/// RFLAGS.TF (SDM vol. 1 §3.4.3.3).
const RFLAGS_TF: u64 = 1 << 8;
use crate::arch::x86_64::idt::vector::{NOT_PRESENT_GATE, ZERO_GATE};
/// The default vector of the `int` scenario.
pub const SOFT_INT_VECTOR: u8 = 0x80;

/// Harness label addresses, emitted by `LAB_FIRE_END` (order fixed by the assembly).
#[repr(C)]
pub struct Labels {
    pub entry: u64,
    pub plant: u64,
    pub fault: u64,
    pub fault_end: u64,
    pub resume: u64,
}
const _: () = assert!(core::mem::size_of::<Labels>() == 40);

pub struct Scenario {
    pub name: &'static str,
    /// The vector the manual says this raises (`int` uses the vector given on the command).
    pub vector: u8,
    pub help: &'static str,
    labels: &'static Labels,
    prepare: fn(),
}

macro_rules! harness_asm {
    ($($body:tt)*) => { core::arch::global_asm!(
        r#"
        .macro LAB_FIRE_BEGIN name
            .section .text.lab_fire_\name, "ax", @progbits
            .global lab_fire_\name
            .type lab_fire_\name, @function
        lab_fire_\name:
            push rbp
            mov rbp, rsp
            push rbx
            push r12
            push r13
            push r14
            push r15
            pushfq
            sub rsp, 8              /* RSP = 8 mod 16 at the fault: shows the CPU's alignment */
            sti
        .endm
        .macro LAB_PLANT name
            .global lab_plant_\name
        lab_plant_\name:
            nop
            /* the interrupted context, for the in-guest observer (observer.rs) */
            mov qword ptr [rip + LAB_OBSERVER_PLANT], rsp
            pushfq
            pop qword ptr [rip + LAB_OBSERVER_PLANT + 8]
            mov word ptr [rip + LAB_OBSERVER_PLANT + 16], cs
            mov word ptr [rip + LAB_OBSERVER_PLANT + 24], ss
            push rax                /* plant count + 1, leaving RAX and the flags alone */
            mov rax, qword ptr [rip + LAB_OBSERVER_PLANT + 32]
            lea rax, [rax + 1]
            mov qword ptr [rip + LAB_OBSERVER_PLANT + 32], rax
            pop rax
        .endm
        .macro LAB_FAULT name
            .global lab_fault_\name
        lab_fault_\name:
        .endm
        .macro LAB_FAULT_END name
            .global lab_fault_end_\name
        lab_fault_end_\name:
        .endm
        .macro LAB_FIRE_END name
            .global lab_resume_\name
        lab_resume_\name:
            add rsp, 8
            popfq
            pop r15
            pop r14
            pop r13
            pop r12
            pop rbx
            pop rbp
            ret
            .size lab_fire_\name, . - lab_fire_\name
            .section .rodata.lab_labels_\name, "a"
            .balign 8
            .global lab_labels_\name
            .type lab_labels_\name, @object
        lab_labels_\name:
            .quad lab_fire_\name, lab_plant_\name, lab_fault_\name, lab_fault_end_\name, lab_resume_\name
            .size lab_labels_\name, 40
        .endm
        "#,
        $($body)*
    ); };
}

harness_asm!(
    r#"
    .section .rodata.lab_fire_data, "a"
    .balign 8
    .global lab_const_zero
lab_const_zero:         .quad 0
    .global lab_nx_target
lab_nx_target:          .quad {nx}
    .global lab_int_target
lab_int_target:         .quad 0
lab_one_f32:            .long 0x3f800000
lab_mxcsr_zm_unmasked:  .long {mxcsr_zm}
lab_fcw_zm_unmasked:    .word 0x037b
    .global lab_sel_not_present
lab_sel_not_present:    .word {np_sel}

    .section .data.lab_nmi_seen, "aw"
    .global lab_nmi_seen
lab_nmi_seen:           .byte 0
    .global lab_nmi_armed
lab_nmi_armed:          .byte 0

    LAB_FIRE_BEGIN de
    LAB_PLANT de
    LAB_FAULT de
    div qword ptr [rip + lab_const_zero]
    LAB_FAULT_END de
    LAB_FIRE_END de

    LAB_FIRE_BEGIN db_int1
    LAB_PLANT db_int1
    LAB_FAULT db_int1
    .byte 0xf1                      /* INT1 (ICEBP) */
    LAB_FAULT_END db_int1
    LAB_FIRE_END db_int1

    LAB_FIRE_BEGIN db_tf
    LAB_PLANT db_tf
    pushfq
    or qword ptr [rsp], {tf}
    popfq                           /* TF takes effect after the next instruction */
    LAB_FAULT db_tf
    nop
    LAB_FAULT_END db_tf
    LAB_FIRE_END db_tf

    /* Spin, do not hlt: an NMI that lands before a `hlt` would set the flag and then the
       CPU would halt with nothing left to wake it (a lost wakeup; STI;HLT atomicity covers
       maskable interrupts only). */
    /* Maskable interrupts off while it spins (LAB_FIRE_END's popfq restores IF): otherwise
       the NMI can land in a timer handler, outside the loop, and nobody claims it. */
    /* `lab_nmi_armed`, the last store before the loop (no register or flag changes): whoever
       sends the NMI (`on <cpu> fire nmi`: the boot CPU, smp/ipi.rs fire_on) waits for it, so
       the NMI lands in the loop, after the plant count. */
    LAB_FIRE_BEGIN nmi
    cli
    LAB_PLANT nmi
    mov byte ptr [rip + lab_nmi_armed], 1
    LAB_FAULT nmi
1:  pause
    LAB_FAULT_END nmi
    cmp byte ptr [rip + lab_nmi_seen], 0
    je 1b
    LAB_FIRE_END nmi

    LAB_FIRE_BEGIN bp
    LAB_PLANT bp
    LAB_FAULT bp
    int3
    LAB_FAULT_END bp
    LAB_FIRE_END bp

    LAB_FIRE_BEGIN ud
    LAB_PLANT ud
    LAB_FAULT ud
    ud2
    LAB_FAULT_END ud
    LAB_FIRE_END ud

    LAB_FIRE_BEGIN nm
    LAB_PLANT nm
    LAB_FAULT nm
    fnop                            /* CR0.TS=1: any x87 instruction raises #NM */
    LAB_FAULT_END nm
    LAB_FIRE_END nm

    LAB_FIRE_BEGIN np
    LAB_PLANT np
    LAB_FAULT np
    int {absent}                    /* a valid interrupt gate with P=0 */
    LAB_FAULT_END np
    LAB_FIRE_END np

    LAB_FIRE_BEGIN gp_nogate
    LAB_PLANT gp_nogate
    LAB_FAULT gp_nogate
    int {zero_gate}                 /* an all-zero IDT entry: type 0 is invalid */
    LAB_FAULT_END gp_nogate
    LAB_FIRE_END gp_nogate

    LAB_FIRE_BEGIN np_seg
    LAB_PLANT np_seg
    LAB_FAULT np_seg
    mov ds, word ptr [rip + lab_sel_not_present]
    LAB_FAULT_END np_seg
    LAB_FIRE_END np_seg

    LAB_FIRE_BEGIN ss
    LAB_PLANT ss
    LAB_FAULT ss
    mov ss, word ptr [rip + lab_sel_not_present]
    LAB_FAULT_END ss
    LAB_FIRE_END ss

    LAB_FIRE_BEGIN ss_noncanonical
    movabs rbp, 0x8000000000000000  /* operand: the lab leaves RBP as it is */
    LAB_PLANT ss_noncanonical
    LAB_FAULT ss_noncanonical
    mov rax, qword ptr [rbp]
    LAB_FAULT_END ss_noncanonical
    LAB_FIRE_END ss_noncanonical

    LAB_FIRE_BEGIN gp_noncanonical
    LAB_PLANT gp_noncanonical
    LAB_FAULT gp_noncanonical
    movabs rax, qword ptr [0x8000000000000000]
    LAB_FAULT_END gp_noncanonical
    LAB_FIRE_END gp_noncanonical

    LAB_FIRE_BEGIN gp_msr
    mov ecx, 0x4c414230             /* operand: an MSR that does not exist */
    LAB_PLANT gp_msr
    LAB_FAULT gp_msr
    rdmsr
    LAB_FAULT_END gp_msr
    LAB_FIRE_END gp_msr

    LAB_FIRE_BEGIN pf_read
    LAB_PLANT pf_read
    LAB_FAULT pf_read
    mov rax, qword ptr [{pf_np}]
    LAB_FAULT_END pf_read
    LAB_FIRE_END pf_read

    LAB_FIRE_BEGIN pf_write
    LAB_PLANT pf_write
    LAB_FAULT pf_write
    mov qword ptr [{pf_ro}], rax
    LAB_FAULT_END pf_write
    LAB_FIRE_END pf_write

    LAB_FIRE_BEGIN pf_nx
    LAB_PLANT pf_nx
    LAB_FAULT pf_nx
    jmp qword ptr [rip + lab_nx_target]  /* the fetch at the target faults */
    LAB_FAULT_END pf_nx
    LAB_FIRE_END pf_nx

    LAB_FIRE_BEGIN pf_rsvd
    LAB_PLANT pf_rsvd
    LAB_FAULT pf_rsvd
    mov rax, qword ptr [{pf_rsvd}]
    LAB_FAULT_END pf_rsvd
    LAB_FIRE_END pf_rsvd

    LAB_FIRE_BEGIN mf
    fninit
    fldcw word ptr [rip + lab_fcw_zm_unmasked]
    fld1
    fldz
    fdivp st(1), st                 /* 1/0 with ZE unmasked: pending until the next wait */
    LAB_PLANT mf
    LAB_FAULT mf
    fwait
    LAB_FAULT_END mf
    LAB_FIRE_END mf

    LAB_FIRE_BEGIN xm
    ldmxcsr dword ptr [rip + lab_mxcsr_zm_unmasked]
    movss xmm0, dword ptr [rip + lab_one_f32]
    xorps xmm1, xmm1
    LAB_PLANT xm
    LAB_FAULT xm
    divss xmm0, xmm1
    LAB_FAULT_END xm
    LAB_FIRE_END xm

    LAB_FIRE_BEGIN int
    LAB_PLANT int
    LAB_FAULT int
    jmp qword ptr [rip + lab_int_target]  /* into lab_int_table[N]: `int N; jmp resume` */
    LAB_FAULT_END int
    LAB_FIRE_END int

    .section .text.lab_int_table, "ax", @progbits
    .balign 8
    .global lab_int_table
    .type lab_int_table, @function
lab_int_table:
    .set lab_n, 0
    .rept 256
    .byte 0xcd, lab_n               /* int imm8 (two bytes, also for 3) */
    .byte 0xe9                      /* jmp rel32 */
    .long lab_resume_int - (. + 4)
    .byte 0x90
    .set lab_n, lab_n + 1
    .endr
    .size lab_int_table, 256 * 8
    "#,
    nx = const paging::NO_EXECUTE,
    pf_np = const paging::NOT_PRESENT,
    pf_ro = const paging::READ_ONLY,
    pf_rsvd = const paging::RESERVED_BIT,
    tf = const RFLAGS_TF,
    absent = const NOT_PRESENT_GATE,
    zero_gate = const ZERO_GATE,
    np_sel = const crate::arch::x86_64::gdt::sel::NOT_PRESENT_DATA,
    mxcsr_zm = const fpu::MXCSR_DEFAULT & !(1 << 9),
);

/// Size of one `lab_int_table` entry.
pub const INT_TABLE_STRIDE: u64 = 8;

macro_rules! scenarios {
    ($( $sym:ident, $name:literal, $vector:expr, $prepare:expr, $help:literal; )*) => {
        unsafe extern "C" {
            $( static $sym: Labels; )*
            static lab_int_table: u8;
            static mut lab_int_target: u64;
            static mut lab_nmi_seen: u8;
            static mut lab_nmi_armed: u8;
        }
        pub static SCENARIOS: &[Scenario] = &[
            $( Scenario { name: $name, vector: $vector, help: $help,
                          labels: unsafe { &$sym }, prepare: $prepare }, )*
        ];
    };
}

fn nothing() {}

scenarios! {
    lab_labels_de, "de", 0, nothing, "div by zero";
    lab_labels_db_int1, "db-int1", 1, nothing, "INT1 (ICEBP)";
    lab_labels_db_tf, "db-tf", 1, nothing, "single step: RFLAGS.TF";
    lab_labels_nmi, "nmi", 2, nothing, "spin until an NMI arrives (lab: QMP inject-nmi; on an AP: an NMI IPI)";
    lab_labels_bp, "bp", 3, nothing, "int3";
    lab_labels_ud, "ud", 6, nothing, "ud2";
    lab_labels_nm, "nm", 7, fpu::set_task_switched, "CR0.TS=1, then fnop";
    lab_labels_np, "np", 11, nothing, "int 0x41: interrupt gate with P=0";
    lab_labels_gp_nogate, "gp-nogate", 13, nothing, "int 0x42: all-zero IDT entry (invalid type)";
    lab_labels_np_seg, "np-seg", 11, nothing, "mov ds, not-present selector";
    lab_labels_ss, "ss", 12, nothing, "mov ss, not-present selector";
    lab_labels_ss_noncanonical, "ss-noncanonical", 12, nothing, "mov rax, [rbp], RBP non-canonical";
    lab_labels_gp_noncanonical, "gp-noncanonical", 13, nothing, "mov rax, [non-canonical]";
    lab_labels_gp_msr, "gp-msr", 13, nothing, "rdmsr of a missing MSR";
    lab_labels_pf_read, "pf-read", 14, nothing, "read a not-present page";
    lab_labels_pf_write, "pf-write", 14, nothing, "write a read-only page";
    lab_labels_pf_nx, "pf-nx", 14, nothing, "jump to a no-execute page";
    lab_labels_pf_rsvd, "pf-rsvd", 14, nothing, "read through a PTE with a reserved bit";
    lab_labels_mf, "mf", 16, nothing, "x87 1/0 unmasked, then fwait";
    lab_labels_xm, "xm", 19, nothing, "SSE 1/0 unmasked (divss)";
    lab_labels_int, "int", SOFT_INT_VECTOR, nothing, "int N (default 0x80)";
}

/// The scenario in progress (index + 1; 0 = none) and what the handler saw.
static ACTIVE: AtomicU8 = AtomicU8::new(0);
static SEEN_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
static SEEN_ERROR: AtomicU64 = AtomicU64::new(u64::MAX);
static SEEN_RIP: AtomicU64 = AtomicU64::new(0);
static SEEN_STYLE: AtomicU8 = AtomicU8::new(0);

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// Whether the `nmi` harness is in its wait loop (it sets this once armed; the sender clears
/// it before the harness can run).
pub fn nmi_armed() -> bool {
    // SAFETY: a byte the harness writes; read volatile, as another CPU writes it.
    unsafe { (&raw const lab_nmi_armed).read_volatile() != 0 }
}

/// Clears `nmi_armed`, before the harness that sets it is started.
pub fn disarm_nmi() {
    // SAFETY: as in `nmi_armed`; no harness runs yet.
    unsafe { (&raw mut lab_nmi_armed).write_volatile(0) };
    core::sync::atomic::fence(Ordering::SeqCst);
}

/// Runs one scenario: sets the handler style of its vector, fires, reports.
pub fn fire(s: &'static Scenario, style: Style, vector: u8) {
    let index = SCENARIOS.iter().position(|x| core::ptr::eq(x, s)).unwrap();
    idt::set_style(vector, style);
    if s.name == "int" {
        // SAFETY: written before the harness reads it; single CPU.
        unsafe {
            lab_int_target = &raw const lab_int_table as u64 + vector as u64 * INT_TABLE_STRIDE;
        }
    }
    // SAFETY: reset before the harness runs; the NMI handler sets it.
    unsafe { (&raw mut lab_nmi_seen).write_volatile(0) };
    SEEN_VECTOR.store(u64::MAX, Ordering::SeqCst);
    SEEN_ERROR.store(u64::MAX, Ordering::SeqCst);
    SEEN_RIP.store(0, Ordering::SeqCst);
    ACTIVE.store(index as u8 + 1, Ordering::SeqCst);
    (s.prepare)();
    // SAFETY: the harness saves and restores everything the caller relies on.
    let run: extern "C" fn() = unsafe { core::mem::transmute(s.labels.entry as usize) };
    run();
    ACTIVE.store(0, Ordering::SeqCst);
    let seen = SEEN_VECTOR.load(Ordering::SeqCst);
    let error = SEEN_ERROR.load(Ordering::SeqCst);
    serial_println!(
        "fired name={} style={} expected_vector={} vector={} error_code={} rip={:#x} handler_style={}",
        s.name,
        style.name(),
        vector,
        if seen == u64::MAX { -1 } else { seen as i64 },
        if error == u64::MAX { -1 } else { error as i64 },
        SEEN_RIP.load(Ordering::SeqCst),
        match SEEN_STYLE.load(Ordering::SeqCst) { 1 => "stub", 2 => "tutorial", _ => "x86-interrupt" },
    );
}

fn in_harness(s: &Scenario, rip: u64) -> bool {
    (s.labels.entry..=s.labels.resume).contains(&rip)
        || (s.name == "pf-nx" && rip == paging::NO_EXECUTE)
        || (s.name == "int" && {
            let table = &raw const lab_int_table as u64;
            (table..table + 256 * INT_TABLE_STRIDE).contains(&rip)
        })
}

/// Registers `on_exception` as an exception hook (arch `hooks`). Call once at boot, before
/// interrupts are enabled.
pub fn init() {
    hooks::register_exception_hook(on_exception);
}

/// The exception hook, called by every exception handler of both styles. If a scenario is
/// running and the exception came from its harness, records it, applies the fix-up for the
/// vector that actually arrived, and returns true (the handler then `iretq`s). Otherwise
/// returns false: the exception is unexpected.
pub fn on_exception(vector: u8, frame: *mut InterruptFrame, error: Option<u64>, style: Style) -> bool {
    lab_on_exception(vector as u64, frame, error.unwrap_or(NO_ERROR_CODE), style as u64)
}

/// `error` value meaning "the CPU pushed no error code".
pub const NO_ERROR_CODE: u64 = u64::MAX;

/// The C-ABI core of `on_exception`, unmangled so a debugger can stop on it and read its
/// arguments: RDI = vector, RSI = address of the CPU-pushed RIP/CS/RFLAGS/RSP/SS frame (inside
/// the `TrapFrame` for the stub style), RDX = error code or `NO_ERROR_CODE`, RCX = style
/// (0 = x86-interrupt, 1 = stub, 2 = tutorial). Part of the contract (kernel/CONTRACT.md).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lab_on_exception(vector: u64, frame: *mut InterruptFrame, error: u64, style: u64) -> bool {
    let vector = vector as u8;
    let error = (error != NO_ERROR_CODE).then_some(error);
    let style = match style { 1 => Style::Stub, 2 => Style::Tutorial, _ => Style::X86Interrupt };
    let active = ACTIVE.load(Ordering::SeqCst);
    if active == 0 {
        return false;
    }
    let s = &SCENARIOS[active as usize - 1];
    // SAFETY: `frame` is the CPU-pushed frame on this handler's stack; volatile because the
    // compiler does not expect an x86-interrupt frame to be written.
    let (rip, rflags) = unsafe { ((&raw const (*frame).rip).read_volatile(), (&raw const (*frame).rflags).read_volatile()) };
    if !in_harness(s, rip) {
        return false;
    }
    SEEN_VECTOR.store(vector as u64, Ordering::SeqCst);
    SEEN_ERROR.store(error.unwrap_or(u64::MAX), Ordering::SeqCst);
    SEEN_RIP.store(rip, Ordering::SeqCst);
    SEEN_STYLE.store(style as u8, Ordering::SeqCst);
    let resume = s.labels.resume;
    let set_rip = |v: u64| unsafe { (&raw mut (*frame).rip).write_volatile(v) };
    match vector {
        // Traps: the saved RIP is already the next instruction.
        1 => unsafe { (&raw mut (*frame).rflags).write_volatile(rflags & !RFLAGS_TF) },
        2 => unsafe { (&raw mut lab_nmi_seen).write_volatile(1) },
        3 | 4 => {}
        // #NM: make the unit available and run the instruction again.
        7 => fpu::clear_task_switched(),
        16 => {
            fpu::reset_x87();
            set_rip(resume);
        }
        19 => {
            fpu::reset_sse();
            set_rip(resume);
        }
        // Faults: skip the faulting instruction.
        _ => set_rip(resume),
    }
    true
}
