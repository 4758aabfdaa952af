//! Entry paths. Each module brings the CPU from its loader's hand-off to `kernel_main` in 64-bit
//! mode with paging on, a flat 64-bit code segment, and RSP at the top of `BOOT_STACK`.
//! Everything after `kernel_main` is shared by all entry paths.

pub mod multiboot;

/// How the kernel was entered; reported by the `info` shell command.
#[derive(Clone, Copy)]
pub enum BootPath {
    Multiboot,
}

impl BootPath {
    pub const fn name(self) -> &'static str {
        match self {
            BootPath::Multiboot => "multiboot",
        }
    }
}
