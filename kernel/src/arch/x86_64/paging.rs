//! Test pages for the #PF scenarios, mapped at `TEST_BASE` (1 GiB, above the boot identity map).
//!
//! 4-level paging, SDM vol. 3A §5.5 (Tables 5-15..5-20 for the entry formats), page-fault error
//! code §5.7 (Figure 5-12). The boot code maps 0-1 GiB with 2 MiB pages through `boot_pml4` /
//! `boot_pdpt`; this module hangs one page directory off PDPT[1] and one page table off it.
//!
//! | page | address | mapping | access in the scenario | #PF error code |
//! | 0 | 0x4000_0000 | not present | read | 0 |
//! | 1 | 0x4000_1000 | present, read-only (CR0.WP=1) | write | P, W |
//! | 2 | 0x4000_2000 | present, writable, XD | instruction fetch | P, I/D |
//! | 3 | 0x4000_3000 | present, a reserved bit set | read | P, RSVD |

use core::mem::size_of;

pub const TEST_BASE: u64 = 0x4000_0000;
pub const PAGE: u64 = 4096;
pub const NOT_PRESENT: u64 = TEST_BASE;
pub const READ_ONLY: u64 = TEST_BASE + PAGE;
pub const NO_EXECUTE: u64 = TEST_BASE + 2 * PAGE;
pub const RESERVED_BIT: u64 = TEST_BASE + 3 * PAGE;

/// Page-table entry bits (SDM Table 5-20).
pub mod pte {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITABLE: u64 = 1 << 1;
    pub const NO_EXECUTE: u64 = 1 << 63;
}

#[repr(C, align(4096))]
struct Table([u64; 512]);
const _: () = assert!(size_of::<Table>() == 4096);

#[repr(C, align(4096))]
struct Frames([u8; 4 * PAGE as usize]);

static mut TEST_PD: Table = Table([0; 512]);
static mut TEST_PT: Table = Table([0; 512]);
#[unsafe(no_mangle)]
static mut LAB_TEST_FRAMES: Frames = Frames([0; 4 * PAGE as usize]);

unsafe extern "C" {
    static mut boot_pdpt: [u64; 512];
    static mut boot_pd: [u64; 512];
}

/// The first 2 MiB (kernel image, stacks) mapped with 4 KiB pages, so single pages (the
/// stack guard) can be left unmapped.
static mut LOW_PT: Table = Table([0; 512]);

/// First physical-address bit the CPU treats as reserved in paging entries (MAXPHYADDR,
/// CPUID 0x80000008 EAX[7:0]); a set reserved bit makes the walk fault with RSVD=1.
pub fn reserved_bit() -> u32 {
    let max = core::arch::x86_64::__cpuid(0x8000_0008).eax & 0xFF;
    max.min(51)
}

/// Maps the 2 MiB around the local APIC (0xFEE00000, in the 4th GiB) uncached.
static mut APIC_PD: Table = Table([0; 512]);

pub mod pte_cache {
    pub const PWT: u64 = 1 << 3;
    pub const PCD: u64 = 1 << 4;
    pub const PS: u64 = 1 << 7;
}

fn map_apic() {
    let base = crate::drivers::lapic::BASE;
    let gib = (base >> 30) as usize;
    let index = ((base >> 21) & 0x1FF) as usize;
    // SAFETY: PDPT entry `gib` is unused (the identity map covers the first GiB only).
    unsafe {
        (*(&raw mut APIC_PD)).0[index] = (base & !0x1F_FFFF) | pte::PRESENT | pte::WRITABLE
            | pte_cache::PWT | pte_cache::PCD | pte_cache::PS | pte::NO_EXECUTE;
        (*(&raw mut boot_pdpt))[gib] = (&raw const APIC_PD as u64) | pte::PRESENT | pte::WRITABLE;
    }
}

pub fn init() {
    map_apic();
    // SAFETY: single CPU during init; the tables are static and identity-mapped.
    unsafe {
        let guard = super::stacks::boot_stack_guard();
        let low = &mut *(&raw mut LOW_PT);
        for (i, entry) in low.0.iter_mut().enumerate() {
            let addr = i as u64 * PAGE;
            *entry = if addr == guard { 0 } else { addr | pte::PRESENT | pte::WRITABLE };
        }
        (*(&raw mut boot_pd))[0] = (&raw const LOW_PT as u64) | pte::PRESENT | pte::WRITABLE;
        let frames = &raw mut LAB_TEST_FRAMES as u64;
        let pt = &mut *(&raw mut TEST_PT);
        pt.0[0] = 0;
        pt.0[1] = (frames + PAGE) | pte::PRESENT;
        pt.0[2] = (frames + 2 * PAGE) | pte::PRESENT | pte::WRITABLE | pte::NO_EXECUTE;
        pt.0[3] = (frames + 3 * PAGE) | pte::PRESENT | pte::WRITABLE | (1u64 << reserved_bit());
        (*(&raw mut TEST_PD)).0[0] = (&raw const TEST_PT as u64) | pte::PRESENT | pte::WRITABLE;
        (*(&raw mut boot_pdpt))[1] = (&raw const TEST_PD as u64) | pte::PRESENT | pte::WRITABLE;
        // Reload CR3 to flush any stale translation of the new range.
        let (frame, flags) = x86_64::registers::control::Cr3::read();
        x86_64::registers::control::Cr3::write(frame, flags);
    }
}

/// One more 2 MiB page of the identity map split into 4 KiB pages, made when the first guard
/// page outside the first 2 MiB is unmapped (`unmap_guard`); SPLIT_PD_INDEX says which.
static mut HIGH_PT: Table = Table([0; 512]);
static mut SPLIT_PD_INDEX: usize = 0;
const TWO_MIB: u64 = 2 << 20;

/// Unmaps the 4 KiB page at `addr` (a stack's guard page): in the first 2 MiB, or in one other
/// 2 MiB page of the first GiB (the application processors' stacks, `smp`). Boot CPU only,
/// before the APs run.
pub fn unmap_guard(addr: u64) {
    assert!(addr < 1 << 30 && addr % PAGE == 0, "guard pages live in the identity-mapped first GiB");
    // SAFETY: the tables are static and identity-mapped; the page is a guard nobody uses.
    unsafe {
        let pt = if addr < TWO_MIB {
            &mut *(&raw mut LOW_PT)
        } else {
            let pd = &mut *(&raw mut boot_pd);
            let high = &mut *(&raw mut HIGH_PT);
            let index = (addr / TWO_MIB) as usize;
            let split = &mut *(&raw mut SPLIT_PD_INDEX);
            assert!(*split == 0 || *split == index, "one 2 MiB page beyond the first can be split");
            if pd[index] & pte_cache::PS != 0 {
                *split = index;
                for (i, e) in high.0.iter_mut().enumerate() {
                    *e = (index as u64 * TWO_MIB + i as u64 * PAGE) | pte::PRESENT | pte::WRITABLE;
                }
                pd[index] = (&raw const HIGH_PT as u64) | pte::PRESENT | pte::WRITABLE;
                let (frame, flags) = x86_64::registers::control::Cr3::read();
                x86_64::registers::control::Cr3::write(frame, flags);
            }
            high
        };
        pt.0[((addr % TWO_MIB) / PAGE) as usize] = 0;
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(addr));
    }
}

/// The virtual address of every process's private page (PML4 index 1): the same address
/// maps a different frame in each process, and nothing in the kernel's own address space.
pub const PROCESS_PRIVATE: u64 = 0x80_0000_0000;
pub const MAX_PROCESSES: usize = 3;
/// Per process: PML4, PDPT, PD, PT and the private frame.
const PAGES_PER_PROCESS: usize = 5;

static mut PROCESS_PAGES: [Table; MAX_PROCESSES * PAGES_PER_PROCESS] =
    [const { Table([0; 512]) }; MAX_PROCESSES * PAGES_PER_PROCESS];
static mut PROCESSES: usize = 0;

unsafe extern "C" {
    static boot_pml4: [u64; 512];
}

/// Builds a new address space: the kernel's PML4 entry 0 (identity map, test pages) shared,
/// plus PROCESS_PRIVATE mapped to a fresh frame. Returns its CR3, or None when the pool is
/// used up.
pub fn new_address_space() -> Option<u64> {
    // SAFETY: one CPU; the pool's pages are handed out once.
    unsafe {
        let n = PROCESSES;
        if n >= MAX_PROCESSES {
            return None;
        }
        PROCESSES = n + 1;
        let page = |i: usize| &raw mut PROCESS_PAGES[n * PAGES_PER_PROCESS + i];
        let (pml4, pdpt, pd, pt, frame) = (page(0), page(1), page(2), page(3), page(4));
        let rw = pte::PRESENT | pte::WRITABLE;
        (*pml4).0[0] = (*(&raw const boot_pml4))[0];
        (*pml4).0[1] = pdpt as u64 | rw;
        (*pdpt).0[0] = pd as u64 | rw;
        (*pd).0[0] = pt as u64 | rw;
        (*pt).0[0] = frame as u64 | rw | pte::NO_EXECUTE;
        Some(pml4 as u64)
    }
}

/// Where user programs live (PML4 index 2): code, data, stack, one page each.
pub const USER_BASE: u64 = 0x100_0000_0000;

pub mod pte_user {
    pub const USER: u64 = 1 << 2;
}

#[repr(C, align(4096))]
struct UserSpace {
    pml4: Table,
    pdpt: Table,
    pd: Table,
    pt: Table,
    frames: [[u8; PAGE as usize]; 3],
}

/// One user address space, rebuilt for every `user run` (runs are sequential).
static mut USER_SPACE: UserSpace = UserSpace {
    pml4: Table([0; 512]), pdpt: Table([0; 512]), pd: Table([0; 512]), pt: Table([0; 512]),
    frames: [[0; PAGE as usize]; 3],
};

/// Builds the user address space: the kernel's PML4 entry 0 (supervisor-only), and at
/// USER_BASE the code page (user, read-only), a data page and a stack page (user, writable,
/// no-execute), every level marked user. Copies `code` into the code page. Returns the CR3
/// and the code frame's physical address.
pub fn new_user_address_space(code: &[u8]) -> Option<(u64, u64)> {
    if code.len() > PAGE as usize {
        return None;
    }
    // SAFETY: one CPU; the previous user task is dead (runs are sequential).
    unsafe {
        let u = &mut *(&raw mut USER_SPACE);
        u.pml4.0 = [0; 512];
        u.pdpt.0 = [0; 512];
        u.pd.0 = [0; 512];
        u.pt.0 = [0; 512];
        u.frames = [[0; PAGE as usize]; 3];
        u.frames[0][..code.len()].copy_from_slice(code);
        let (p, w, us, nx) = (pte::PRESENT, pte::WRITABLE, pte_user::USER, pte::NO_EXECUTE);
        u.pml4.0[0] = (*(&raw const boot_pml4))[0];
        u.pml4.0[((USER_BASE >> 39) & 0x1FF) as usize] = &raw const u.pdpt as u64 | p | w | us;
        u.pdpt.0[0] = &raw const u.pd as u64 | p | w | us;
        u.pd.0[0] = &raw const u.pt as u64 | p | w | us;
        u.pt.0[0] = &raw const u.frames[0] as u64 | p | us;
        u.pt.0[1] = &raw const u.frames[1] as u64 | p | w | us | nx;
        u.pt.0[2] = &raw const u.frames[2] as u64 | p | w | us | nx;
        Some((&raw const u.pml4 as u64, &raw const u.frames[0] as u64))
    }
}

/// The four test-page addresses in table order (contract: the lab reads the #PF scenarios'
/// expected CR2 values from this symbol).
#[unsafe(no_mangle)]
#[used]
pub static LAB_TEST_PAGES: [u64; 4] = [NOT_PRESENT, READ_ONLY, NO_EXECUTE, RESERVED_BIT];
