//! Fatal paths: stack overflow into the guard page (#PF that cannot be delivered, so #DF on
//! IST1), and the triple-fault probes, each of which breaks one piece of the interrupt
//! machinery and then triggers the event that needs it.
//!
//! SDM vol. 3A §6.15 "Interrupt 8—Double Fault Exception (#DF)" and Table 6-5 (which pairs
//! of exceptions make a #DF); a fault while delivering #DF shuts the processor down (triple
//! fault). §6.14.5: an IST gives #DF a known-good stack.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::arch::x86_64::gdt::sel;
use crate::arch::x86_64::handlers::InterruptFrame;
use crate::arch::x86_64::hooks;
use crate::arch::x86_64::idt::{self, vector};
use crate::arch::x86_64::{paging, stacks, tss};
use crate::serial_println;

/// What the #DF handler does after reporting: halt (a #DF is an abort), or, for the control
/// experiment, discard the overflowed context and restart the shell on a fresh stack (what a
/// kernel does when it kills the task that overflowed).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AfterDoubleFault {
    Halt = 0,
    Recover = 1,
}

static AFTER_DF: AtomicU8 = AtomicU8::new(AfterDoubleFault::Halt as u8);

/// Recurses until the stack runs into its guard page. Each frame holds a 256-byte buffer so
/// the overflow comes fast; `black_box` keeps the compiler from removing the recursion.
#[unsafe(no_mangle)]
#[inline(never)]
#[allow(unconditional_recursion)]
pub extern "C" fn lab_recurse(depth: u64) -> u64 {
    let mut pad = [0u8; 256];
    pad[0] = depth as u8;
    let pad = core::hint::black_box(pad);
    lab_recurse(depth + 1).wrapping_add(pad[1] as u64)
}

pub fn overflow(after: AfterDoubleFault) {
    AFTER_DF.store(after as u8, Ordering::SeqCst);
    serial_println!("overflow: recursing from rsp={:#x} toward the guard page at {:#x}",
        current_rsp(), stacks::boot_stack_guard());
    core::hint::black_box(lab_recurse(0));
}

fn current_rsp() -> u64 {
    let rsp: u64;
    // SAFETY: reads RSP.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
    rsp
}

/// Registers `on_double_fault` as the double-fault hook (arch `hooks`). Call once at boot,
/// before interrupts are enabled.
pub fn init() {
    hooks::register_double_fault_hook(on_double_fault);
}

/// The double-fault hook, called by the #DF handler with the CPU-pushed frame. Returns
/// normally only to recover.
pub fn on_double_fault(frame: *mut InterruptFrame, error_code: u64) {
    // SAFETY: `frame` points at the frame the CPU pushed on the IST1 stack.
    let f = unsafe { frame.read_volatile() };
    unsafe { crate::drivers::serial::SERIAL.force_unlock() };
    serial_println!(
        "DOUBLE FAULT error_code={error_code} rip={:#x} rsp={:#x} cs={:#x} ss={:#x} rflags={:#x} handler_rsp={:#x} guard={:#x}",
        f.rip, f.rsp, f.cs, f.ss, f.rflags, current_rsp(), stacks::boot_stack_guard()
    );
    if AFTER_DF.load(Ordering::SeqCst) == AfterDoubleFault::Recover as u8 {
        serial_println!("recovering: the overflowed context is discarded; shell restarts on a fresh stack");
        // SAFETY: iretq will load these: a fresh boot stack and the shell's restart point.
        unsafe {
            (&raw mut (*frame).rsp).write_volatile(stacks::boot_stack_top());
            (&raw mut (*frame).rip).write_volatile(crate::shell::lab_shell_restart as *const () as u64);
        }
        return;
    }
    serial_println!("HALTED after double fault");
    crate::halt_forever()
}

pub struct Probe {
    pub name: &'static str,
    pub help: &'static str,
    run: fn(),
}

fn int3() {
    // SAFETY: raises #BP through a (deliberately broken) IDT.
    unsafe { core::arch::asm!("int3") };
}

fn general_protection() {
    // SAFETY: a non-canonical load raises #GP(0); the probe made its delivery fail.
    unsafe { core::arch::asm!("movabs rax, qword ptr [0x8000000000000000]", out("rax") _) };
}

pub const PROBES: &[Probe] = &[
    Probe { name: "df-no-ist", help: "#DF gate without IST, then the stack overflow", run: || {
        idt::edit(vector::DOUBLE_FAULT, |g| g.set_ist(0));
        overflow(AfterDoubleFault::Halt);
    } },
    Probe { name: "idt-limit0", help: "IDTR limit 0, then int3", run: || {
        idt::load_with_limit(0);
        int3();
    } },
    Probe { name: "df-not-present", help: "#DF and #GP gates not present, then a #GP", run: || {
        idt::edit(vector::DOUBLE_FAULT, |g| g.set_present(false));
        idt::edit(vector::GENERAL_PROTECTION, |g| g.set_present(false));
        general_protection();
    } },
    Probe { name: "ist-unmapped", help: "IST1 (the #DF stack) points into unmapped memory, then the stack overflow", run: || {
        // SAFETY: single CPU; IST1 is read only when a #DF is delivered.
        unsafe { (*(&raw mut tss::TSS)).set_ist_slot(tss::ist::DOUBLE_FAULT, paging::NOT_PRESENT + paging::PAGE) };
        overflow(AfterDoubleFault::Halt);
    } },
    Probe { name: "gate-bad-selector", help: "every gate's selector names the data segment, then int3", run: || {
        for v in 0..=255u8 {
            idt::edit(v, |g| if g.present() { g.set_selector(sel::KERNEL_DATA) });
        }
        int3();
    } },
];

pub fn probe(name: &str) -> bool {
    match PROBES.iter().find(|p| p.name == name) {
        Some(p) => {
            serial_println!("probe {}: {}", p.name, p.help);
            (p.run)();
            serial_println!("probe {}: survived (unexpected)", p.name);
            true
        }
        None => false,
    }
}
