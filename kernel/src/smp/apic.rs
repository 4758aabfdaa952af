//! The local APIC as SMP uses it: the Interrupt Command Register (ICR, SDM vol. 3A §11.6.1,
//! Figure 11-12) to send INIT, STARTUP and fixed/NMI IPIs, and an AP's own local-APIC set-up.
//! Same MMIO page as `drivers::lapic` (each CPU sees its own APIC there).

use crate::arch::x86_64::idt::vector;
use crate::drivers::lapic::{read, write, DELIVERY_NMI, DIVIDE_BY_16, DIVIDE_CONFIG, ICR_HIGH, ICR_LOW, ID,
                            INITIAL_COUNT, LVT_LINT0, LVT_LINT1, LVT_MASKED, LVT_PERIODIC, LVT_TIMER, SVR,
                            SVR_ENABLE};

/// ICR fields (Figure 11-12).
pub mod icr {
    pub const FIXED: u32 = 0b000 << 8;
    pub const NMI: u32 = 0b100 << 8;
    pub const INIT: u32 = 0b101 << 8;
    pub const STARTUP: u32 = 0b110 << 8;
    pub const DELIVERY_PENDING: u32 = 1 << 12;
    pub const LEVEL_ASSERT: u32 = 1 << 14;
    /// Destination shorthand, bits 19:18: 00 = the destination field, 11 = all excluding self.
    pub const ALL_BUT_SELF: u32 = 0b11 << 18;
}

/// This CPU's local APIC ID (ID register bits 31:24).
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Sends one IPI: `low` is the ICR's low word (mode, shorthand, vector), `dest` the APIC ID
/// (used when the shorthand is 00). Waits, bounded, for the APIC to accept it.
pub fn send(dest: u32, low: u32) {
    write(ICR_HIGH, dest << 24);
    write(ICR_LOW, low);
    for _ in 0..1_000_000 {
        if read(ICR_LOW) & icr::DELIVERY_PENDING == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// This CPU's local APIC timer, periodic: `count` bus/16 ticks per interrupt on `vec`; 0 stops it.
pub fn timer_periodic(count: u32, vec: u8) {
    write(DIVIDE_CONFIG, DIVIDE_BY_16);
    if count == 0 {
        write(LVT_TIMER, LVT_MASKED | vec as u32);
        write(INITIAL_COUNT, 0);
    } else {
        write(LVT_TIMER, LVT_PERIODIC | vec as u32);
        write(INITIAL_COUNT, count);
    }
}

/// An AP's local APIC: enabled with the spurious vector, LINT0 masked (the 8259's ExtINT goes
/// to the boot CPU only), LINT1 NMI, its timer masked until asked for.
pub fn init_ap() {
    write(SVR, read(SVR) | SVR_ENABLE | vector::APIC_SPURIOUS as u32);
    write(LVT_LINT0, LVT_MASKED);
    write(LVT_LINT1, DELIVERY_NMI);
    write(LVT_TIMER, LVT_MASKED | vector::APIC_TIMER as u32);
}
