//! The legacy 8259A PIC pair, remapped so IRQ0-15 arrive on vectors 32-47 (the CPU reserves
//! 0-31 for exceptions, SDM vol. 3A §6.2). Only the lines the kernel uses are unmasked.

use pic8259::ChainedPics;
use spin::Mutex;
use x86_64::instructions::port::Port;

use crate::arch::x86_64::idt::vector;

static PICS: Mutex<ChainedPics> =
    Mutex::new(unsafe { ChainedPics::new(vector::PIC1_OFFSET, vector::PIC2_OFFSET) });

/// Runs `f` with the PIC lock held and interrupts off. A handler entered through a trap gate
/// (the `trap-gate` timer pitfall) runs with IF=1: a tick that arrived while it held the lock
/// for its EOI would nest, and the nested handler would spin on the lock forever.
fn with_pics<R>(f: impl FnOnce(&mut ChainedPics) -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(|| f(&mut PICS.lock()))
}

const PIC1_COMMAND: u16 = 0x20;
const PIC2_COMMAND: u16 = 0xA0;
/// OCW3: read the in-service register on the next read of the command port.
const OCW3_READ_ISR: u8 = 0x0B;
const EOI: u8 = 0x20;

/// IRQ lines unmasked at boot: bit n = IRQn. COM1 is IRQ4.
const IRQ_COM1: u8 = 4;

pub fn init() {
    // SAFETY: the vectors above have handlers; interrupts are off while remapping.
    with_pics(|pics| unsafe {
        pics.initialize();
        pics.write_masks(!(1u8 << IRQ_COM1), 0xFF);
    })
}

/// Masks IRQ line `irq` (0-7 on the master).
pub fn mask(irq: u8) {
    // SAFETY: changes the master's mask register only.
    with_pics(|pics| unsafe {
        let [m, s] = pics.read_masks();
        pics.write_masks(m | (1 << irq), s);
    })
}

pub fn unmask(irq: u8) {
    // SAFETY: the vector for `irq` has a handler.
    with_pics(|pics| unsafe {
        let [m, s] = pics.read_masks();
        pics.write_masks(m & !(1 << irq), s);
    })
}

/// Whether IRQ `irq` (master) is in service (delivered, not yet acknowledged by EOI).
pub fn in_service(irq: u8) -> bool {
    with_pics(|_| isr(PIC1_COMMAND) & (1 << irq) != 0)
}

pub fn end_of_interrupt(vector: u8) {
    // SAFETY: called from the handler of `vector`.
    with_pics(|pics| unsafe { pics.notify_end_of_interrupt(vector) })
}

fn isr(command_port: u16) -> u8 {
    // SAFETY: OCW3 only selects which register the next read returns.
    unsafe {
        let mut port = Port::<u8>::new(command_port);
        port.write(OCW3_READ_ISR);
        port.read()
    }
}

/// Handles IRQ7 / IRQ15: real ones get an EOI, spurious ones do not (a spurious IRQ15 still
/// needs an EOI on the master for the cascade line).
pub fn spurious(vector: u8) {
    let (port, is_slave) = if vector == vector::PIC2_SPURIOUS { (PIC2_COMMAND, true) } else { (PIC1_COMMAND, false) };
    if isr(port) & 0x80 != 0 {
        end_of_interrupt(vector);
    } else if is_slave {
        // SAFETY: EOI to the master for the cascade IRQ2.
        unsafe { Port::<u8>::new(PIC1_COMMAND).write(EOI) };
    }
}
