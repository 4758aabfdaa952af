//! The timer: a tick counter driven by the PIT (IRQ0 through the 8259, vector 32), the
//! measurement window the lab reads rates from, and the pitfall switches.
//!
//! Pitfalls (what a kernel gets wrong, made visible):
//! - `no-eoi`: the handler does not send EOI. The 8259 keeps IRQ0 in service and delivers no
//!   further IRQ0 (nor any lower-priority IRQ): exactly one tick, then silence.
//! - `trap-gate`: vector 32 is a trap gate, so RFLAGS.IF stays 1 inside the handler (SDM
//!   §6.12.1.3) and the handler can be interrupted.
//! - `masked`: the PIT runs but IRQ0 stays masked in the 8259: no ticks at all.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::arch::x86_64::hooks;
use crate::arch::x86_64::idt::{self, gate_type, vector};
use crate::drivers::{lapic, pic, pit};
use crate::serial_println;

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Pitfall {
    None = 0,
    NoEoi = 1,
    TrapGate = 2,
    Masked = 3,
}

impl Pitfall {
    pub fn parse(s: &str) -> Option<Pitfall> {
        Some(match s {
            "none" => Pitfall::None,
            "no-eoi" => Pitfall::NoEoi,
            "trap-gate" => Pitfall::TrapGate,
            "masked" => Pitfall::Masked,
            _ => return None,
        })
    }
    pub const fn name(self) -> &'static str {
        match self {
            Pitfall::None => "none",
            Pitfall::NoEoi => "no-eoi",
            Pitfall::TrapGate => "trap-gate",
            Pitfall::Masked => "masked",
        }
    }
}

/// Timer interrupts handled, PIT and APIC together.
pub static TICKS: AtomicU64 = AtomicU64::new(0);
static PITFALL: AtomicU8 = AtomicU8::new(Pitfall::None as u8);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static RATE: AtomicU64 = AtomicU64::new(0);
/// Which timer runs: 0 none, 1 PIT, 2 APIC periodic, 3 APIC one-shot.
static SOURCE: AtomicU8 = AtomicU8::new(0);
static ARMED_TSC: AtomicU64 = AtomicU64::new(0);
static FIRST_TICK_TSC: AtomicU64 = AtomicU64::new(0);
/// Ticks a `measure` window keeps the TSC of (a 1000 Hz tick over a 1 s window fits).
pub const TICK_LOG_LEN: usize = 1024;

/// The TSC at each tick of the last `measure` window, in order (contract: `LAB_TICK_LOG`, read
/// by the lab after the window; the layout is declared in lab/labkernel/layouts.py). `count`
/// is every tick of the window, `tsc` holds the first `TICK_LOG_LEN` of them.
#[repr(C)]
pub struct TickLog {
    pub count: AtomicU64,
    pub tsc: [AtomicU64; TICK_LOG_LEN],
}
const _: () = assert!(core::mem::size_of::<TickLog>() == 8 + 8 * TICK_LOG_LEN);

#[unsafe(no_mangle)]
#[used]
pub static LAB_TICK_LOG: TickLog = TickLog { count: AtomicU64::new(0), tsc: [const { AtomicU64::new(0) }; TICK_LOG_LEN] };
/// Set for the length of a `measure` window: only its ticks are logged.
static LOGGING: AtomicBool = AtomicBool::new(false);

fn log_tick() {
    if LOGGING.load(Ordering::Relaxed) {
        let i = LAB_TICK_LOG.count.fetch_add(1, Ordering::Relaxed) as usize;
        if i < TICK_LOG_LEN {
            LAB_TICK_LOG.tsc[i].store(rdtsc(), Ordering::Relaxed);
        }
    }
}

/// Set while interrupts cannot be trusted to wake `hlt` (the no-EOI pitfall blocks IRQ4 too):
/// the shell then polls the UART instead of sleeping.
pub static POLL_CONSOLE: AtomicBool = AtomicBool::new(false);

pub fn pitfall() -> Pitfall {
    match PITFALL.load(Ordering::SeqCst) {
        1 => Pitfall::NoEoi,
        2 => Pitfall::TrapGate,
        3 => Pitfall::Masked,
        _ => Pitfall::None,
    }
}

/// TSC cycles per second, calibrated against the PIT on first use (10 ms), so boots that
/// never use the timer do not pay for it.
pub fn tsc_hz() -> u64 {
    match TSC_HZ.load(Ordering::SeqCst) {
        0 => {
            let hz = pit::calibrate_tsc(10);
            TSC_HZ.store(hz, Ordering::SeqCst);
            hz
        }
        hz => hz,
    }
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn set_pitfall(p: Pitfall) {
    PITFALL.store(p as u8, Ordering::SeqCst);
}

/// Starts the PIT at `hz` with the current pitfall applied; returns the exact rate.
pub fn start_pit(hz: u32) -> u64 {
    stop();
    let p = pitfall();
    let ty = if p == Pitfall::TrapGate { gate_type::TRAP } else { gate_type::INTERRUPT };
    idt::edit(vector::TIMER, |g| g.set_type(ty));
    POLL_CONSOLE.store(p == Pitfall::NoEoi, Ordering::SeqCst);
    let rate = pit::start_periodic(hz);
    RATE.store(rate, Ordering::SeqCst);
    SOURCE.store(1, Ordering::SeqCst);
    if p != Pitfall::Masked {
        pic::unmask(0);
    }
    rate
}

fn apply_gate_pitfall(v: u8) {
    let ty = if pitfall() == Pitfall::TrapGate { gate_type::TRAP } else { gate_type::INTERRUPT };
    idt::edit(v, |g| g.set_type(ty));
    POLL_CONSOLE.store(pitfall() == Pitfall::NoEoi, Ordering::SeqCst);
}

/// The local APIC timer, periodic at `hz`; returns the exact rate.
pub fn start_apic_periodic(hz: u64) -> u64 {
    stop();
    apply_gate_pitfall(vector::APIC_TIMER);
    SOURCE.store(2, Ordering::SeqCst);
    if pitfall() == Pitfall::Masked {
        return 0; // the LVT stays masked
    }
    let rate = lapic::start_periodic(hz);
    RATE.store(rate, Ordering::SeqCst);
    rate
}

/// The local APIC timer, one interrupt after `us` microseconds; returns the count.
pub fn start_apic_oneshot(us: u64) -> u64 {
    stop();
    apply_gate_pitfall(vector::APIC_TIMER);
    SOURCE.store(3, Ordering::SeqCst);
    FIRST_TICK_TSC.store(0, Ordering::SeqCst);
    ARMED_TSC.store(rdtsc(), Ordering::SeqCst);
    lapic::start_oneshot(us)
}

/// Stops the timer and undoes every pitfall (including the EOI the no-EOI pitfall withheld).
pub fn stop() {
    lapic::stop();
    SOURCE.store(0, Ordering::SeqCst);
    pic::mask(0);
    if pic::in_service(0) {
        pic::end_of_interrupt(vector::TIMER);
    }
    // A withheld APIC EOI: one EOI clears the highest in-service vector (the timer's).
    lapic::end_of_interrupt();
    idt::edit(vector::TIMER, |g| g.set_type(gate_type::INTERRUPT));
    idt::edit(vector::APIC_TIMER, |g| g.set_type(gate_type::INTERRUPT));
    POLL_CONSOLE.store(false, Ordering::SeqCst);
    RATE.store(0, Ordering::SeqCst);
}

/// Registers the tick hooks (arch `hooks`): `on_tick` for the PIT's vector, `on_apic_tick`
/// for the local APIC timer's. Call once at boot, before interrupts are enabled.
pub fn init() {
    hooks::register_pit_tick_hook(on_tick);
    hooks::register_apic_tick_hook(on_apic_tick);
}

/// The IRQ0 handler's body (the PIT tick hook): count, and acknowledge unless the pitfall
/// says not to.
pub fn on_tick(from_user: bool) {
    TICKS.fetch_add(1, Ordering::Relaxed);
    log_tick();
    if pitfall() != Pitfall::NoEoi {
        pic::end_of_interrupt(vector::TIMER);
    }
    // After the EOI: a preemptive switch leaves this handler's frame on the old task's stack.
    crate::task::on_timer_tick(from_user);
}

/// The local APIC timer's handler body (the APIC tick hook): count, record the first tick's TSC (one-shot delay), EOI.
pub fn on_apic_tick(from_user: bool) {
    TICKS.fetch_add(1, Ordering::Relaxed);
    log_tick();
    let _ = FIRST_TICK_TSC.compare_exchange(0, rdtsc(), Ordering::SeqCst, Ordering::SeqCst);
    if pitfall() != Pitfall::NoEoi {
        lapic::end_of_interrupt();
    }
    crate::task::on_timer_tick(from_user);
}

/// Microseconds from arming the one-shot timer to its interrupt (0: not fired yet).
pub fn oneshot_delay_us() -> u64 {
    let (a, f) = (ARMED_TSC.load(Ordering::SeqCst), FIRST_TICK_TSC.load(Ordering::SeqCst));
    if f == 0 || a == 0 { 0 } else { (f - a) * 1_000_000 / tsc_hz() }
}

/// Counts ticks over `ms` milliseconds of TSC time with interrupts enabled, logging each
/// tick's TSC in `LAB_TICK_LOG`. Spins (`pause`)
/// instead of halting: with the no-EOI pitfall no interrupt would end a `hlt`.
pub fn measure(ms: u64) -> (u64, u64, u64) {
    let cycles = tsc_hz() * ms / 1000;
    let t0 = rdtsc();
    let k0 = TICKS.load(Ordering::SeqCst);
    let s0 = crate::task::SWITCHES.load(Ordering::SeqCst);
    LAB_TICK_LOG.count.store(0, Ordering::SeqCst);
    LOGGING.store(true, Ordering::SeqCst);
    x86_64::instructions::interrupts::enable();
    while rdtsc() - t0 < cycles {
        core::hint::spin_loop();
    }
    x86_64::instructions::interrupts::disable();
    LOGGING.store(false, Ordering::SeqCst);
    (TICKS.load(Ordering::SeqCst) - k0, rdtsc() - t0, crate::task::SWITCHES.load(Ordering::SeqCst) - s0)
}

pub fn report_ticks() {
    serial_println!(
        "ticks count={} tsc={} tsc_hz={} rate={} pitfall={} source={} oneshot_delay_us={}",
        TICKS.load(Ordering::SeqCst),
        rdtsc(),
        tsc_hz(),
        RATE.load(Ordering::SeqCst),
        pitfall().name(),
        SOURCE.load(Ordering::SeqCst),
        oneshot_delay_us()
    );
}
