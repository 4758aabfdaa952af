//! The lab kernel: a small x86-64 kernel the lab boots, inspects and pokes.
//!
//! The interface the lab relies on (ready marker, shell commands, exported symbols) is written
//! down in `kernel/CONTRACT.md`.

#![no_std]
#![no_main]
#![feature(abi_x86_interrupt)]

mod arch;
mod boot;
mod drivers;
mod fatal;
mod fire;
mod observer;
mod percpu;
mod shell;
mod smp;
mod syscall;
mod task;
mod timer;
mod trial;
mod user;

use arch::x86_64 as cpu;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Printed on COM1 once the descriptor tables are loaded and the shell is about to start.
pub const READY_MARKER: &str = "LAB-READY";

/// Where the lab puts its "kernel is ready" breakpoint. Called once, after `READY_MARKER` is
/// printed, with GDT, TSS and IDT loaded. Must stay a real, uninlined function.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lab_ready() {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// Kernel command-line switch: exit QEMU (isa-debug-exit, value 0) right after the ready
/// marker. Used to measure the bare boot time, with no lab attached.
pub const EXIT_AT_READY: &str = "lab.exit_at_ready";

pub fn kernel_main(boot: boot::BootPath, boot_info: u64, cmdline: &str) -> ! {
    drivers::serial::init();
    serial_println!();
    serial_println!("labkernel {VERSION} boot={} boot_info={boot_info:#x} cmdline={cmdline:?}", boot.name());
    // Features hook into the arch layer's handlers (arch/x86_64/hooks.rs) before any vector
    // can reach a handler: interrupts are off and the IDT is not loaded yet.
    observer::init(); // first: it records every exception, claims none
    fire::init(); // before smp::register: an AP's own `nmi` harness claims its NMI first
    user::init();
    fatal::init();
    timer::init();
    smp::register();
    cpu::init();
    drivers::pic::init();
    drivers::lapic::init();
    task::init();
    syscall::init();
    smp::init();
    boot_styles(cmdline);
    serial_println!("{READY_MARKER} version={VERSION} boot={}", boot.name());
    lab_ready();
    if cmdline.split_whitespace().any(|w| w == EXIT_AT_READY) {
        drivers::debug_exit::exit(0);
    }
    shell::run(boot)
}

/// `lab.style=stub|tutorial`: the exception gates in that handler style from the start, for a
/// fire that cannot type `style` at the shell (`lab fire --agnostic` at `lab_ready`). The
/// tutorial style only on the vectors that push an error code: it returns from no other.
pub const STYLE_OPTION: &str = "lab.style=";

fn boot_styles(cmdline: &str) {
    use arch::x86_64::idt::{self, Style};
    let Some(style) = cmdline.split_whitespace().find_map(|w| w.strip_prefix(STYLE_OPTION)) else {
        return;
    };
    let Some(style) = Style::parse(style) else {
        serial_println!("error: unknown handler style '{style}' in {STYLE_OPTION}");
        return;
    };
    for v in 0..32u8 {
        if style != Style::Tutorial || arch::x86_64::vectors_with_error_code(v) {
            idt::set_style(v, style);
        }
    }
    serial_println!("style vectors=0-31 {}", style.name());
}

pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    drivers::serial::write_fmt_forced(format_args!("PANIC: {info}\r\n"));
    halt_forever()
}
