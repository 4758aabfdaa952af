//! The local APIC's timer (SDM vol. 3A §11.5.4): a counter at the APIC bus clock divided by
//! the Divide Configuration register, counting down from Initial Count; at zero it raises the
//! vector in the LVT Timer register, once (one-shot) or reloading (periodic). The registers
//! are memory-mapped at IA32_APIC_BASE (default 0xFEE00000, mapped uncached by `paging`).
//!
//! The 8259's interrupts reach the CPU through LINT0 programmed as ExtINT ("virtual wire mode",
//! MP spec 1.4 §3.6.2.2); LINT1 carries NMI. SeaBIOS (`pc`, `q35`) leaves LINT0/LINT1 that way,
//! but qboot (`microvm`) leaves them at their reset value, masked (SDM §11.5.1), and then no
//! 8259 interrupt, COM1's included, ever arrives. So `init` programs both itself.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::x86_64::idt::vector;
use crate::drivers::pit;

pub const BASE: u64 = 0xFEE0_0000;
// Register offsets (SDM Table 11-1): the one table, also for `smp::apic` (the ICR, an AP's
// set-up) and `trial::eoi` (ISR, IRR, PPR, self-IPIs).
pub(crate) const ID: usize = 0x020;
const EOI: usize = 0x0B0;
pub(crate) const SVR: usize = 0x0F0;
pub(crate) const ICR_LOW: usize = 0x300;
pub(crate) const ICR_HIGH: usize = 0x310;
pub(crate) const LVT_TIMER: usize = 0x320;
pub(crate) const LVT_LINT0: usize = 0x350;
pub(crate) const LVT_LINT1: usize = 0x360;
pub(crate) const INITIAL_COUNT: usize = 0x380;
const CURRENT_COUNT: usize = 0x390;
pub(crate) const DIVIDE_CONFIG: usize = 0x3E0;
pub(crate) const SVR_ENABLE: u32 = 1 << 8;
pub(crate) const LVT_MASKED: u32 = 1 << 16;
pub(crate) const LVT_PERIODIC: u32 = 1 << 17;
/// LVT delivery mode, bits 10:8 (SDM Figure 11-8).
pub(crate) const DELIVERY_NMI: u32 = 0b100 << 8;
const DELIVERY_EXTINT: u32 = 0b111 << 8;
/// Divide Configuration value for "divide by 16" (SDM Figure 11-10).
pub(crate) const DIVIDE_BY_16: u32 = 0b0011;

/// Timer counts per second (bus clock / 16), calibrated against the PIT, and against the TSC.
static HZ_BY_PIT: AtomicU64 = AtomicU64::new(0);
static HZ_BY_TSC: AtomicU64 = AtomicU64::new(0);

fn reg(offset: usize) -> *mut u32 {
    (BASE as usize + offset) as *mut u32
}

/// This CPU's local APIC register at `offset` (each CPU sees its own APIC on the same page).
pub(crate) fn read(offset: usize) -> u32 {
    // SAFETY: the APIC page is mapped uncached; registers are 32-bit aligned.
    unsafe { reg(offset).read_volatile() }
}

pub(crate) fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`.
    unsafe { reg(offset).write_volatile(value) }
}

pub fn init() {
    write(SVR, read(SVR) | SVR_ENABLE | vector::APIC_SPURIOUS as u32);
    write(LVT_LINT0, DELIVERY_EXTINT);
    write(LVT_LINT1, DELIVERY_NMI);
    write(LVT_TIMER, LVT_MASKED | vector::APIC_TIMER as u32);
    write(DIVIDE_CONFIG, DIVIDE_BY_16);
}

pub fn end_of_interrupt() {
    write(EOI, 0);
}

/// Counts the timer makes in `ms` milliseconds: masked one-shot from 0xFFFFFFFF, read back.
fn counts_during(wait: impl FnOnce()) -> u64 {
    write(LVT_TIMER, LVT_MASKED | vector::APIC_TIMER as u32);
    write(INITIAL_COUNT, u32::MAX);
    wait();
    let left = read(CURRENT_COUNT);
    write(INITIAL_COUNT, 0);
    (u32::MAX - left) as u64
}

/// Calibration window. 10 ms windows read up to ~2% high under TCG (the PIT polling
/// loop's own cost); 50 ms keep the error well under 1%.
const CALIBRATION_MS: u64 = 50;

/// Calibrates once, against PIT channel 2 and against the (PIT-calibrated) TSC.
pub fn calibrate() -> (u64, u64) {
    if HZ_BY_PIT.load(Ordering::SeqCst) == 0 {
        let per_s = 1000 / CALIBRATION_MS;
        HZ_BY_PIT.store(counts_during(|| { pit::calibrate_tsc(CALIBRATION_MS); }) * per_s, Ordering::SeqCst);
        let tsc_hz = crate::timer::tsc_hz();
        let by_tsc = counts_during(|| {
            let t0 = crate::timer::rdtsc();
            while crate::timer::rdtsc() - t0 < tsc_hz / per_s {
                core::hint::spin_loop();
            }
        }) * per_s;
        HZ_BY_TSC.store(by_tsc, Ordering::SeqCst);
    }
    (HZ_BY_PIT.load(Ordering::SeqCst), HZ_BY_TSC.load(Ordering::SeqCst))
}

/// Periodic at `hz`; returns the rate the integer count gives.
pub fn start_periodic(hz: u64) -> u64 {
    let (bus, _) = calibrate();
    let count = (bus / hz).clamp(1, u32::MAX as u64);
    write(LVT_TIMER, LVT_PERIODIC | vector::APIC_TIMER as u32);
    write(INITIAL_COUNT, count as u32);
    bus / count
}

/// One interrupt after `us` microseconds; returns the count programmed.
pub fn start_oneshot(us: u64) -> u64 {
    let (bus, _) = calibrate();
    let count = (bus * us / 1_000_000).clamp(1, u32::MAX as u64);
    write(LVT_TIMER, vector::APIC_TIMER as u32);
    write(INITIAL_COUNT, count as u32);
    count
}

pub fn stop() {
    write(LVT_TIMER, LVT_MASKED | vector::APIC_TIMER as u32);
    write(INITIAL_COUNT, 0);
}
