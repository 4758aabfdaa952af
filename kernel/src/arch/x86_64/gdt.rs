//! The global descriptor table and the kernel's one table of selectors.
//!
//! Code/data descriptors: SDM vol. 3A §3.4.5 "Segment Descriptors", Figure 3-8, types in
//! §3.4.5.1 Table 3-1; in 64-bit mode base and limit are ignored for CS/DS/ES/SS and the L bit
//! selects 64-bit code (L=1 requires D=0, §5.2.1). The TSS descriptor is a 16-byte system
//! descriptor in 64-bit mode: SDM §8.2.3, Figure 8-4; AMD APM vol. 2 §4.8.3.
//!
//! The order (kernel code, kernel data, user data, user code) is the one `syscall`/`sysret`
//! need: SYSRET loads SS from STAR[63:48]+8 and CS from STAR[63:48]+16 (SDM vol. 2B, SYSRET).

use core::mem::size_of;

use super::tss;

#[allow(dead_code)] // the full table, used by later scenarios
/// Selectors: index * 8 | TI (0 = GDT) | RPL.
pub mod sel {
    pub const NULL: u16 = 0x00;
    pub const KERNEL_CODE: u16 = 0x08;
    pub const KERNEL_DATA: u16 = 0x10;
    pub const USER_DATA: u16 = 0x18 | 3;
    pub const USER_CODE: u16 = 0x20 | 3;
    /// 16-byte system descriptor: occupies indices 5 and 6.
    pub const TSS: u16 = 0x28;
    /// A data descriptor with P=0: loading it into DS raises #NP, into SS raises #SS.
    pub const NOT_PRESENT_DATA: u16 = 0x38;
}

/// Bit positions of a segment descriptor (as one little-endian u64), SDM Figure 3-8.
mod bit {
    pub const LIMIT_LOW: u32 = 0; // 16 bits
    pub const BASE_LOW: u32 = 16; // 24 bits
    pub const TYPE: u32 = 40; // 4 bits
    pub const S: u32 = 44; // 1 = code/data, 0 = system
    pub const DPL: u32 = 45; // 2 bits
    pub const P: u32 = 47;
    pub const LIMIT_HIGH: u32 = 48; // 4 bits
    pub const L: u32 = 53;
    pub const DB: u32 = 54;
    pub const G: u32 = 55;
    pub const BASE_HIGH: u32 = 56; // 8 bits
}

/// Type field values (Table 3-1 and §8.2.3).
mod ty {
    pub const DATA_RW_ACCESSED: u64 = 0x3;
    pub const CODE_XR_ACCESSED: u64 = 0xB;
    pub const TSS64_AVAILABLE: u64 = 0x9;
}

const fn code_data(ty: u64, dpl: u64, long: bool) -> u64 {
    (0xFFFF << bit::LIMIT_LOW)
        | (0xF << bit::LIMIT_HIGH)
        | (ty << bit::TYPE)
        | (1 << bit::S)
        | (dpl << bit::DPL)
        | (1 << bit::P)
        | ((long as u64) << bit::L)
        | ((!long as u64) << bit::DB)
        | (1 << bit::G)
}

/// The two halves of a 16-byte available 64-bit TSS descriptor.
pub fn tss_descriptor(base: u64, limit: u64) -> [u64; 2] {
    let low = (limit & 0xFFFF) << bit::LIMIT_LOW
        | (base & 0xFF_FFFF) << bit::BASE_LOW
        | ty::TSS64_AVAILABLE << bit::TYPE
        | 1 << bit::P
        | ((limit >> 16) & 0xF) << bit::LIMIT_HIGH
        | ((base >> 24) & 0xFF) << bit::BASE_HIGH;
    [low, base >> 32]
}

/// The base address a 16-byte system descriptor holds (`tss_descriptor`'s inverse, §8.2.3).
pub fn system_descriptor_base(d: [u64; 2]) -> u64 {
    (d[0] >> bit::BASE_LOW) & 0xFF_FFFF | ((d[0] >> bit::BASE_HIGH) & 0xFF) << 24 | (d[1] & 0xFFFF_FFFF) << 32
}

pub const KERNEL_CODE64: u64 = code_data(ty::CODE_XR_ACCESSED, 0, true);
pub const KERNEL_DATA: u64 = code_data(ty::DATA_RW_ACCESSED, 0, false);
pub const USER_DATA: u64 = code_data(ty::DATA_RW_ACCESSED, 3, false);
pub const USER_CODE64: u64 = code_data(ty::CODE_XR_ACCESSED, 3, true);
pub const NOT_PRESENT_DATA: u64 = KERNEL_DATA & !(1 << bit::P);

// Cross-check against the values Linux and the x86_64 crate use.
const _: () = assert!(KERNEL_CODE64 == 0x00af_9b00_0000_ffff);
const _: () = assert!(KERNEL_DATA == 0x00cf_9300_0000_ffff);
const _: () = assert!(USER_CODE64 == 0x00af_fb00_0000_ffff);
const _: () = assert!(USER_DATA == 0x00cf_f300_0000_ffff);

pub const ENTRIES: usize = 8;

#[repr(C, align(16))]
pub struct Gdt {
    pub entries: [u64; ENTRIES],
}

const _: () = assert!(size_of::<Gdt>() == 64);
const _: () = assert!(sel::NOT_PRESENT_DATA as usize / 8 + 1 == ENTRIES);

#[unsafe(no_mangle)]
pub static mut GDT: Gdt = Gdt {
    entries: [0, KERNEL_CODE64, KERNEL_DATA, USER_DATA, USER_CODE64, 0, 0, NOT_PRESENT_DATA],
};

/// The GDT limit loaded into GDTR: size of the used entries minus one.
pub const LIMIT: u16 = (ENTRIES * 8 - 1) as u16;

pub fn init() {
    use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
    use x86_64::instructions::tables::{lgdt, load_tss};
    use x86_64::structures::DescriptorTablePointer;
    use x86_64::structures::gdt::SegmentSelector;
    use x86_64::VirtAddr;

    let [low, high] = tss_descriptor(tss::base(), (size_of::<tss::TaskStateSegment>() - 1) as u64);
    // SAFETY: single CPU, interrupts off, GDT not yet loaded.
    unsafe {
        let gdt = &mut *(&raw mut GDT);
        gdt.entries[sel::TSS as usize / 8] = low;
        gdt.entries[sel::TSS as usize / 8 + 1] = high;
        lgdt(&DescriptorTablePointer { limit: LIMIT, base: VirtAddr::new(&raw const GDT as u64) });
        CS::set_reg(SegmentSelector(sel::KERNEL_CODE));
        SS::set_reg(SegmentSelector(sel::KERNEL_DATA));
        DS::set_reg(SegmentSelector(sel::KERNEL_DATA));
        ES::set_reg(SegmentSelector(sel::KERNEL_DATA));
        FS::set_reg(SegmentSelector(sel::NULL));
        GS::set_reg(SegmentSelector(sel::NULL));
        // LTR marks the descriptor busy (type 0x9 -> 0xB), SDM §8.2.4.
        load_tss(SegmentSelector(sel::TSS));
    }
}

pub fn base() -> u64 {
    &raw const GDT as u64
}
