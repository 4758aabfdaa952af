//! The 8254 programmable interval timer (PIT): channel 0 drives IRQ0, channel 2 (gated by
//! port 0x61) measures a fixed interval to calibrate the TSC. Input clock 1.193182 MHz.

use x86_64::instructions::port::Port;

pub const INPUT_HZ: u64 = 1_193_182;
const CH0_DATA: u16 = 0x40;
const CH2_DATA: u16 = 0x42;
const COMMAND: u16 = 0x43;
const GATE_PORT: u16 = 0x61;
/// Command bytes: channel (7:6), access lobyte/hibyte (5:4), mode (3:1), binary (0).
const CH0_RATE_GENERATOR: u8 = 0b00_11_010_0;
const CH2_ONE_SHOT: u8 = 0b10_11_000_0;
const GATE2: u8 = 1 << 0;
const SPEAKER: u8 = 1 << 1;
const OUT2: u8 = 1 << 5;

/// Programs channel 0 to fire IRQ0 `hz` times a second; returns the rate actually set
/// (the divisor is an integer).
pub fn start_periodic(hz: u32) -> u64 {
    let divisor = (INPUT_HZ / hz.max(19) as u64).clamp(1, 0xFFFF) as u16;
    // SAFETY: PIT ports; programming channel 0 only changes IRQ0's rate.
    unsafe {
        Port::<u8>::new(COMMAND).write(CH0_RATE_GENERATOR);
        Port::<u8>::new(CH0_DATA).write(divisor as u8);
        Port::<u8>::new(CH0_DATA).write((divisor >> 8) as u8);
    }
    INPUT_HZ / divisor as u64
}

/// TSC cycles per second, measured over `ms` milliseconds of PIT channel 2.
pub fn calibrate_tsc(ms: u64) -> u64 {
    let count = (INPUT_HZ * ms / 1000) as u16;
    // SAFETY: channel 2 and the gate bits of port 0x61 (speaker kept off).
    unsafe {
        let mut gate = Port::<u8>::new(GATE_PORT);
        let g = gate.read();
        gate.write((g & !SPEAKER) & !GATE2);
        Port::<u8>::new(COMMAND).write(CH2_ONE_SHOT);
        Port::<u8>::new(CH2_DATA).write(count as u8);
        Port::<u8>::new(CH2_DATA).write((count >> 8) as u8);
        let start = core::arch::x86_64::_rdtsc();
        let g = gate.read();
        gate.write((g & !SPEAKER) | GATE2);
        while gate.read() & OUT2 == 0 {
            core::hint::spin_loop();
        }
        let end = core::arch::x86_64::_rdtsc();
        let g = gate.read();
        gate.write(g & !GATE2);
        (end - start) * 1000 / ms
    }
}
