//! The serial command shell: one command per line, answered on COM1.
//!
//! Each command prints its output and then a fresh prompt. Input is echoed so a person at
//! `just boot` sees what they type; the lab matches on the prompt and on each command's own
//! machine-readable output line.

use crate::arch::x86_64::{gdt, idt, stacks, tss};
use crate::boot::BootPath;
use crate::drivers::{debug_exit, serial::SERIAL};
use crate::{VERSION, serial_print, serial_println};

pub const PROMPT: &str = "lab> ";
const LINE_MAX: usize = 128;

struct Command {
    name: &'static str,
    usage: &'static str,
    help: &'static str,
    run: fn(&mut core::str::SplitWhitespace, BootPath),
}

const COMMANDS: &[Command] = &[
    Command { name: "help", usage: "help", help: "list commands", run: cmd_help },
    Command {
        name: "info",
        usage: "info",
        help: "one line: version and key addresses (key=value)",
        run: cmd_info,
    },
    Command {
        name: "exit",
        usage: "exit <code>",
        help: "leave QEMU through isa-debug-exit (QEMU exits with code*2+1)",
        run: cmd_exit,
    },
];

fn cmd_help(_: &mut core::str::SplitWhitespace, _: BootPath) {
    for c in COMMANDS {
        serial_println!("  {:<14} {}", c.usage, c.help);
    }
}

fn cmd_info(_: &mut core::str::SplitWhitespace, boot: BootPath) {
    serial_println!(
        "info version={VERSION} boot={} gdt={:#x} gdt_limit={:#x} idt={:#x} idt_limit={:#x} tss={:#x} \
         rsp0={:#x} ist1={:#x} ready={:#x}",
        boot.name(),
        gdt::base(),
        gdt::LIMIT,
        idt::base(),
        idt::LIMIT,
        tss::base(),
        stacks::top(&raw const stacks::RSP0_STACK),
        stacks::top(&raw const stacks::DOUBLE_FAULT_STACK),
        crate::lab_ready as *const () as usize,
    );
}

fn cmd_exit(args: &mut core::str::SplitWhitespace, _: BootPath) {
    match args.next().map(parse_u32) {
        Some(Some(code)) => debug_exit::exit(code),
        _ => serial_println!("error: usage: exit <code>  (code: decimal or 0x-hex u32)"),
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn execute(line: &str, boot: BootPath) {
    let mut words = line.split_whitespace();
    let Some(name) = words.next() else { return };
    match COMMANDS.iter().find(|c| c.name == name) {
        Some(c) => (c.run)(&mut words, boot),
        None => serial_println!("error: unknown command '{name}' (try 'help')"),
    }
}

/// Waits for one byte: sleeps in `hlt` until the UART's receive interrupt (IRQ4) fires.
fn read_byte() -> u8 {
    use x86_64::instructions::interrupts;
    loop {
        interrupts::disable();
        if let Ok(b) = SERIAL.lock().try_receive() {
            return b;
        }
        // `sti; hlt` is atomic with respect to interrupts (STI's one-instruction shadow).
        interrupts::enable_and_hlt();
    }
}

pub fn run(boot: BootPath) -> ! {
    let mut line = [0u8; LINE_MAX];
    let mut len = 0;
    let mut overflow = false;
    serial_print!("{PROMPT}");
    loop {
        match read_byte() {
            b'\r' | b'\n' => {
                serial_println!();
                if overflow {
                    serial_println!("error: line longer than {LINE_MAX} bytes");
                } else {
                    match core::str::from_utf8(&line[..len]) {
                        Ok(text) => execute(text, boot),
                        Err(_) => serial_println!("error: line is not UTF-8"),
                    }
                }
                len = 0;
                overflow = false;
                serial_print!("{PROMPT}");
            }
            0x08 | 0x7F => {
                if len > 0 {
                    len -= 1;
                    serial_print!("\x08 \x08");
                }
            }
            b if (0x20..0x7F).contains(&b) => {
                if len < LINE_MAX {
                    line[len] = b;
                    len += 1;
                    serial_print!("{}", b as char);
                } else {
                    overflow = true;
                }
            }
            _ => {} // other control bytes and non-ASCII are dropped
        }
    }
}
