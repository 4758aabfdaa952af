//! COM1 (I/O port 0x3F8), a 16550 UART: the kernel's console and the lab's command channel.

use core::fmt::{self, Write};

use spin::Mutex;
use uart_16550::SerialPort;

pub const COM1: u16 = 0x3F8;

pub static SERIAL: Mutex<SerialPort> = Mutex::new(unsafe { SerialPort::new(COM1) });

/// Programs the UART (8N1, FIFOs, receive interrupt enabled).
pub fn init() {
    SERIAL.lock().init();
}

pub fn write_fmt(args: fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = SERIAL.lock().write_fmt(args);
    });
}

/// Writes even when the lock is held (an exception or panic interrupted a writer).
pub fn write_fmt_forced(args: fmt::Arguments) {
    // SAFETY: the interrupted writer never resumes (the caller halts or is a fatal path).
    unsafe { SERIAL.force_unlock() };
    write_fmt(args);
}

#[macro_export]
macro_rules! serial_print {
    ($($arg:tt)*) => { $crate::drivers::serial::write_fmt(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! serial_println {
    () => { $crate::serial_print!("\r\n") };
    ($($arg:tt)*) => { $crate::serial_print!("{}\r\n", format_args!($($arg)*)) };
}
