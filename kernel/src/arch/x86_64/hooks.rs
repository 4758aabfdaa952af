//! Where features plug into the arch layer's handlers.
//!
//! The handlers (`handlers.rs`, `stubs.rs`) know only the CPU's side of an event. What an
//! event means to the kernel (a scenario's fix-up, a ring-3 fault that ends a task, the #DF
//! report, a timer tick) belongs to feature modules outside `arch`, which register function
//! pointers here; the arch layer never names them.
//!
//! | hook | called by | when no hook claims it / none is registered |
//! | --- | --- | --- |
//! | exception (chain) | every exception handler of both styles (`isr_bp` included; `isr_df` has its own hook, the stub for 8 has not) | the fault chain; `isr_bp`: report and return (a trap) |
//! | fault (chain) | the same handlers, after the exception chain, except `isr_bp` | report and halt (`handlers::fatal`) |
//! | double fault | `isr_df` | report and halt |
//! | PIT tick, APIC tick | `isr_timer`, `isr_apic_timer` | acknowledged (EOI) and otherwise ignored |
//!
//! A chain runs its hooks in registration order until one returns true.
//!
//! Soundness: every slot is a `spin::Once` holding a plain `fn` pointer, written once at boot
//! (`kernel_main`, interrupts off, before the IDT is loaded) and afterwards only read. A read is
//! one acquire load that never blocks, so it is safe in any handler (NMI and #DF included); no
//! `unsafe` is involved. Registering a single hook twice, or more hooks than a chain holds, is a
//! boot-time bug and panics.

use spin::Once;

use super::handlers::InterruptFrame;
use super::idt::Style;

/// `(vector, CPU-pushed frame, error code if the CPU pushed one, handler style) -> claimed`.
/// The frame may be edited: `iretq` restores what it holds when the handler returns.
pub type ExceptionHook = fn(vector: u8, frame: *mut InterruptFrame, error_code: Option<u64>, style: Style) -> bool;
/// `(CPU-pushed frame on the IST1 stack, error code)`. Returning resumes at what the frame holds.
pub type DoubleFaultHook = fn(frame: *mut InterruptFrame, error_code: u64);
/// `(the interrupted context was ring 3)`. Called in place of the EOI: the hook acknowledges.
pub type TickHook = fn(from_user: bool);
/// An inter-processor interrupt on `vector::IPI` (registered by `smp`); it sends the EOI.
pub type IpiHook = fn();

/// Hooks per chain.
const CHAIN: usize = 4;

struct Chain {
    name: &'static str,
    hooks: [Once<ExceptionHook>; CHAIN],
}

impl Chain {
    const fn new(name: &'static str) -> Chain {
        Chain { name, hooks: [const { Once::new() }; CHAIN] }
    }

    fn register(&self, hook: ExceptionHook) {
        for slot in &self.hooks {
            if fill(slot, hook) {
                return;
            }
        }
        panic!("the {} hook chain is full ({CHAIN} hooks)", self.name);
    }

    fn claims(&self, vector: u8, frame: *mut InterruptFrame, error_code: Option<u64>, style: Style) -> bool {
        self.hooks.iter().map_while(Once::get).any(|hook| hook(vector, frame, error_code, style))
    }
}

/// Writes `value` into `slot` if it is empty; returns whether it did.
fn fill<T>(slot: &Once<T>, value: T) -> bool {
    let mut filled = false;
    slot.call_once(|| {
        filled = true;
        value
    });
    filled
}

fn set<T>(slot: &Once<T>, value: T, name: &str) {
    assert!(fill(slot, value), "the {name} hook is registered twice");
}

static EXCEPTION: Chain = Chain::new("exception");
static FAULT: Chain = Chain::new("fault");
static DOUBLE_FAULT: Once<DoubleFaultHook> = Once::new();
static PIT_TICK: Once<TickHook> = Once::new();
static APIC_TICK: Once<TickHook> = Once::new();
static IPI: Once<IpiHook> = Once::new();

/// An exception the kernel expected (a scenario's fix-up): every exception handler of both
/// styles (`isr_bp` included, not `isr_df`) asks this chain first.
pub fn register_exception_hook(hook: ExceptionHook) {
    EXCEPTION.register(hook);
}

/// The last word before an unclaimed exception is fatal (e.g. a fault in ring 3 ends the task
/// instead): every exception handler but `isr_bp` and `isr_df` asks this chain after the
/// exception chain.
pub fn register_fault_hook(hook: ExceptionHook) {
    FAULT.register(hook);
}

pub fn register_double_fault_hook(hook: DoubleFaultHook) {
    set(&DOUBLE_FAULT, hook, "double-fault");
}

/// The PIT's IRQ0 (`vector::TIMER`).
pub fn register_pit_tick_hook(hook: TickHook) {
    set(&PIT_TICK, hook, "PIT tick");
}

/// The local APIC timer (`vector::APIC_TIMER`).
pub fn register_apic_tick_hook(hook: TickHook) {
    set(&APIC_TICK, hook, "APIC tick");
}

/// A fixed IPI (`vector::IPI`).
pub fn register_ipi_hook(hook: IpiHook) {
    set(&IPI, hook, "IPI");
}

pub(super) fn ipi_hook() -> Option<IpiHook> {
    IPI.get().copied()
}

pub(super) fn exception_claimed(vector: u8, frame: *mut InterruptFrame, error_code: Option<u64>, style: Style) -> bool {
    EXCEPTION.claims(vector, frame, error_code, style)
}

pub(super) fn fault_claimed(vector: u8, frame: *mut InterruptFrame, error_code: Option<u64>, style: Style) -> bool {
    FAULT.claims(vector, frame, error_code, style)
}

pub(super) fn double_fault_hook() -> Option<DoubleFaultHook> {
    DOUBLE_FAULT.get().copied()
}

pub(super) fn pit_tick_hook() -> Option<TickHook> {
    PIT_TICK.get().copied()
}

pub(super) fn apic_tick_hook() -> Option<TickHook> {
    APIC_TICK.get().copied()
}
