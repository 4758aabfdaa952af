//! `trial eoi`: a local APIC whose handlers forget the EOI (SDM vol. 3A §11.8.3.1, "Task and
//! Processor Priorities"; §11.8.4, "Interrupt Acceptance for Fixed Interrupts"; §11.8.5, EOI).
//!
//! The APIC delivers a fixed interrupt only if its priority class (vector bits 7:4) is above
//! the processor priority, which is the class of the highest vector in service (ISR). Four
//! self-IPIs on handlers that never write EOI: `MID` first (class 5 in service), then `LOW`
//! (class 4), `SAME` (class 5) and `HIGH` (class 6) together; then one EOI at a time. After
//! each step the vectors that arrived are printed; the ISR and IRR bits after the missing EOI
//! too. One line: `trial eoi step1=… step2=… … in_service=… pending=…` (vectors in hex,
//! `-` for none), then the EOI count it took to drain.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::x86_64::gdt::sel;
use crate::arch::x86_64::idt::Gate;
use crate::drivers::lapic::{self, read, write, ICR_HIGH, ICR_LOW};
use crate::serial_println;

use super::{decl, load_kernel, load_private, prepare_idt, set_gate};

pub const LOW: u8 = 0x48;
pub const MID: u8 = 0x52;
pub const SAME: u8 = 0x58;
pub const HIGH: u8 = 0x62;

// Local APIC register offsets (SDM Table 11-1) beyond `drivers::lapic`'s; EOI is
// lapic::end_of_interrupt.
const PPR: usize = 0xA0;
const ISR: usize = 0x100;
const IRR: usize = 0x200;
/// ICR: destination shorthand "self" (bits 19:18 = 01), level assert (bit 14), fixed delivery.
const ICR_SELF: u32 = 0b01 << 18 | 1 << 14;
const ICR_PENDING: u32 = 1 << 12;
/// Iterations of the spin with IF=1 in which pending interrupts may arrive.
const WINDOW: u32 = 200_000;

static ARRIVED: [core::sync::atomic::AtomicU8; 16] = [const { core::sync::atomic::AtomicU8::new(0) }; 16];
static COUNT: AtomicUsize = AtomicUsize::new(0);

#[unsafe(no_mangle)]
extern "C" fn trial_eoi_arrived(vector: u64) {
    let n = COUNT.fetch_add(1, Ordering::SeqCst);
    if n < ARRIVED.len() {
        ARRIVED[n].store(vector as u8, Ordering::SeqCst);
    }
}

core::arch::global_asm!(
    r#"
.macro TRIAL_IRQ v
.global trial_irq_\v
trial_irq_\v:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    mov edi, \v
    call trial_eoi_arrived
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq
.endm
TRIAL_IRQ 0x48
TRIAL_IRQ 0x52
TRIAL_IRQ 0x58
TRIAL_IRQ 0x62
"#
);

unsafe extern "C" {
    fn trial_irq_0x48();
    fn trial_irq_0x52();
    fn trial_irq_0x58();
    fn trial_irq_0x62();
}

fn self_ipi(vector: u8) {
    write(ICR_HIGH, 0);
    write(ICR_LOW, ICR_SELF | vector as u32);
    for _ in 0..WINDOW {
        if read(ICR_LOW) & ICR_PENDING == 0 {
            break;
        }
    }
}

fn bit(base: usize, vector: u8) -> bool {
    read(base + 0x10 * (vector as usize / 32)) & (1 << (vector % 32)) != 0
}

/// Lets pending interrupts in for a bounded window, then returns those that arrived.
fn window() -> (usize, usize) {
    let start = COUNT.load(Ordering::SeqCst);
    x86_64::instructions::interrupts::enable();
    for _ in 0..WINDOW {
        core::hint::spin_loop();
    }
    x86_64::instructions::interrupts::disable();
    (start, COUNT.load(Ordering::SeqCst).min(ARRIVED.len()))
}

struct Vectors((usize, usize));
impl core::fmt::Display for Vectors {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        let (a, b) = self.0;
        if a >= b {
            return write!(f, "-");
        }
        for i in a..b {
            write!(f, "{}{:#x}", if i > a { "," } else { "" }, ARRIVED[i].load(Ordering::SeqCst))?;
        }
        Ok(())
    }
}

struct Bits(usize);
impl core::fmt::Display for Bits {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        let set: [bool; 4] = [LOW, MID, SAME, HIGH].map(|v| bit(self.0, v));
        let mut first = true;
        for (v, s) in [LOW, MID, SAME, HIGH].iter().zip(set) {
            if s {
                write!(f, "{}{:#x}", if first { "" } else { "," }, v)?;
                first = false;
            }
        }
        if first { write!(f, "-") } else { Ok(()) }
    }
}

pub fn run() {
    let was = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    COUNT.store(0, Ordering::SeqCst);
    prepare_idt();
    for (v, h) in [(LOW, trial_irq_0x48 as unsafe extern "C" fn()), (MID, trial_irq_0x52),
                   (SAME, trial_irq_0x58), (HIGH, trial_irq_0x62)] {
        set_gate(v, Gate::new(h as *const () as u64, sel::KERNEL_CODE, decl(0, 0)));
    }
    load_private();
    self_ipi(MID);
    let s1 = window();
    self_ipi(LOW);
    self_ipi(SAME);
    self_ipi(HIGH);
    let s2 = window();
    let (isr, irr, ppr) = (Bits(ISR), Bits(IRR), read(PPR));
    // Print the snapshots now: the EOIs below change them.
    serial_println!("trial eoi-state in_service={isr} pending={irr} ppr={ppr:#x}");
    let mut steps = [(0, 0); 4];
    for s in steps.iter_mut() {
        lapic::end_of_interrupt();
        *s = window();
    }
    let mut extra = 0;
    while extra < 8 && [LOW, MID, SAME, HIGH].iter().any(|&v| bit(ISR, v) || bit(IRR, v)) {
        lapic::end_of_interrupt();
        let _ = window();
        extra += 1;
    }
    load_kernel();
    if was {
        x86_64::instructions::interrupts::enable();
    }
    serial_println!(
        "trial eoi first={} then_low_same_high={} eoi1={} eoi2={} eoi3={} eoi4={} leftover_eois={}",
        Vectors(s1), Vectors(s2), Vectors(steps[0]), Vectors(steps[1]), Vectors(steps[2]),
        Vectors(steps[3]), extra,
    );
}
