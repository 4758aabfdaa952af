//! `trial tlb`: what a write to CR3 does to the TLB (SDM vol. 3A §4.10.4.1, "Operations that
//! Invalidate TLBs and Paging-Structure Caches"; §4.10.2.4 global pages; §4.10.1 PCIDs).
//!
//! One test page `PAGE_VA` is mapped to frame A and read (its translation is now cached);
//! then its entry is changed to frame B *without* INVLPG, the event under test happens, and
//! the page is read again: A's marker means the stale translation survived, B's that it was
//! flushed. Events: nothing (the control: does the TLB cache at all?), INVLPG, `mov cr3` with
//! the same value, for a global and a non-global entry (CR4.PGE=1), and with CR4.PCIDE=1
//! `mov cr3` with and without bit 63 (no-flush) where CPUID reports PCID.
//!
//! One line: `trial tlb pge_was=… pcid=… <case>=stale|fresh …`.

use core::arch::asm;
use core::arch::x86_64::__cpuid;

use crate::arch::x86_64::paging::{self, pte};
use crate::serial_println;

const PAGE_VA: u64 = paging::TEST_BASE + 8 * paging::PAGE;
/// PTE bit 8: global (SDM Table 4-20).
const PTE_GLOBAL: u64 = 1 << 8;
const CR4_PGE: u64 = 1 << 7;
const CR4_PCIDE: u64 = 1 << 17;
/// CR3 bit 63 with CR4.PCIDE=1: do not invalidate the PCID's translations (§4.10.4.1).
const CR3_NOFLUSH: u64 = 1 << 63;
/// CPUID.01H:ECX bit 17: PCID.
const CPUID_PCID: u32 = 1 << 17;
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const MARK_A: u64 = 0xA1A1_A1A1_A1A1_A1A1;
const MARK_B: u64 = 0xB2B2_B2B2_B2B2_B2B2;

#[repr(C, align(4096))]
struct Frames([[u64; 512]; 2]);
static mut TLB_FRAMES: Frames = Frames([[0; 512]; 2]);

fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) v) };
    v
}

fn write_cr3(v: u64) {
    // SAFETY: `v` is the current address space's CR3 (plus the no-flush bit).
    unsafe { asm!("mov cr3, {}", in(reg) v) };
}

fn cr4() -> u64 {
    let v: u64;
    // SAFETY: as for CR3.
    unsafe { asm!("mov {}, cr4", out(reg) v) };
    v
}

fn write_cr4(v: u64) {
    // SAFETY: only PGE and PCIDE change; the kernel's CR3 has PCID 0 (bits 11:0 zero).
    unsafe { asm!("mov cr4, {}", in(reg) v) };
}

pub fn invlpg(va: u64) {
    // SAFETY: invalidation only.
    unsafe { asm!("invlpg [{}]", in(reg) va) };
}

fn pte_slot() -> *mut u64 {
    pte_of(PAGE_VA)
}

/// The page-table entry of `va`, a page of the test pages' PT (paging.rs), reached from CR3;
/// the tables are identity-mapped statics.
pub fn pte_of(va: u64) -> *mut u64 {
    let index = |level: u32| ((va >> (12 + 9 * level)) & 0x1FF) as usize;
    let mut table = (cr3() & ADDR_MASK) as *mut u64;
    for level in (1..=3).rev() {
        // SAFETY: the walk follows present entries the kernel built (paging::init).
        table = unsafe { (*table.add(index(level)) & ADDR_MASK) as *mut u64 };
    }
    // SAFETY: `table` is the test pages' PT.
    unsafe { table.add(index(0)) }
}

fn frame(i: usize) -> u64 {
    // SAFETY: the frames are identity-mapped statics.
    unsafe { (&raw const TLB_FRAMES.0[i]) as u64 }
}

fn read_page() -> u64 {
    // SAFETY: PAGE_VA is mapped (to one frame or the other) while a case runs.
    unsafe { (PAGE_VA as *const u64).read_volatile() }
}

#[derive(Clone, Copy, PartialEq)]
enum Event {
    Nothing,
    Invlpg,
    Cr3,
    Cr3NoFlush,
}

/// Whether the stale translation (frame A) was still used after `event`.
fn stale_after(global: bool, event: Event) -> bool {
    let flags = pte::PRESENT | pte::WRITABLE | if global { PTE_GLOBAL } else { 0 };
    let slot = pte_slot();
    // SAFETY: the entry is the trial's own (no other code maps PAGE_VA).
    unsafe {
        slot.write_volatile(frame(0) | flags);
        invlpg(PAGE_VA);
        let _ = read_page();
        slot.write_volatile(frame(1) | flags);
    }
    match event {
        Event::Nothing => {}
        Event::Invlpg => invlpg(PAGE_VA),
        Event::Cr3 => write_cr3(cr3()),
        Event::Cr3NoFlush => write_cr3(cr3() | CR3_NOFLUSH),
    }
    let seen = read_page();
    // SAFETY: as above; the page is unmapped again and its translation dropped.
    unsafe { slot.write_volatile(0) };
    invlpg(PAGE_VA);
    seen == MARK_A
}

fn word(stale: bool) -> &'static str {
    if stale { "stale" } else { "fresh" }
}

pub fn run() {
    let was = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    // SAFETY: the frames are the trial's own.
    unsafe {
        (*(&raw mut TLB_FRAMES)).0[0][0] = MARK_A;
        (*(&raw mut TLB_FRAMES)).0[1][0] = MARK_B;
    }
    let cr4_was = cr4();
    write_cr4(cr4_was | CR4_PGE);
    let cached = stale_after(false, Event::Nothing);
    let invl = stale_after(true, Event::Invlpg);
    let global = stale_after(true, Event::Cr3);
    let local = stale_after(false, Event::Cr3);
    let pcid_cpuid = __cpuid(1).ecx & CPUID_PCID != 0;
    let pcid = pcid_cpuid && cr3() & 0xFFF == 0;
    let mut pcid_cases = (false, false, false);
    if pcid {
        write_cr4(cr4() | CR4_PCIDE);
        pcid_cases = (stale_after(false, Event::Cr3NoFlush), stale_after(false, Event::Cr3),
                      stale_after(true, Event::Cr3));
        write_cr4(cr4() & !CR4_PCIDE);
    }
    write_cr4(cr4_was);
    if was {
        x86_64::instructions::interrupts::enable();
    }
    let p = |b: bool| if pcid { word(b) } else { "unsupported" };
    serial_println!(
        "trial tlb pge_was={} pcid_cpuid={} cr3={:#x} pcid={} no_event={} invlpg_global={} cr3_global={} cr3_nonglobal={} \
         pcid_noflush_nonglobal={} pcid_cr3_nonglobal={} pcid_cr3_global={}",
        (cr4_was & CR4_PGE != 0) as u8, pcid_cpuid as u8, cr3(), pcid as u8, word(cached), word(invl), word(global), word(local),
        p(pcid_cases.0), p(pcid_cases.1), p(pcid_cases.2),
    );
}
