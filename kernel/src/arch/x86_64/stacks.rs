//! Statically allocated kernel stacks.
//!
//! Every stack is a symbol in the `.stacks` output section (see `linker.ld`): that is how the
//! lab recognises a *declared* stack when it checks that RSP0 and the IST entries point at the
//! top of one. Stacks grow down, so a stack's "top" is `&STACK + size_of(STACK)`; each is
//! 16-byte aligned because in 64-bit mode the CPU aligns RSP down to 16 bytes before pushing an
//! interrupt frame (SDM vol. 3A §6.14.2), and the System V ABI wants 16-byte alignment at calls.

/// A stack of `N` bytes, 16-byte aligned (page aligned, so guard pages can be placed later).
#[repr(C, align(4096))]
pub struct Stack<const N: usize>([u8; N]);

impl<const N: usize> Stack<N> {
    pub const fn new() -> Self {
        Stack([0; N])
    }
}

pub const BOOT_STACK_SIZE: usize = 64 * 1024;
pub const GUARD_SIZE: usize = 4096;

/// A stack with an unmapped guard page below it (`paging::init` unmaps `guard`): running off
/// the bottom faults instead of silently overwriting what lies below.
#[repr(C, align(4096))]
pub struct GuardedStack<const N: usize> {
    pub guard: [u8; GUARD_SIZE],
    pub stack: [u8; N],
}

impl<const N: usize> GuardedStack<N> {
    pub const fn new() -> Self {
        GuardedStack { guard: [0; GUARD_SIZE], stack: [0; N] }
    }
}

/// Offset of the top of `BOOT_STACK` from its symbol (guard page + stack).
pub const BOOT_STACK_TOP: usize = GUARD_SIZE + BOOT_STACK_SIZE;

/// The stack `kernel_main` and the shell run on, set up by the boot code. Its first 4 KiB are
/// the guard page (kernel/CONTRACT.md).
#[unsafe(no_mangle)]
#[unsafe(link_section = ".stacks")]
pub static mut BOOT_STACK: GuardedStack<BOOT_STACK_SIZE> = GuardedStack::new();

pub fn boot_stack_top() -> u64 {
    &raw const BOOT_STACK as u64 + BOOT_STACK_TOP as u64
}

pub fn boot_stack_guard() -> u64 {
    &raw const BOOT_STACK as u64
}
pub const RSP0_STACK_SIZE: usize = 16 * 1024;
pub const IST_STACK_SIZE: usize = 16 * 1024;

macro_rules! declare_stack {
    ($(#[$doc:meta])* $name:ident, $size:expr) => {
        $(#[$doc])*
        #[unsafe(no_mangle)]
        #[unsafe(link_section = ".stacks")]
        pub static mut $name: Stack<{ $size }> = Stack::new();
    };
}

declare_stack!(
    /// TSS.RSP0: the stack the CPU switches to on an interrupt from ring 3.
    RSP0_STACK, RSP0_STACK_SIZE);
declare_stack!(
    /// TSS.IST1: the double-fault stack.
    DOUBLE_FAULT_STACK, IST_STACK_SIZE);
declare_stack!(
    /// TSS.IST2: the NMI stack.
    NMI_STACK, IST_STACK_SIZE);
declare_stack!(
    /// TSS.IST3: the machine-check stack.
    MACHINE_CHECK_STACK, IST_STACK_SIZE);

/// Address one past the last byte of `stack`, the value to load into RSP.
pub fn top<const N: usize>(stack: *const Stack<N>) -> u64 {
    stack as u64 + N as u64
}

const _: () = assert!(core::mem::align_of::<Stack<16>>() % 16 == 0);
