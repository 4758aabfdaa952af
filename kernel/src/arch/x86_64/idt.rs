//! The interrupt descriptor table, the kernel's one table of vectors, and the declared gate
//! table the lab checks the live IDT against.
//!
//! Gate layout: SDM vol. 3A §6.14.1, Figure 6-8 "64-Bit IDT Gate Descriptors"; AMD APM vol. 2
//! §4.8.4. Interrupt gates (type 0xE) clear RFLAGS.IF on entry, trap gates (0xF) leave it
//! (SDM §6.12.1.3). The IST field counts from 1; 0 means "no stack switch unless CPL changes".

use core::mem::size_of;

use super::gdt::sel;
use super::handlers as h;
use super::tss::ist;

#[allow(dead_code)] // the full table, used by later scenarios
/// The kernel's vector numbers (SDM vol. 3A §6.3, Table 6-1, for 0-31).
pub mod vector {
    pub const DIVIDE_ERROR: u8 = 0;
    pub const DEBUG: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BREAKPOINT: u8 = 3;
    pub const OVERFLOW: u8 = 4;
    pub const DOUBLE_FAULT: u8 = 8;
    pub const GENERAL_PROTECTION: u8 = 13;
    pub const MACHINE_CHECK: u8 = 18;
    /// The 8259 PIC's IRQ0..15 are remapped to 32..47.
    pub const PIC1_OFFSET: u8 = 32;
    pub const PIC2_OFFSET: u8 = 40;
    pub const TIMER: u8 = PIC1_OFFSET; // IRQ0, PIT
    pub const SERIAL: u8 = PIC1_OFFSET + 4; // IRQ4, COM1
    pub const PIC1_SPURIOUS: u8 = PIC1_OFFSET + 7; // IRQ7
    pub const PIC2_SPURIOUS: u8 = PIC2_OFFSET + 7; // IRQ15
    pub const APIC_SPURIOUS: u8 = 0xFF;
    /// The local APIC timer.
    pub const APIC_TIMER: u8 = 0x30;
    /// Fixed inter-processor interrupts between CPUs (`smp`).
    pub const IPI: u8 = 0x31;
    /// Software interrupt for the `int` scenario (a ring-3-callable trap gate).
    pub const SOFT_INT: u8 = 0x80;
    /// A valid interrupt gate with P=0: `int` to it raises #NP (`np` scenario).
    pub const NOT_PRESENT_GATE: u8 = 0x41;
    /// Left all-zero (type 0 is invalid in IA-32e mode): `int` to it raises #GP (`gp-nogate`).
    pub const ZERO_GATE: u8 = 0x42;
}

/// Gate types (SDM Table 3-2, 64-bit mode column).
pub mod gate_type {
    pub const INTERRUPT: u8 = 0xE;
    pub const TRAP: u8 = 0xF;
}

/// One 16-byte gate, field order as in Figure 6-8.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Gate {
    offset_low: u16,
    selector: u16,
    /// Bits 0-2: IST number; bits 3-7 reserved, zero.
    ist: u8,
    /// Bits 0-3: type; bit 4: zero; bits 5-6: DPL; bit 7: present.
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    _reserved: u32,
}

const _: () = assert!(size_of::<Gate>() == 16);

mod attr {
    pub const TYPE_MASK: u8 = 0x0F;
    pub const DPL_SHIFT: u8 = 5;
    pub const PRESENT: u8 = 1 << 7;
    pub const IST_MASK: u8 = 0x07;
}

impl Gate {
    pub const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        _reserved: 0,
    };

    pub fn new(handler: u64, selector: u16, decl: GateDecl) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            ist: decl.ist & attr::IST_MASK,
            attributes: (decl.gate_type & attr::TYPE_MASK)
                | (decl.dpl << attr::DPL_SHIFT)
                | if decl.present != 0 { attr::PRESENT } else { 0 },
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            _reserved: 0,
        }
    }
}

impl Gate {
    pub fn set_ist(&mut self, ist: u8) {
        self.ist = ist & attr::IST_MASK;
    }
    pub fn set_present(&mut self, present: bool) {
        self.attributes = (self.attributes & !attr::PRESENT) | if present { attr::PRESENT } else { 0 };
    }
    pub fn set_selector(&mut self, selector: u16) {
        self.selector = selector;
    }
    pub fn set_type(&mut self, gate_type: u8) {
        self.attributes = (self.attributes & !attr::TYPE_MASK) | (gate_type & attr::TYPE_MASK);
    }
    pub fn present(&self) -> bool {
        self.attributes & attr::PRESENT != 0
    }
}

/// Edits one live gate (the triple-fault probes break the IDT on purpose).
pub fn edit(vector: u8, f: impl FnOnce(&mut Gate)) {
    // SAFETY: single CPU; the probes run with interrupts that use these gates not in flight.
    unsafe { f(&mut (*(&raw mut IDT)).gates[vector as usize]) };
}

/// Reloads IDTR with `limit` (probe `idt-limit0`).
pub fn load_with_limit(limit: u16) {
    use x86_64::VirtAddr;
    use x86_64::structures::DescriptorTablePointer;
    // SAFETY: the base stays the kernel's IDT; a short limit makes delivery fault, as intended.
    unsafe { x86_64::instructions::tables::lidt(&DescriptorTablePointer { limit, base: VirtAddr::new(base()) }) };
}

pub const ENTRIES: usize = 256;

#[repr(C, align(16))]
pub struct Idt {
    pub gates: [Gate; ENTRIES],
}

const _: () = assert!(size_of::<Idt>() == 4096);

#[unsafe(no_mangle)]
pub static mut IDT: Idt = Idt { gates: [Gate::MISSING; ENTRIES] };

/// What the kernel intends each gate to be. Part of the kernel/lab contract
/// (kernel/CONTRACT.md): the lab reads this symbol from the ELF and compares the live IDT with it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GateDecl {
    pub present: u8,
    pub gate_type: u8,
    pub dpl: u8,
    pub ist: u8,
}

const _: () = assert!(size_of::<GateDecl>() == 4);

const fn decl(gate_type: u8, dpl: u8, ist: u8) -> GateDecl {
    GateDecl { present: 1, gate_type, dpl, ist }
}

const fn build_decl() -> [GateDecl; ENTRIES] {
    let absent = GateDecl { present: 0, gate_type: 0, dpl: 0, ist: 0 };
    let mut d = [absent; ENTRIES];
    let mut v = 0;
    while v < 32 {
        d[v] = decl(gate_type::INTERRUPT, 0, 0);
        v += 1;
    }
    // #BP and #OF are traps callable from ring 3 (`int3`, `into`).
    d[vector::BREAKPOINT as usize] = decl(gate_type::TRAP, 3, 0);
    d[vector::OVERFLOW as usize] = decl(gate_type::TRAP, 3, 0);
    // Events that must not run on a possibly broken stack get their own IST stack.
    d[vector::DOUBLE_FAULT as usize] = decl(gate_type::INTERRUPT, 0, ist::DOUBLE_FAULT);
    d[vector::NMI as usize] = decl(gate_type::INTERRUPT, 0, ist::NMI);
    d[vector::MACHINE_CHECK as usize] = decl(gate_type::INTERRUPT, 0, ist::MACHINE_CHECK);
    d[vector::TIMER as usize] = decl(gate_type::INTERRUPT, 0, 0);
    d[vector::SERIAL as usize] = decl(gate_type::INTERRUPT, 0, 0);
    d[vector::PIC1_SPURIOUS as usize] = decl(gate_type::INTERRUPT, 0, 0);
    d[vector::PIC2_SPURIOUS as usize] = decl(gate_type::INTERRUPT, 0, 0);
    d[vector::APIC_SPURIOUS as usize] = decl(gate_type::INTERRUPT, 0, 0);
    d[vector::SOFT_INT as usize] = decl(gate_type::TRAP, 3, 0);
    d[vector::APIC_TIMER as usize] = decl(gate_type::INTERRUPT, 0, 0);
    d[vector::IPI as usize] = decl(gate_type::INTERRUPT, 0, 0);
    d[vector::NOT_PRESENT_GATE as usize] = GateDecl { present: 0, gate_type: gate_type::INTERRUPT, dpl: 0, ist: 0 };
    d
}

#[unsafe(no_mangle)]
#[used]
pub static LAB_IDT_DECL: [GateDecl; ENTRIES] = build_decl();

/// The IDT limit loaded into IDTR.
pub const LIMIT: u16 = (ENTRIES * size_of::<Gate>() - 1) as u16;

pub fn init() {
    use x86_64::VirtAddr;
    use x86_64::instructions::tables::lidt;
    use x86_64::structures::DescriptorTablePointer;

    // SAFETY: single CPU, interrupts off.
    let idt = unsafe { &mut *(&raw mut IDT) };
    for (v, handler) in h::handler_table().iter().enumerate() {
        let d = LAB_IDT_DECL[v];
        match handler {
            Some(addr) if d.present != 0 => idt.gates[v] = Gate::new(*addr, sel::KERNEL_CODE, d),
            // A typed gate with P=0 (no handler): delivery checks the type, then P (#NP).
            None if d.present == 0 && d.gate_type != 0 => idt.gates[v] = Gate::new(0, sel::KERNEL_CODE, d),
            None if d.present == 0 => {}
            _ => panic!("vector {v}: handler table and LAB_IDT_DECL disagree"),
        }
    }
    // SAFETY: IDT is a static with 'static lifetime.
    unsafe { lidt(&DescriptorTablePointer { limit: LIMIT, base: VirtAddr::new(&raw const IDT as u64) }) };
}

pub fn base() -> u64 {
    &raw const IDT as u64
}

/// The handler styles a gate can point at: the compiler's `extern "x86-interrupt"`
/// functions (`handlers.rs`) or the hand-written entry stubs that build a `TrapFrame`
/// (`stubs.rs`). The discriminants are the `style` argument of the exception hooks' C-ABI
/// side (`lab_on_exception`, the observer's records: 0 x86-interrupt, 1 stub, 2 tutorial;
/// `lab/labkernel/observer.py` STYLES).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
pub enum Style {
    X86Interrupt,
    Stub,
    /// Seed 002's stub (`tutorial_stubs.rs`): returns correctly only where an error code was pushed.
    Tutorial,
}

impl Style {
    pub fn parse(s: &str) -> Option<Style> {
        match s {
            "x86-interrupt" => Some(Style::X86Interrupt),
            "stub" => Some(Style::Stub),
            "tutorial" => Some(Style::Tutorial),
            _ => None,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            Style::X86Interrupt => "x86-interrupt",
            Style::Stub => "stub",
            Style::Tutorial => "tutorial",
        }
    }
}

/// Points `vector`'s gate at the handler of `style`, keeping its declared attributes.
/// Vectors without a stub keep their compiler-ABI handler.
pub fn set_style(vector: u8, style: Style) {
    let d = LAB_IDT_DECL[vector as usize];
    if d.present == 0 {
        return;
    }
    let handler = match style {
        Style::Stub => super::stubs::stub_for(vector),
        Style::Tutorial => super::tutorial_stubs::stub_for(vector),
        Style::X86Interrupt => h::handler_table()[vector as usize],
    };
    if let Some(addr) = handler {
        let gate = Gate::new(addr, sel::KERNEL_CODE, d);
        // SAFETY: one 16-byte store per field on the only CPU; the gate is not in use (we are
        // not inside a handler for `vector`).
        unsafe { (&raw mut IDT.gates[vector as usize]).write_volatile(gate) };
    }
}
