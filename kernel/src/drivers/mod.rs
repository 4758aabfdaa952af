//! Device drivers: COM1 serial, the 8259 PIC pair, and QEMU's isa-debug-exit port.

pub mod debug_exit;
pub mod fw_cfg;
pub mod lapic;
pub mod pic;
pub mod pit;
pub mod serial;
