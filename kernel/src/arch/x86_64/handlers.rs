//! Interrupt and exception handlers (compiler `extern "x86-interrupt"` style).
//!
//! Every handler has an unmangled symbol (`isr_<mnemonic>` for 0-31) so the lab's IDT dump
//! resolves gates to readable names. What an exception, the #DF or a timer tick means to the
//! kernel is decided by the hooks features register (`hooks.rs`).

use core::mem::size_of;

use super::hooks;
use super::idt::{ENTRIES, Style, vector};
use crate::drivers::{lapic, pic};

/// What the CPU pushes on every interrupt in 64-bit mode, lowest address first (SDM vol. 3A
/// §6.14.2, Figure 6-9): SS and RSP are pushed whether or not the privilege level changes. The
/// error code, when the vector has one, sits below RIP and is passed separately.
#[repr(C)]
#[derive(Debug)]
pub struct InterruptFrame {
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(size_of::<InterruptFrame>() == 40);

/// Architectural vector names (SDM Table 6-1); index = vector.
pub const MNEMONICS: [&str; 32] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
    "#GP", "#PF", "RSVD15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "RSVD22", "RSVD23", "RSVD24",
    "RSVD25", "RSVD26", "RSVD27", "#HV", "#VC", "#SX", "RSVD31",
];

fn report(vector: u8, frame: &InterruptFrame, error_code: Option<u64>) {
    let name = MNEMONICS.get(vector as usize).copied().unwrap_or("IRQ");
    crate::serial_println!(
        "EXCEPTION vector={vector} name={name} rip={:#x} cs={:#x} rflags={:#x} rsp={:#x} ss={:#x} error_code={}",
        frame.rip,
        frame.cs,
        frame.rflags,
        frame.rsp,
        frame.ss,
        match error_code {
            Some(c) => c as i64,
            None => -1,
        }
    );
}

/// An exception the kernel does not recover from: report and stop this CPU.
pub fn fatal(vector: u8, frame: &InterruptFrame, error_code: Option<u64>) -> ! {
    // SAFETY: this CPU never returns to whoever held the console lock.
    unsafe { crate::drivers::serial::SERIAL.force_unlock() };
    report(vector, frame, error_code);
    crate::serial_println!("HALTED after unrecoverable exception {vector}");
    crate::halt_forever()
}

/// The exception path of both handler styles: the exception hooks (a running scenario's
/// fix-up), then the fault hooks (a ring-3 fault ends its task); unclaimed, it is fatal.
pub(super) fn exception(vector: u8, frame: *mut InterruptFrame, error_code: Option<u64>, style: Style) {
    if !hooks::exception_claimed(vector, frame, error_code, style)
        && !hooks::fault_claimed(vector, frame, error_code, style)
    {
        // SAFETY: `frame` points at the CPU-pushed frame.
        fatal(vector, unsafe { &*frame }, error_code);
    }
}

/// Compiler-ABI handlers.
///
/// In the x86-interrupt ABI the frame argument lives where the CPU pushed it (it is passed by
/// reference), so a write through its address changes what `iretq` restores: the fix-ups rely
/// on that, through a raw pointer and volatile accesses.
fn dispatch(vector: u8, frame: *mut InterruptFrame, error_code: Option<u64>) {
    exception(vector, frame, error_code, Style::X86Interrupt)
}

macro_rules! exception_handlers {
    ($( $name:ident = $vec:expr, $kind:tt; )*) => {
        $( exception_handlers!(@one $name, $vec, $kind); )*
        fn exception_table(t: &mut [Option<u64>; ENTRIES]) {
            $( t[$vec] = Some($name as *const () as u64); )*
        }
    };
    (@one $name:ident, $vec:expr, plain) => {
        #[unsafe(no_mangle)]
        pub extern "x86-interrupt" fn $name(frame: InterruptFrame) {
            dispatch($vec, &raw const frame as *mut InterruptFrame, None)
        }
    };
    (@one $name:ident, $vec:expr, error) => {
        #[unsafe(no_mangle)]
        pub extern "x86-interrupt" fn $name(frame: InterruptFrame, error_code: u64) {
            dispatch($vec, &raw const frame as *mut InterruptFrame, Some(error_code))
        }
    };
}

// `error` exactly for the vectors that push an error code (SDM Table 6-1): 8, 10-14, 17, 21, 29, 30.
exception_handlers! {
    isr_de = 0, plain;
    isr_db = 1, plain;
    isr_nmi = 2, plain;
    isr_of = 4, plain;
    isr_br = 5, plain;
    isr_ud = 6, plain;
    isr_nm = 7, plain;
    isr_cso = 9, plain;
    isr_ts = 10, error;
    isr_np = 11, error;
    isr_ss = 12, error;
    isr_gp = 13, error;
    isr_pf = 14, error;
    isr_rsv15 = 15, plain;
    isr_mf = 16, plain;
    isr_ac = 17, error;
    isr_mc = 18, plain;
    isr_xm = 19, plain;
    isr_ve = 20, plain;
    isr_cp = 21, error;
    isr_rsv22 = 22, plain;
    isr_rsv23 = 23, plain;
    isr_rsv24 = 24, plain;
    isr_rsv25 = 25, plain;
    isr_rsv26 = 26, plain;
    isr_rsv27 = 27, plain;
    isr_hv = 28, plain;
    isr_vc = 29, error;
    isr_sx = 30, error;
    isr_rsv31 = 31, plain;
}

/// #BP is a trap: the saved RIP already points past `int3`, so returning resumes.
#[unsafe(no_mangle)]
pub extern "x86-interrupt" fn isr_bp(frame: InterruptFrame) {
    let frame_ptr = &raw const frame as *mut InterruptFrame;
    if !hooks::exception_claimed(vector::BREAKPOINT, frame_ptr, None, Style::X86Interrupt) {
        report(vector::BREAKPOINT, &frame, None);
    }
}

/// `int 0x80`: the software-interrupt scenario's gate.
#[unsafe(no_mangle)]
pub extern "x86-interrupt" fn isr_soft_int(frame: InterruptFrame) {
    dispatch(vector::SOFT_INT, &raw const frame as *mut InterruptFrame, None)
}

/// #DF is an abort with error code 0 (SDM §6.15, "Interrupt 8"): the double-fault hook
/// reports, then halts, or (the control experiment) restarts the shell on a fresh stack.
#[unsafe(no_mangle)]
pub extern "x86-interrupt" fn isr_df(frame: InterruptFrame, error_code: u64) {
    match hooks::double_fault_hook() {
        Some(hook) => hook(&raw const frame as *mut InterruptFrame, error_code),
        None => fatal(vector::DOUBLE_FAULT, &frame, Some(error_code)),
    }
}

/// The PIT's IRQ0: the PIT tick hook counts and acknowledges.
#[unsafe(no_mangle)]
pub extern "x86-interrupt" fn isr_timer(frame: InterruptFrame) {
    match hooks::pit_tick_hook() {
        Some(hook) => hook(frame.cs & 3 == 3),
        None => pic::end_of_interrupt(vector::TIMER),
    }
}

/// The local APIC timer: the APIC tick hook counts and acknowledges.
#[unsafe(no_mangle)]
pub extern "x86-interrupt" fn isr_apic_timer(frame: InterruptFrame) {
    match hooks::apic_tick_hook() {
        Some(hook) => hook(frame.cs & 3 == 3),
        None => lapic::end_of_interrupt(),
    }
}

/// A fixed IPI from another CPU: the IPI hook (`smp`) handles and acknowledges it.
#[unsafe(no_mangle)]
pub extern "x86-interrupt" fn isr_ipi(_frame: InterruptFrame) {
    match hooks::ipi_hook() {
        Some(hook) => hook(),
        None => lapic::end_of_interrupt(),
    }
}

/// COM1 receive: wakes the shell from `hlt`; the shell reads the byte itself.
#[unsafe(no_mangle)]
pub extern "x86-interrupt" fn isr_serial(_frame: InterruptFrame) {
    pic::end_of_interrupt(vector::SERIAL);
}

/// A spurious IRQ7/IRQ15 from the 8259 must not be acknowledged with an EOI (the master still
/// needs one for a spurious IRQ15, as the cascade line was real); `pic` handles both cases.
#[unsafe(no_mangle)]
pub extern "x86-interrupt" fn isr_pic_spurious(_frame: InterruptFrame) {
    pic::spurious(vector::PIC1_SPURIOUS);
}

#[unsafe(no_mangle)]
pub extern "x86-interrupt" fn isr_pic2_spurious(_frame: InterruptFrame) {
    pic::spurious(vector::PIC2_SPURIOUS);
}

/// The local APIC's spurious vector: no EOI (SDM vol. 3A §11.9).
#[unsafe(no_mangle)]
pub extern "x86-interrupt" fn isr_apic_spurious(_frame: InterruptFrame) {}

/// Handler address for every vector that has one.
pub fn handler_table() -> [Option<u64>; ENTRIES] {
    let mut t = [None; ENTRIES];
    exception_table(&mut t);
    t[vector::BREAKPOINT as usize] = Some(isr_bp as *const () as u64);
    t[vector::DOUBLE_FAULT as usize] = Some(isr_df as *const () as u64);
    t[vector::TIMER as usize] = Some(isr_timer as *const () as u64);
    t[vector::SERIAL as usize] = Some(isr_serial as *const () as u64);
    t[vector::PIC1_SPURIOUS as usize] = Some(isr_pic_spurious as *const () as u64);
    t[vector::PIC2_SPURIOUS as usize] = Some(isr_pic2_spurious as *const () as u64);
    t[vector::APIC_SPURIOUS as usize] = Some(isr_apic_spurious as *const () as u64);
    t[vector::SOFT_INT as usize] = Some(isr_soft_int as *const () as u64);
    t[vector::APIC_TIMER as usize] = Some(isr_apic_timer as *const () as u64);
    t[vector::IPI as usize] = Some(isr_ipi as *const () as u64);
    t
}
