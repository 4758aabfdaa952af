//! The in-guest observer: what each delivered exception pushed, recorded by the kernel itself.
//!
//! A debugger's breakpoints are not needed to judge a fired exception: the first hook of the
//! exception chain (`arch/x86_64/hooks.rs`, called by every exception handler of both styles
//! but `isr_df`) copies what the CPU left on the stack, RFLAGS inside the handler, CR2, CR3,
//! CS, SS, the live IDT gate and the IST top it names into a fixed ring buffer, `LAB_OBSERVER`.
//! The fire harnesses store the interrupted RSP/RFLAGS/CS/SS at their plant point into
//! `LAB_OBSERVER_PLANT` (`kernel/src/fire.rs`, `LAB_PLANT`); each record carries a copy.
//!
//! The lab reads the buffer after a run: with gdb (a memory read of the exported symbol) or
//! over serial (`observed` prints the records not yet printed as hex; about 30 µs a byte on
//! TCG, so the lab prefers the memory read). The layouts are
//! declared once here and in `lab/labkernel/layouts.py` (same sizes, both asserted).
//!
//! Each record names the CPU it was made on (its initial APIC ID) and the IST top from that
//! CPU's own TSS (through its own TR), so a fire on an AP (`on <cpu> fire`) is recorded as it
//! happened there.
//!
//! Soundness: a slot is claimed with one atomic `fetch_add` on `count`, so an NMI that lands
//! while a record is being written, or another CPU's exception at the same time, takes the next
//! slot, not this one. The plant copy is the last harness's (one CPU fires at a time).

use core::mem::size_of;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::x86_64::handlers::InterruptFrame;
use crate::arch::x86_64::hooks;
use crate::arch::x86_64::idt::Style;
use crate::arch::x86_64::tss;
use crate::serial_println;

/// Records the ring holds; older ones are overwritten (the lab sees `count` jump).
pub const CAPACITY: usize = 64;
/// "LABOBSV1", little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"LABOBSV1");
/// `error_code` when the CPU pushed none.
pub const NO_ERROR_CODE: u64 = u64::MAX;
/// Words copied from the entry RSP up: error code (if any), RIP, CS, RFLAGS, RSP, SS.
pub const WORDS: usize = 6;
/// Offset of IST1 in the 64-bit TSS (SDM vol. 3A §8.7, Figure 8-11).
const TSS_IST1: u64 = 0x24;

/// The interrupted context at a harness's plant point.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Plant {
    pub rsp: u64,
    pub rflags: u64,
    pub cs: u64,
    pub ss: u64,
    /// Plant points passed since boot: the fire a record belongs to.
    pub fire: u64,
}
const _: () = assert!(size_of::<Plant>() == 40);

/// One delivered exception.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Record {
    /// 1-based: the value of `count` after this record was claimed.
    pub seq: u64,
    pub vector: u64,
    /// 0 x86-interrupt, 1 stub.
    pub style: u64,
    pub error_code: u64,
    /// RSP at the handler's first instruction: the lowest word the CPU pushed.
    pub entry_rsp: u64,
    pub words: [u64; WORDS],
    /// RFLAGS inside the handler (IF shows the gate type).
    pub rflags: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cs: u64,
    pub ss: u64,
    /// The live IDT gate for `vector` (16 bytes, SDM vol. 3A Figure 6-8).
    pub gate: [u64; 2],
    /// The TSS IST slot the gate names, 0 when it names none.
    pub ist_top: u64,
    pub plant: Plant,
    /// The CPU that took the exception: its initial APIC ID (CPUID.01H:EBX[31:24]; the lab
    /// kernel's CPU index).
    pub cpu: u64,
}
const _: () = assert!(size_of::<Record>() == 0xc8);

#[repr(C)]
pub struct Observer {
    pub magic: u64,
    pub record_size: u64,
    pub capacity: u64,
    /// Records ever claimed.
    pub count: AtomicU64,
    /// `count` when `observed` last printed.
    pub printed: AtomicU64,
    pub records: [Record; CAPACITY],
}
const _: () = assert!(size_of::<Observer>() == 40 + CAPACITY * size_of::<Record>());

const EMPTY_PLANT: Plant = Plant { rsp: 0, rflags: 0, cs: 0, ss: 0, fire: 0 };
const EMPTY: Record = Record {
    seq: 0, vector: 0, style: 0, error_code: 0, entry_rsp: 0, words: [0; WORDS], rflags: 0,
    cr2: 0, cr3: 0, cs: 0, ss: 0, gate: [0; 2], ist_top: 0, plant: EMPTY_PLANT, cpu: 0,
};

#[unsafe(no_mangle)]
pub static mut LAB_OBSERVER: Observer = Observer {
    magic: MAGIC,
    record_size: size_of::<Record>() as u64,
    capacity: CAPACITY as u64,
    count: AtomicU64::new(0),
    printed: AtomicU64::new(0),
    records: [EMPTY; CAPACITY],
};

/// Written by the harnesses' `LAB_PLANT` (fire.rs) with plain stores.
#[unsafe(no_mangle)]
pub static mut LAB_OBSERVER_PLANT: Plant = EMPTY_PLANT;

/// Registers the observer first in the exception chain. Call before any other exception hook.
pub fn init() {
    hooks::register_exception_hook(observe);
}

fn read_rflags() -> u64 {
    let v: u64;
    // SAFETY: reads RFLAGS through the stack; no other effect.
    unsafe { core::arch::asm!("pushfq", "pop {}", out(reg) v, options(preserves_flags)) };
    v
}

fn control_registers() -> (u64, u64, u64, u64) {
    let (cr2, cr3, cs, ss): (u64, u64, u64, u64);
    // SAFETY: reads of CR2, CR3 and two segment selectors.
    unsafe {
        core::arch::asm!(
            "mov {cr2}, cr2", "mov {cr3}, cr3", "mov {cs}, cs", "mov {ss}, ss",
            cr2 = out(reg) cr2, cr3 = out(reg) cr3, cs = out(reg) cs, ss = out(reg) ss,
            options(nomem, nostack),
        )
    };
    (cr2, cr3, cs, ss)
}

/// The live gate for `vector`, read through IDTR, and the IST top it names (in this CPU's TSS).
fn live_gate(vector: u8) -> ([u64; 2], u64) {
    let idtr = x86_64::instructions::tables::sidt();
    let gate_at = idtr.base.as_u64() + vector as u64 * 16;
    if vector as u64 * 16 + 15 > idtr.limit as u64 {
        return ([0; 2], 0);
    }
    // SAFETY: inside the loaded IDT's limit; the IDT is mapped.
    let gate = unsafe { [(gate_at as *const u64).read_volatile(), ((gate_at + 8) as *const u64).read_volatile()] };
    let ist = (gate[0] >> 32) & 0x7;
    let ist_top = if ist == 0 {
        0
    } else {
        match tss::loaded_base() {
            0 => 0,
            // SAFETY: this CPU's TSS (TR's), mapped; IST slots are unaligned u64s.
            base => unsafe { ((base + TSS_IST1 + (ist - 1) * 8) as *const u64).read_unaligned() },
        }
    };
    (gate, ist_top)
}

/// This CPU's initial APIC ID (CPUID leaf 1, EBX bits 31:24; SDM vol. 2A CPUID).
fn initial_apic_id() -> u64 {
    #[allow(unused_unsafe)] // `__cpuid` is safe in newer Rust, unsafe in older
    // SAFETY: CPUID leaf 1 exists on every x86-64 CPU.
    let r = unsafe { core::arch::x86_64::__cpuid(1) };
    (r.ebx >> 24) as u64
}

/// The exception hook: records, claims nothing.
fn observe(vector: u8, frame: *mut InterruptFrame, error: Option<u64>, style: Style) -> bool {
    let rflags = read_rflags();
    let (cr2, cr3, cs, ss) = control_registers();
    let entry_rsp = frame as u64 - if error.is_some() { 8 } else { 0 };
    // The frame's words only: [error code,] RIP, CS, RFLAGS, RSP, SS. The word above SS is not
    // the frame's and may be a guard page (an AP's NMI stack): without an error code the last
    // slot stays 0.
    let mut words = [0u64; WORDS];
    let pushed = if error.is_some() { WORDS } else { WORDS - 1 };
    for (i, w) in words.iter_mut().take(pushed).enumerate() {
        // SAFETY: the words the CPU pushed, on this handler's stack.
        *w = unsafe { ((entry_rsp + 8 * i as u64) as *const u64).read_volatile() };
    }
    let (gate, ist_top) = live_gate(vector);
    // SAFETY: plain data written by the harness before the event.
    let plant = unsafe { (&raw const LAB_OBSERVER_PLANT).read_volatile() };
    // SAFETY: a shared reference to atomics; slots are claimed by fetch_add.
    let obs = unsafe { &*(&raw const LAB_OBSERVER) };
    let seq = obs.count.fetch_add(1, Ordering::SeqCst) + 1;
    let record = Record {
        seq, vector: vector as u64, style: style as u64,
        error_code: error.unwrap_or(NO_ERROR_CODE), entry_rsp, words, rflags, cr2, cr3, cs, ss,
        gate, ist_top, plant, cpu: initial_apic_id(),
    };
    // SAFETY: the slot `seq - 1` is this call's alone until CAPACITY more records arrive.
    unsafe {
        let slot = (&raw mut LAB_OBSERVER.records).cast::<Record>().add((seq as usize - 1) % CAPACITY);
        slot.write_volatile(record);
    }
    false
}

/// `observed`: a header line, then one `record <hex>` line per record not printed yet (the
/// record's bytes in memory order), oldest first; `lost=` counts those overwritten unprinted.
pub fn print_new() {
    // SAFETY: as in `observe`; the shell runs with the ring quiet (no scenario in progress).
    let obs = unsafe { &*(&raw const LAB_OBSERVER) };
    let count = obs.count.load(Ordering::SeqCst);
    let printed = obs.printed.load(Ordering::SeqCst);
    let first = printed.max(count.saturating_sub(CAPACITY as u64));
    serial_println!(
        "observed count={count} new={} lost={} capacity={CAPACITY} record_size={}",
        count - first,
        first - printed,
        size_of::<Record>()
    );
    for seq in first + 1..=count {
        let record = obs.records[(seq as usize - 1) % CAPACITY];
        // SAFETY: a plain-data repr(C) struct viewed as its bytes.
        let bytes = unsafe { core::slice::from_raw_parts((&raw const record).cast::<u8>(), size_of::<Record>()) };
        let mut line = [0u8; 2 * size_of::<Record>()];
        for (i, b) in bytes.iter().enumerate() {
            line[2 * i] = HEX[(b >> 4) as usize];
            line[2 * i + 1] = HEX[(b & 15) as usize];
        }
        serial_println!("record {}", core::str::from_utf8(&line).unwrap_or(""));
    }
    obs.printed.store(count, Ordering::SeqCst);
}

const HEX: &[u8; 16] = b"0123456789abcdef";
