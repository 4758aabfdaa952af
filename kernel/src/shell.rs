//! The serial command shell: one command per line, answered on COM1.
//!
//! Each command prints its output and then a fresh prompt. Input is echoed so a person at
//! `just boot` sees what they type; the lab matches on the prompt and on each command's own
//! machine-readable output line.

use crate::arch::x86_64::idt::{self, Style};
use crate::arch::x86_64::{gdt, stacks, tss};
use crate::boot::BootPath;
use crate::drivers::{debug_exit, serial::SERIAL};
use crate::{fatal, task, timer, user};
use crate::fire;
use crate::{VERSION, serial_print, serial_println};

pub const PROMPT: &str = "lab> ";
const LINE_MAX: usize = 128;

/// One shell command. `usage` is the one copy of its syntax: `help` prints it, and so does
/// every error about how the command was typed (`usage_error`, `unknown`).
struct Command {
    name: &'static str,
    usage: &'static str,
    help: &'static str,
    run: fn(&Command, &mut Args, BootPath),
}

type Args<'a> = core::str::SplitWhitespace<'a>;

impl Command {
    /// `error: usage: <usage>`.
    fn usage_error(&self) {
        serial_println!("error: usage: {}", self.usage);
    }

    /// `error: unknown <what> '<word>'; usage: <usage>`, for a word that is not one of the
    /// choices the usage lists.
    fn unknown(&self, what: &str, word: &str) {
        serial_println!("error: unknown {what} '{word}'; usage: {}", self.usage);
    }
}

/// The usage table: `help` lists it, errors quote it.
const COMMANDS: &[Command] = &[
    Command { name: "help", usage: "help", help: "list commands", run: cmd_help },
    Command {
        name: "info",
        usage: "info",
        help: "one line: version and key addresses (key=value)",
        run: cmd_info,
    },
    Command {
        name: "fire",
        usage: "fire <scenario> [x86-interrupt|stub|tutorial] [vector]",
        help: "raise an exception from its harness (see 'scenarios'); the handler fixes it up and returns",
        run: cmd_fire,
    },
    Command {
        name: "observed",
        usage: "observed",
        help: "the in-guest observer's records not printed yet: a header, then 'record <hex>' lines",
        run: |_, _, _| crate::observer::print_new(),
    },
    Command {
        name: "scenarios",
        usage: "scenarios",
        help: "list the fire scenarios: name vector description",
        run: cmd_scenarios,
    },
    Command {
        name: "style",
        usage: "style <vector> <x86-interrupt|stub|tutorial>",
        help: "choose the handler style of one vector",
        run: cmd_style,
    },
    Command {
        name: "overflow",
        usage: "overflow [halt|recover]",
        help: "recurse into the stack's guard page: #PF cannot be delivered, #DF runs on IST1",
        run: cmd_overflow,
    },
    Command {
        name: "probe",
        usage: "probe <name>",
        help: "break the interrupt machinery, then trigger it (see 'probes'); triple-faults",
        run: cmd_probe,
    },
    Command {
        name: "probes",
        usage: "probes",
        help: "list the triple-fault probes",
        run: cmd_probes,
    },
    Command {
        name: "timer",
        usage: "timer pit <19-100000 hz> | apic periodic <1-100000 hz> | apic oneshot <1-10000000 us> \
                | apic calibrate | stop | pitfall <none|no-eoi|trap-gate|masked>",
        help: "PIT on IRQ0 (vector 32) or local APIC timer (vector 48); a pitfall applies at the next start",
        run: cmd_timer,
    },
    Command {
        name: "ticks",
        usage: "ticks",
        help: "one line: tick count, TSC, TSC Hz, configured rate, pitfall",
        run: |_, _, _| timer::report_ticks(),
    },
    Command {
        name: "measure",
        usage: "measure <1-10000 ms>",
        help: "count ticks over that many ms of TSC time, interrupts on",
        run: cmd_measure,
    },
    Command {
        name: "spawn",
        usage: "spawn <thread|process> <name>",
        help: "start a worker task (a process gets its own page tables)",
        run: cmd_spawn,
    },
    Command { name: "tasks", usage: "tasks", help: "one line per task", run: |_, _, _| task::list() },
    Command {
        name: "yield",
        usage: "yield",
        help: "let every other runnable task run once (cooperative switch)",
        run: |_, _, _| {
            task::schedule();
            serial_println!("yield switches={}", task::SWITCHES.load(core::sync::atomic::Ordering::SeqCst));
        },
    },
    Command {
        name: "sched",
        usage: "sched preempt <on|off>",
        help: "timer-driven preemption (needs a running timer, see 'timer')",
        run: cmd_sched,
    },
    Command {
        name: "switches",
        usage: "switches <1-10000 ms>",
        help: "yield in a loop for that many ms of TSC time; report context switches",
        run: cmd_switches,
    },
    Command {
        name: "user",
        usage: "user run <program> | user list",
        help: "run a ring-3 program in its own address space and report how it ended",
        run: cmd_user,
    },
    Command {
        name: "trial",
        usage: "trial <pairs|tlb|eoi|stacks|swapgs|tutorial>",
        help: "the tutorial texts' experiments (kernel/src/trial): measured lines, then 'trial done'",
        run: |cmd, args, _| match args.next() {
            Some(name) if crate::trial::execute(name) => {}
            Some(name) => cmd.unknown("trial", name),
            None => cmd.usage_error(),
        },
    },
    Command { name: "kill", usage: "kill", help: "end every task but the shell", run: |_, _, _| {
        task::kill_all();
        serial_println!("killed");
    } },
    Command { name: "on", usage: "on <cpu> fire <scenario> [x86-interrupt|stub] [vector] | on <cpu> swapgs | on <cpu> switch", help: "run a fire scenario, swapgs, or a context switch (an AP's next task), on that CPU", run: cmd_on },
    Command { name: "timers", usage: "timers <1-10000 ms> <cpu>:<hz> ...", help: "APs run their own local APIC timers at these rates, at once", run: |cmd, args, _| {
        if crate::smp::cmd_timers(args.next(), args).is_err() { cmd.usage_error() }
    } },
    Command { name: "cpus", usage: "cpus", help: "one line per CPU: TSS, stacks, GS base, IPIs taken", run: |_, _, _| crate::smp::list() },
    Command { name: "ipi", usage: "ipi <cpu> <fixed|nmi|triple>", help: "send an IPI to a CPU (fixed: a timed round trip; triple: it triple-faults)", run: |cmd, args, _| {
        if crate::smp::cmd_ipi(args.next(), args.next()).is_err() { cmd.usage_error() }
    } },
    Command {
        name: "exit",
        usage: "exit <code>",
        help: "leave QEMU through isa-debug-exit: QEMU exits with code*2+1 (code: decimal or 0x-hex u32)",
        run: cmd_exit,
    },
];

fn cmd_help(_: &Command, _: &mut Args, _: BootPath) {
    for c in COMMANDS {
        serial_println!("  {:<14} {}", c.usage, c.help);
    }
}

fn cmd_info(_: &Command, _: &mut Args, boot: BootPath) {
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

fn cmd_scenarios(_: &Command, _: &mut Args, _: BootPath) {
    for s in fire::SCENARIOS {
        serial_println!("  {:<16} {:>3}  {}", s.name, s.vector, s.help);
    }
}

fn parse_style(cmd: &Command, word: Option<&str>) -> Result<Style, ()> {
    match word {
        None => Ok(Style::X86Interrupt),
        Some(w) => Style::parse(w).ok_or_else(|| cmd.unknown("style", w)),
    }
}

/// `<scenario> [style] [vector]` of `fire` (and of `on <cpu> fire`); None after printing why not.
fn parse_fire(cmd: &Command, args: &mut Args) -> Option<(&'static fire::Scenario, Style, u8)> {
    let Some(name) = args.next() else {
        cmd.usage_error();
        return None;
    };
    let Some(scenario) = fire::find(name) else {
        serial_println!("error: unknown scenario '{name}' (see 'scenarios')");
        return None;
    };
    let style = parse_style(cmd, args.next()).ok()?;
    let vector = match args.next().map(parse_u32) {
        None => scenario.vector,
        Some(Some(v)) if scenario.name == "int" && v <= 255 => v as u8,
        Some(_) => {
            serial_println!("error: a vector (0-255) is only accepted by 'int'");
            return None;
        }
    };
    if scenario.name == "int" {
        let d = idt::LAB_IDT_DECL[vector as usize];
        if d.present == 0 || d.dpl != 3 && vector != fire::SOFT_INT_VECTOR && crate::arch::x86_64::vectors_with_error_code(vector) {
            serial_println!("error: int {vector}: no present gate, or the handler expects a CPU error code that int never pushes");
            return None;
        }
    }
    Some((scenario, style, vector))
}

fn cmd_fire(cmd: &Command, args: &mut Args, _: BootPath) {
    if let Some((scenario, style, vector)) = parse_fire(cmd, args) {
        fire::fire(scenario, style, vector);
    }
}

/// `on <cpu> fire <scenario> [style] [vector]`: the same scenario, run by CPU `<cpu>` (`smp`);
/// `on <cpu> swapgs`: what swapgs gives that CPU; `on <cpu> switch`: the AP switches to the next
/// task of its own table (`smp/switch.rs`).
fn cmd_on(cmd: &Command, args: &mut Args, _: BootPath) {
    let cpu = args.next().and_then(parse_u32);
    match (cpu, args.next()) {
        (Some(k), Some("fire")) => {
            if let Some((scenario, style, vector)) = parse_fire(cmd, args) {
                crate::smp::fire_on(k as usize, scenario, style, vector);
            }
        }
        (Some(k), Some("swapgs")) => crate::smp::swapgs_on(k as usize),
        (Some(k), Some("switch")) => crate::smp::switch_on(k as usize),
        _ => cmd.usage_error(),
    }
}

fn cmd_style(cmd: &Command, args: &mut Args, _: BootPath) {
    let vector = args.next().and_then(parse_u32).filter(|v| *v <= 255);
    match (vector, args.next().map(Style::parse)) {
        (Some(v), Some(Some(style))) => {
            idt::set_style(v as u8, style);
            serial_println!("style vector={v} {}", style.name());
        }
        _ => cmd.usage_error(),
    }
}

fn cmd_overflow(cmd: &Command, args: &mut Args, _: BootPath) {
    match args.next() {
        None | Some("halt") => fatal::overflow(fatal::AfterDoubleFault::Halt),
        Some("recover") => fatal::overflow(fatal::AfterDoubleFault::Recover),
        Some(other) => cmd.unknown("mode", other),
    }
}

fn cmd_probe(_: &Command, args: &mut Args, _: BootPath) {
    let name = args.next().unwrap_or("");
    if !fatal::probe(name) {
        serial_println!("error: unknown probe '{name}' (see 'probes')");
    }
}

fn cmd_probes(_: &Command, _: &mut Args, _: BootPath) {
    for p in fatal::PROBES {
        serial_println!("  {:<18} {}", p.name, p.help);
    }
}

/// The entry path `run` was started with, for `lab_shell_restart`.
static BOOT: spin::Once<BootPath> = spin::Once::new();

/// Where the #DF handler's recovery lands: a fresh boot stack, then the shell again.
#[unsafe(no_mangle)]
pub extern "C" fn lab_shell_restart() -> ! {
    serial_println!("shell restarted after a double fault");
    run(*BOOT.get().expect("the shell ran before"))
}

fn cmd_timer(cmd: &Command, args: &mut Args, _: BootPath) {
    match (args.next(), args.next()) {
        (Some("pit"), Some(hz)) => match parse_u32(hz).filter(|h| (19..=100_000).contains(h)) {
            Some(hz) => {
                let rate = timer::start_pit(hz);
                serial_println!("timer pit requested={hz} rate={rate} pitfall={}", timer::pitfall().name());
            }
            None => serial_println!("error: rate must be 19-100000 Hz"),
        },
        (Some("apic"), Some(mode)) => {
            let value = args.next().and_then(parse_u32);
            match (mode, value) {
                ("periodic", Some(hz)) if (1..=100_000).contains(&hz) => {
                    let rate = timer::start_apic_periodic(hz as u64);
                    serial_println!("timer apic periodic requested={hz} rate={rate} pitfall={}", timer::pitfall().name());
                }
                ("oneshot", Some(us)) if (1..=10_000_000).contains(&us) => {
                    let count = timer::start_apic_oneshot(us as u64);
                    serial_println!("timer apic oneshot us={us} count={count}");
                }
                ("calibrate", None) => {
                    let (by_pit, by_tsc) = crate::drivers::lapic::calibrate();
                    serial_println!("timer apic calibrate hz_by_pit={by_pit} hz_by_tsc={by_tsc}");
                }
                _ => cmd.usage_error(),
            }
        }
        (Some("stop"), None) => {
            timer::stop();
            serial_println!("timer stopped");
        }
        (Some("pitfall"), Some(p)) => match timer::Pitfall::parse(p) {
            Some(p) => {
                timer::set_pitfall(p);
                serial_println!("timer pitfall={}", p.name());
            }
            None => cmd.unknown("pitfall", p),
        },
        _ => cmd.usage_error(),
    }
}

fn cmd_measure(cmd: &Command, args: &mut Args, _: BootPath) {
    match args.next().and_then(parse_u32).filter(|ms| (1..=10_000).contains(ms)) {
        Some(ms) => {
            let (ticks, cycles, switches) = timer::measure(ms as u64);
            serial_println!("measure ms={ms} ticks={ticks} tsc_cycles={cycles} tsc_hz={} switches={switches}", timer::tsc_hz());
        }
        None => cmd.usage_error(),
    }
}

fn cmd_spawn(cmd: &Command, args: &mut Args, _: BootPath) {
    let (kind, name) = (args.next(), args.next().unwrap_or("worker"));
    let slot = match kind {
        Some("thread") => task::spawn_thread(name),
        Some("process") => task::spawn_process(name),
        _ => return cmd.usage_error(),
    };
    match slot {
        Some(id) => serial_println!("spawned id={id} kind={} name={name}", kind.unwrap()),
        None => serial_println!("error: no free task slot or address space"),
    }
}

fn cmd_user(cmd: &Command, args: &mut Args, _: BootPath) {
    match (args.next(), args.next()) {
        (Some("list"), None) => {
            for p in user::PROGRAMS {
                serial_println!("  {:<8} {}", p.name, p.help);
            }
        }
        (Some("run"), Some(name)) => match user::find(name) {
            Some(p) => user::run(p),
            None => serial_println!("error: unknown program '{name}' (see 'user list')"),
        },
        _ => cmd.usage_error(),
    }
}

fn cmd_sched(cmd: &Command, args: &mut Args, _: BootPath) {
    match (args.next(), args.next()) {
        (Some("preempt"), Some("on")) => task::set_preempt(true),
        (Some("preempt"), Some("off")) => task::set_preempt(false),
        _ => return cmd.usage_error(),
    }
    serial_println!("sched ok");
}

fn cmd_switches(cmd: &Command, args: &mut Args, _: BootPath) {
    match args.next().and_then(parse_u32).filter(|ms| (1..=10_000).contains(ms)) {
        Some(ms) => {
            let (n, cycles) = task::switch_rate(ms as u64);
            serial_println!("switches ms={ms} count={n} tsc_cycles={cycles} tsc_hz={}", timer::tsc_hz());
        }
        None => cmd.usage_error(),
    }
}

fn cmd_exit(cmd: &Command, args: &mut Args, _: BootPath) {
    match args.next().map(parse_u32) {
        Some(Some(code)) => debug_exit::exit(code),
        _ => cmd.usage_error(),
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
        Some(c) => (c.run)(c, &mut words, boot),
        None => serial_println!("error: unknown command '{name}' (try 'help')"),
    }
}

/// Waits for one byte: sleeps in `hlt` until the UART's receive interrupt (IRQ4) fires, or
/// polls while a timer pitfall keeps IRQs from arriving.
fn read_byte() -> u8 {
    use core::sync::atomic::Ordering;
    use x86_64::instructions::interrupts;
    loop {
        interrupts::disable();
        if let Ok(b) = SERIAL.lock().try_receive() {
            return b;
        }
        if timer::POLL_CONSOLE.load(Ordering::SeqCst) {
            interrupts::enable();
            core::hint::spin_loop();
            continue;
        }
        // `sti; hlt` is atomic with respect to interrupts (STI's one-instruction shadow).
        interrupts::enable_and_hlt();
    }
}

pub fn run(boot: BootPath) -> ! {
    BOOT.call_once(|| boot);
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
