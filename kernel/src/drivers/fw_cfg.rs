//! QEMU's firmware configuration device (fw_cfg), I/O-port interface, read only.
//!
//! QEMU docs/specs/fw_cfg.rst: write a 16-bit selector to port 0x510, then read the item's bytes
//! one at a time from port 0x511. Item 0x0000 is the signature "QEMU"; item 0x0019 is the file
//! directory: a big-endian u32 count, then one 64-byte `FWCfgFile` per file (big-endian u32 size,
//! big-endian u16 selector, u16 reserved, NUL-padded 56-byte name).
//!
//! The BIOS path has no loader command line; the lab passes one as the fw_cfg file
//! `opt/lab/cmdline` (`-fw_cfg name=opt/lab/cmdline,string=...`).

use core::mem::size_of;

use x86_64::instructions::port::Port;

pub const SELECTOR_PORT: u16 = 0x510;
pub const DATA_PORT: u16 = 0x511;
pub const SIGNATURE: u16 = 0x0000;
pub const FILE_DIR: u16 = 0x0019;

/// One directory entry as the device streams it (all fields big-endian).
#[repr(C)]
struct FileEntry {
    size: [u8; 4],
    select: [u8; 2],
    _reserved: [u8; 2],
    name: [u8; 56],
}
const _: () = assert!(size_of::<FileEntry>() == 64);

/// The file the lab writes the kernel command line into on the BIOS path.
pub const CMDLINE_FILE: &str = "opt/lab/cmdline";

fn select(item: u16) {
    // SAFETY: port I/O to QEMU's fw_cfg device; without it the reads return 0xFF.
    unsafe { Port::<u16>::new(SELECTOR_PORT).write(item) };
}

fn read(buf: &mut [u8]) {
    let mut port = Port::<u8>::new(DATA_PORT);
    for b in buf {
        // SAFETY: see `select`.
        *b = unsafe { port.read() };
    }
}

/// FW_CFG_NB_CPUS: the number of vCPUs (QEMU's -smp), little-endian u16.
const NB_CPUS: u16 = 0x0005;

/// How many vCPUs the machine has, or None without fw_cfg.
pub fn cpu_count() -> Option<u16> {
    let mut signature = [0u8; 4];
    select(SIGNATURE);
    read(&mut signature);
    if &signature != b"QEMU" {
        return None;
    }
    let mut n = [0u8; 2];
    select(NB_CPUS);
    read(&mut n);
    Some(u16::from_le_bytes(n))
}

/// Reads fw_cfg file `name` into `buf`; returns the bytes read, or None when the device or the
/// file is absent. A file longer than `buf` is cut to its length.
pub fn read_file<'a>(name: &str, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    let mut signature = [0u8; 4];
    select(SIGNATURE);
    read(&mut signature);
    if &signature != b"QEMU" {
        return None;
    }
    select(FILE_DIR);
    let mut count = [0u8; 4];
    read(&mut count);
    for _ in 0..u32::from_be_bytes(count) {
        let mut entry = [0u8; size_of::<FileEntry>()];
        read(&mut entry);
        // SAFETY: FileEntry is 64 bytes of byte arrays, any bit pattern is valid.
        let entry: FileEntry = unsafe { core::mem::transmute(entry) };
        let len = entry.name.iter().position(|&b| b == 0).unwrap_or(entry.name.len());
        if &entry.name[..len] == name.as_bytes() {
            let size = (u32::from_be_bytes(entry.size) as usize).min(buf.len());
            select(u16::from_be_bytes(entry.select));
            read(&mut buf[..size]);
            return Some(&buf[..size]);
        }
    }
    None
}
