//! QEMU's `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`): writing
//! `v` to the port makes QEMU exit with status `(v << 1) | 1`.

use x86_64::instructions::port::Port;

pub const PORT: u16 = 0xF4;

pub fn exit(code: u32) -> ! {
    // SAFETY: writing the debug-exit port has no effect on memory.
    unsafe { Port::<u32>::new(PORT).write(code) };
    // Without the device (e.g. another machine profile) the write is ignored.
    crate::serial_println!("exit: isa-debug-exit device absent; halting");
    crate::halt_forever()
}
