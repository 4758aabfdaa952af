//! Ring 3: user programs, their address space, and what happens when they misbehave.
//!
//! A user program is a small position-independent block of code assembled into the kernel
//! image (`lab_user_<name>` .. `lab_user_<name>_end`) and copied into the code page of a fresh
//! address space: code at `USER_CODE` (user, read-only, executable), data at `USER_DATA` and a
//! stack page below `USER_STACK_TOP` (user, writable, no-execute). The task enters ring 3 with
//! `iretq` (SS=0x1b, CS=0x23, RFLAGS.IF=1). Faults in ring 3 kill the task, not the kernel.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::x86_64::gdt::sel;
use crate::arch::x86_64::handlers::InterruptFrame;
use crate::arch::x86_64::hooks;
use crate::arch::x86_64::idt::Style;
use crate::arch::x86_64::paging;
use crate::serial_println;

pub const USER_CODE: u64 = paging::USER_BASE;
pub const USER_STACK_TOP: u64 = paging::USER_BASE + 3 * paging::PAGE;
const USER_END: u64 = USER_STACK_TOP;
/// RFLAGS for ring 3: IF set, reserved bit 1 set.
const USER_RFLAGS: u64 = 0x202;
const BENCH_CALLS: u64 = 100_000;

core::arch::global_asm!(
    r#"
    .section .rodata.lab_user, "a"
    .macro USER name
        .global lab_user_\name
    lab_user_\name:
    .endm
    .macro USER_END name
        .global lab_user_\name\()_end
    lab_user_\name\()_end:
    .endm

    USER hello
    mov eax, {write}
    mov edi, 1
    lea rsi, [rip + 2f]
    mov edx, {hello_len}
    .global lab_user_hello_syscall
lab_user_hello_syscall:
    syscall
    mov eax, {getpid}
    syscall
    mov eax, {yield_}
    syscall
    mov eax, {exit}
    xor edi, edi
    syscall
    ud2
2:  .ascii "hello from ring 3"
3:
    USER_END hello

    USER badptr
    mov eax, {write}
    mov edi, 1
    mov rsi, 0x100000               /* a kernel address */
    mov edx, 16
    syscall
    mov rdi, rax                    /* exit with the error code write returned */
    mov eax, {exit}
    syscall
    ud2
    USER_END badptr

    USER hlt
    .global lab_user_hlt_fault
lab_user_hlt_fault:
    hlt                             /* privileged: #GP(0) at CPL 3 */
    ud2
    USER_END hlt

    USER cli
    .global lab_user_cli_fault
lab_user_cli_fault:
    cli                             /* IOPL 0 < CPL 3: #GP(0) */
    ud2
    USER_END cli

    USER kread
    .global lab_user_kread_fault
lab_user_kread_fault:
    mov rax, qword ptr [0x100000]   /* a supervisor page: #PF, error code P|U */
    ud2
    USER_END kread

    USER ac
    pushfq
    or qword ptr [rsp], 0x40000     /* RFLAGS.AC (CR0.AM is set by the kernel) */
    popfq
    lea rax, [rsp - 15]
    .global lab_user_ac_fault
lab_user_ac_fault:
    mov rbx, qword ptr [rax]        /* misaligned at CPL 3 with AC: #AC(0) */
    ud2
    USER_END ac

    USER spin
    mov ecx, 30000000
    .global lab_user_spin_loop
lab_user_spin_loop:
1:  dec rcx
    jnz 1b
    mov eax, {exit}
    xor edi, edi
    syscall
    ud2
    USER_END spin

    USER bench
    mov ebx, {bench}
1:  mov eax, {getpid}
    syscall
    dec rbx
    jnz 1b
    mov eax, {exit}
    xor edi, edi
    syscall
    ud2
    USER_END bench
    "#,
    write = const crate::syscall::nr::WRITE,
    getpid = const crate::syscall::nr::GETPID,
    yield_ = const crate::syscall::nr::YIELD,
    exit = const crate::syscall::nr::EXIT,
    bench = const BENCH_CALLS,
    hello_len = const HELLO.len(),
);

/// The `hello` program's message (its length is an immediate in the program).
const HELLO: &str = "hello from ring 3";

macro_rules! programs {
    ($($name:ident, $end:ident, $text:literal, $help:literal;)*) => {
        unsafe extern "C" { $( static $name: u8; static $end: u8; )* }
        pub struct Program { pub name: &'static str, pub help: &'static str, start: *const u8, end: *const u8 }
        // SAFETY: read-only code blocks in the kernel image.
        unsafe impl Sync for Program {}
        pub static PROGRAMS: &[Program] = &[
            $( Program { name: $text, help: $help, start: &raw const $name, end: &raw const $end }, )*
        ];
    };
}

programs! {
    lab_user_hello, lab_user_hello_end, "hello", "write, getpid, yield, exit(0)";
    lab_user_badptr, lab_user_badptr_end, "badptr", "write from a kernel address: -EFAULT, exit with it";
    lab_user_hlt, lab_user_hlt_end, "hlt", "hlt in ring 3: #GP, task killed";
    lab_user_cli, lab_user_cli_end, "cli", "cli in ring 3: #GP, task killed";
    lab_user_kread, lab_user_kread_end, "kread", "read a kernel page: #PF with U/S in the error code";
    lab_user_ac, lab_user_ac_end, "ac", "misaligned load with RFLAGS.AC and CR0.AM: #AC";
    lab_user_spin, lab_user_spin_end, "spin", "count down in ring 3 (interrupts arrive at CPL 3), exit(0)";
    lab_user_bench, lab_user_bench_end, "bench", "100000 getpid syscalls, exit(0)";
}

/// What the last user program did (read by `user run` and, through it, by the lab).
static RESULT_EXIT: AtomicU64 = AtomicU64::new(0);
static RESULT_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
static RESULT_ERROR: AtomicU64 = AtomicU64::new(u64::MAX);
static RESULT_RIP: AtomicU64 = AtomicU64::new(0);
static RESULT_CS: AtomicU64 = AtomicU64::new(0);
static START_TSC: AtomicU64 = AtomicU64::new(0);
static END_TSC: AtomicU64 = AtomicU64::new(0);
static SYSCALLS: AtomicU64 = AtomicU64::new(0);

fn user_range_ok(addr: u64, len: u64) -> bool {
    addr >= USER_CODE && len <= USER_END - USER_CODE && addr.checked_add(len).is_some_and(|e| e <= USER_END)
}

pub fn sys_write(fd: u64, buf: u64, len: u64) -> i64 {
    SYSCALLS.fetch_add(1, Ordering::Relaxed);
    if fd != 1 {
        return -9; // EBADF
    }
    if !user_range_ok(buf, len) {
        return crate::syscall::EFAULT;
    }
    // SAFETY: [buf, buf+len) lies in this process's user pages, mapped in the current CR3.
    let bytes = unsafe { core::slice::from_raw_parts(buf as *const u8, len as usize) };
    serial_println!("user: {}", core::str::from_utf8(bytes).unwrap_or("(not UTF-8)"));
    len as i64
}

pub fn sys_getpid() -> i64 {
    SYSCALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: current() points into TASKS.
    unsafe { (*crate::task::current()).id as i64 }
}

pub fn sys_exit(code: u64) -> i64 {
    END_TSC.store(crate::timer::rdtsc(), Ordering::SeqCst);
    RESULT_EXIT.store(code, Ordering::SeqCst);
    crate::task::exit_current()
}

/// Registers `on_user_fault` as a fault hook (arch `hooks`). Call once at boot, before
/// interrupts are enabled.
pub fn init() {
    hooks::register_fault_hook(on_user_fault);
}

/// The fault hook, called by every exception handler but `isr_bp` and `isr_df` for an
/// exception no scenario claimed: a fault at CPL 3 kills the task. Returns false otherwise.
pub fn on_user_fault(vector: u8, frame: *mut InterruptFrame, error: Option<u64>, _style: Style) -> bool {
    // SAFETY: the CPU-pushed frame.
    let cs = unsafe { (&raw const (*frame).cs).read_volatile() };
    if cs & 3 != 3 {
        return false;
    }
    lab_user_fault(vector as u64, frame, error.unwrap_or(u64::MAX))
}

/// The end of a user task that faulted. Unmangled, C ABI, for the lab: RDI = vector, RSI =
/// the CPU-pushed frame, RDX = error code (`u64::MAX`: none). Part of the contract.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lab_user_fault(vector: u64, frame: *const InterruptFrame, error: u64) -> ! {
    // SAFETY: the CPU-pushed frame.
    let f = unsafe { frame.read_volatile() };
    RESULT_VECTOR.store(vector, Ordering::SeqCst);
    RESULT_ERROR.store(error, Ordering::SeqCst);
    RESULT_RIP.store(f.rip, Ordering::SeqCst);
    RESULT_CS.store(f.cs, Ordering::SeqCst);
    END_TSC.store(crate::timer::rdtsc(), Ordering::SeqCst);
    // An interrupt from ring 3 does not swap GS: restore the kernel's before leaving for good.
    // SAFETY: GS_BASE is the user's here; after swapgs it is PERCPU again.
    unsafe { core::arch::asm!("swapgs", options(nostack, nomem)) };
    crate::task::exit_current()
}

/// The kernel half of a user task: enter ring 3 at the program's first instruction.
extern "C" fn user_task(_slot: u64) {
    START_TSC.store(crate::timer::rdtsc(), Ordering::SeqCst);
    // SAFETY: the process's pages are mapped in the current CR3; iretq drops to CPL 3.
    unsafe {
        core::arch::asm!(
            "cli",
            "swapgs",                       // GS_BASE <- the user's, KERNEL_GS_BASE <- PERCPU
            "push {ss}",
            "push {rsp}",
            "push {rflags}",
            "push {cs}",
            "push {rip}",
            "iretq",
            ss = const sel::USER_DATA as u64,
            cs = const sel::USER_CODE as u64,
            rflags = const USER_RFLAGS,
            rsp = in(reg) USER_STACK_TOP,
            rip = in(reg) USER_CODE,
            options(noreturn),
        )
    }
}

pub fn find(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// Runs `p` as a user process and waits for it to end; prints one result line.
pub fn run(p: &'static Program) {
    let len = p.end as usize - p.start as usize;
    // SAFETY: `start..end` is a block of the kernel image.
    let code = unsafe { core::slice::from_raw_parts(p.start, len) };
    let Some((cr3, code_frame)) = paging::new_user_address_space(code) else {
        return serial_println!("error: no free address space");
    };
    for a in [&RESULT_VECTOR, &RESULT_ERROR] {
        a.store(u64::MAX, Ordering::SeqCst);
    }
    RESULT_EXIT.store(0, Ordering::SeqCst);
    SYSCALLS.store(0, Ordering::SeqCst);
    let Some(slot) = crate::task::spawn_user(p.name, user_task, cr3) else {
        return serial_println!("error: no free task slot");
    };
    while !crate::task::is_dead(slot) {
        crate::task::schedule();
    }
    let cycles = END_TSC.load(Ordering::SeqCst) - START_TSC.load(Ordering::SeqCst);
    let vector = RESULT_VECTOR.load(Ordering::SeqCst);
    if vector != u64::MAX {
        let err = RESULT_ERROR.load(Ordering::SeqCst);
        serial_println!(
            "user fault name={} pid={slot} vector={vector} error_code={} rip={:#x} cs={:#x} code_frame={code_frame:#x}",
            p.name, if err == u64::MAX { -1 } else { err as i64 },
            RESULT_RIP.load(Ordering::SeqCst), RESULT_CS.load(Ordering::SeqCst)
        );
    } else {
        serial_println!(
            "user exit name={} pid={slot} code={} syscalls={} tsc_cycles={cycles} tsc_hz={}",
            p.name, RESULT_EXIT.load(Ordering::SeqCst) as i64, SYSCALLS.load(Ordering::SeqCst),
            crate::timer::tsc_hz()
        );
    }
}

/// Contract (kernel/CONTRACT.md): where user programs are mapped.
#[unsafe(no_mangle)]
#[used]
pub static LAB_USER_BASE: u64 = USER_CODE;
