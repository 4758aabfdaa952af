//! Kernel threads, processes and the scheduler.
//!
//! `lab_switch_to(prev, next)` is the whole context switch: it pushes the callee-saved
//! registers (System V ABI: rbx, rbp, r12-r15) on the outgoing task's kernel stack, stores RSP
//! in `prev.rsp`, loads `next.rsp` (the one instruction that changes stacks, at the label
//! `lab_switch_to_stack`), makes `next` current and sets TSS.RSP0 to `next`'s kernel stack top,
//! both through GS (`gs:[current]`, the TSS at `gs:[tss]`: this CPU's own, `percpu.rs`), so the
//! one routine serves every CPU,
//! loads `next.cr3` when it differs (a process switch; threads share the address space), then
//! pops and returns into `next`. A sleeping task's stack therefore holds, from its saved RSP
//! up: r15, r14, r13, r12, rbp, rbx, return address (`SwitchFrame`).
//!
//! Scheduling is round robin over the runnable tasks of the running CPU's own table (the boot
//! CPU's `TASKS`; AP k's `smp::AP_TASKS[k - 1]`, its idle context and one worker): cooperative
//! through `yield` (`on <cpu> switch` on an AP), or preemptive from the timer tick when
//! `sched preempt on` (boot CPU).

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::x86_64::stacks::{self, Stack};
use crate::arch::x86_64::tss;
use crate::serial_println;

pub const MAX_TASKS: usize = 8;
pub const TASK_STACK_SIZE: usize = 16 * 1024;
pub const NAME_LEN: usize = 16;

#[repr(u64)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum State {
    Unused = 0,
    Runnable = 1,
    Running = 2,
    Dead = 3,
}

/// One task. Layout declared here and in `lab/experiments/tasks.py`; the lab also checks it against the
/// DWARF the compiler emits for this struct.
#[repr(C)]
pub struct Task {
    /// Saved kernel RSP while the task is switched out (points at its `SwitchFrame`).
    pub rsp: u64,
    /// Top of the task's kernel stack: TSS.RSP0 while it runs.
    pub kstack_top: u64,
    /// Its address space (physical address of its PML4).
    pub cr3: u64,
    pub id: u64,
    pub state: u64,
    /// Times the task was switched in.
    pub switches: u64,
    /// Work done: the task body increments it.
    pub counter: u64,
    pub name: [u8; NAME_LEN],
}

const _: () = assert!(size_of::<Task>() == 0x48);
const _: () = assert!(offset_of!(Task, rsp) == 0x00);
const _: () = assert!(offset_of!(Task, kstack_top) == 0x08);
const _: () = assert!(offset_of!(Task, cr3) == 0x10);
const _: () = assert!(offset_of!(Task, state) == 0x20);
const _: () = assert!(offset_of!(Task, counter) == 0x30);

/// What `lab_switch_to` leaves on a sleeping task's stack, lowest address first.
#[repr(C)]
pub struct SwitchFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub ret: u64,
}
const _: () = assert!(size_of::<SwitchFrame>() == 7 * 8);

pub use crate::percpu::{PERCPU, PerCpu, current, percpu_off, this_cpu};

pub const EMPTY: Task = Task { rsp: 0, kstack_top: 0, cr3: 0, id: 0, state: State::Unused as u64,
                           switches: 0, counter: 0, name: [0; NAME_LEN] };

#[unsafe(no_mangle)]
pub static mut TASKS: [Task; MAX_TASKS] = [EMPTY; MAX_TASKS];

#[unsafe(no_mangle)]
#[unsafe(link_section = ".stacks")]
static mut TASK_STACKS: [Stack<TASK_STACK_SIZE>; MAX_TASKS - 1] = [const { Stack::new() }; MAX_TASKS - 1];

static PREEMPT: AtomicBool = AtomicBool::new(false);
/// The boot CPU's switches (`yield`, `switches`, `measure`); every CPU also counts its own in
/// its `PerCpu.switches`.
pub static SWITCHES: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    r#"
    .section .text.lab_switch_to, "ax", @progbits
    .global lab_switch_to
    .type lab_switch_to, @function
lab_switch_to:                      /* rdi = prev, rsi = next */
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [rdi + {rsp}], rsp
    .global lab_switch_to_stack
lab_switch_to_stack:
    mov rsp, [rsi + {rsp}]
    mov gs:[{current}], rsi         /* this CPU's PerCpu.current = next */
    mov rax, [rsi + {kstack}]
    mov rcx, gs:[{tss}]             /* this CPU's own TSS */
    mov [rcx + {rsp0}], rax         /* its RSP0 = next.kstack_top */
    mov gs:[{kernel_rsp}], rax      /* and the syscall entry's stack */
    mov rax, [rsi + {cr3}]
    mov rcx, cr3
    cmp rax, rcx
    je 1f
    mov cr3, rax                    /* a process switch */
1:  pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
    .size lab_switch_to, . - lab_switch_to

    /* A new task's first `ret` from lab_switch_to lands here: r12 = body, r13 = argument. */
    .global lab_task_start
    .type lab_task_start, @function
lab_task_start:
    sti
    mov rdi, r13
    call r12
    call {exit}
    ud2
    .size lab_task_start, . - lab_task_start
    "#,
    rsp = const offset_of!(Task, rsp),
    kstack = const offset_of!(Task, kstack_top),
    cr3 = const offset_of!(Task, cr3),
    current = const percpu_off::CURRENT,
    kernel_rsp = const percpu_off::KERNEL_RSP,
    tss = const percpu_off::TSS,
    rsp0 = const tss::RSP0_OFFSET,
    exit = sym task_exit,
);

unsafe extern "C" {
    fn lab_switch_to(prev: *mut Task, next: *mut Task);
    fn lab_task_start();
}

fn tasks() -> &'static mut [Task; MAX_TASKS] {
    // SAFETY: one CPU; callers run with interrupts off or only touch their own task.
    unsafe { &mut *(&raw mut TASKS) }
}

fn set_name(t: &mut Task, name: &str) {
    t.name = [0; NAME_LEN];
    for (d, s) in t.name.iter_mut().zip(name.bytes().take(NAME_LEN - 1)) {
        *d = s;
    }
}

pub fn name(t: &Task) -> &str {
    let len = t.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
    core::str::from_utf8(&t.name[..len]).unwrap_or("?")
}

pub fn kernel_cr3() -> u64 {
    x86_64::registers::control::Cr3::read().0.start_address().as_u64()
}

/// Task 0 is the context the kernel booted in (the shell).
pub fn init() {
    let t = &mut tasks()[0];
    t.kstack_top = stacks::boot_stack_top();
    t.cr3 = kernel_cr3();
    t.state = State::Running as u64;
    set_name(t, "shell");
    // SAFETY: one CPU, interrupts off. GS_BASE = PERCPU while in the kernel; the user's GS
    // (KERNEL_GS_BASE while in the kernel) starts as 0.
    unsafe {
        let p = &mut *(&raw mut PERCPU);
        p.current = t;
        p.kernel_rsp = t.kstack_top;
        p.self_ptr = &raw const PERCPU as u64;
        p.tss = tss::base();
        p.cpu = 0;
        use x86_64::registers::model_specific::{GsBase, KernelGsBase};
        GsBase::write(x86_64::VirtAddr::new(p.self_ptr));
        KernelGsBase::write(x86_64::VirtAddr::new(0));
    }
}

/// Creates a task running `body(slot)` on its own kernel stack, in `cr3`'s address space.
fn spawn(name_: &str, body: extern "C" fn(u64), cr3: u64) -> Option<usize> {
    let slot = tasks().iter().position(|t| t.state == State::Unused as u64 || t.state == State::Dead as u64)?;
    if slot == 0 {
        return None;
    }
    // SAFETY: the slot's stack is unused (its task is unused or dead).
    let stack_top = stacks::top(unsafe { &raw const TASK_STACKS[slot - 1] });
    // SAFETY: the slot and its stack are unused.
    unsafe { make_task(&mut tasks()[slot], name_, slot as u64, stack_top, body, slot as u64, cr3) };
    Some(slot)
}

/// Makes `t` a runnable task `id` that starts in `body(arg)` on the stack below `stack_top`, in
/// `cr3`'s address space (its first switch-in `ret`s into `lab_task_start`).
///
/// # Safety
/// `t` is not running and the stack below `stack_top` is unused.
pub unsafe fn make_task(t: &mut Task, name_: &str, id: u64, stack_top: u64, body: extern "C" fn(u64), arg: u64,
                        cr3: u64) {
    let frame = SwitchFrame { r15: 0, r14: 0, r13: arg, r12: body as *const () as u64, rbp: 0, rbx: 0,
                              ret: lab_task_start as *const () as u64 };
    // Keep the ABI's alignment: RSP is 8 mod 16 at a function's entry, and `lab_task_start`'s
    // `call` must find RSP 16-byte aligned, so the frame's end sits 16 below the top.
    let rsp = stack_top - 16 - size_of::<SwitchFrame>() as u64;
    // SAFETY: writes into this task's own, unused stack (the caller's promise).
    unsafe { (rsp as *mut SwitchFrame).write(frame) };
    *t = EMPTY;
    t.rsp = rsp;
    t.kstack_top = stack_top;
    t.cr3 = cr3;
    t.id = id;
    set_name(t, name_);
    t.state = State::Runnable as u64;
}

/// Makes `t` the context a CPU already runs in (its first task, `id`), on the kernel stack
/// whose top is `kstack_top`.
pub fn make_running(t: &mut Task, name_: &str, id: u64, kstack_top: u64) {
    *t = EMPTY;
    t.kstack_top = kstack_top;
    t.cr3 = kernel_cr3();
    t.id = id;
    set_name(t, name_);
    t.state = State::Running as u64;
}

extern "C" fn worker(slot: u64) {
    loop {
        {
            let t = &mut tasks()[slot as usize];
            t.counter = t.counter.wrapping_add(1);
            if t.state == State::Dead as u64 {
                break;
            }
        }
        if !PREEMPT.load(Ordering::Relaxed) {
            schedule();
        } else {
            core::hint::spin_loop();
        }
    }
    task_exit();
}

extern "C" fn process_worker(slot: u64) {
    // This process's private page (same virtual address in every process, another frame).
    let private = crate::arch::x86_64::paging::PROCESS_PRIVATE as *mut u64;
    // SAFETY: mapped in this process's address space only.
    unsafe { private.write_volatile(0x5000 + slot) };
    worker(slot);
}

extern "C" fn task_exit() {
    let t = current();
    // SAFETY: the current task marks itself dead; it is never switched in again.
    unsafe { (*t).state = State::Dead as u64 };
    loop {
        schedule();
    }
}

/// A user process: `body` runs in kernel mode in `cr3`'s address space and drops to ring 3.
pub fn spawn_user(name_: &str, body: extern "C" fn(u64), cr3: u64) -> Option<usize> {
    spawn(name_, body, cr3)
}

pub fn is_dead(slot: usize) -> bool {
    tasks()[slot].state == State::Dead as u64
}

/// Ends the current task (never returns).
pub fn exit_current() -> ! {
    task_exit();
    unreachable!()
}

/// This CPU's own task table: the boot CPU's `TASKS`, AP k's `smp::AP_TASKS[k - 1]`.
fn cpu_tasks() -> &'static mut [Task] {
    // SAFETY: GS is this CPU's area (`this_cpu`); each table is used by its own CPU alone.
    match unsafe { (*this_cpu()).cpu } {
        0 => tasks(),
        k => crate::smp::ap_tasks(k as usize),
    }
}

/// Picks the next runnable task of this CPU's own table after the current one and switches to it. Unmangled: a
/// sleeping task's saved return address points into it.
#[unsafe(no_mangle)]
pub extern "C" fn schedule() {
    let were_enabled = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    let cur = current();
    let all = cpu_tasks();
    let n = all.len();
    // `cur` points into this CPU's own table.
    let cur_index = (cur as usize - all.as_ptr() as usize) / size_of::<Task>();
    let next_index = (1..=n)
        .map(|i| (cur_index + i) % n)
        .find(|&i| all[i].state == State::Runnable as u64);
    if let Some(n) = next_index {
        // SAFETY: `cur` is running; `n` is runnable with a valid saved frame.
        unsafe {
            if (*cur).state == State::Running as u64 {
                (*cur).state = State::Runnable as u64;
            }
            let next = &raw mut all[n];
            (*next).state = State::Running as u64;
            (*next).switches += 1;
            let me = this_cpu();
            if (*me).cpu == 0 {
                SWITCHES.fetch_add(1, Ordering::Relaxed);
            }
            (*me).switches += 1;
            lab_switch_to(cur, next);
        }
    }
    if were_enabled {
        x86_64::instructions::interrupts::enable();
    }
}

/// Timer hook (after EOI): preempt the running task, unless the tick interrupted ring 3 (the
/// interrupt did not swap GS, and only the syscall path keeps the GS invariant).
pub fn on_timer_tick(from_user: bool) {
    if PREEMPT.load(Ordering::Relaxed) && !from_user {
        schedule();
    }
}

pub fn set_preempt(on: bool) {
    PREEMPT.store(on, Ordering::SeqCst);
}

/// A kernel thread: shares the kernel's address space (same CR3 as the shell).
pub fn spawn_thread(name_: &str) -> Option<usize> {
    spawn(name_, worker, kernel_cr3())
}

/// A process: its own page tables (the kernel's mappings plus one private page).
pub fn spawn_process(name_: &str) -> Option<usize> {
    let cr3 = crate::arch::x86_64::paging::new_address_space()?;
    spawn(name_, process_worker, cr3)
}

/// Marks every task but the shell dead and lets them finish.
pub fn kill_all() {
    for t in tasks().iter_mut().skip(1) {
        if t.state == State::Runnable as u64 {
            t.state = State::Dead as u64;
        }
    }
    for _ in 0..MAX_TASKS {
        schedule();
    }
}

pub fn list() {
    for t in tasks().iter() {
        if t.state == State::Unused as u64 {
            continue;
        }
        serial_println!(
            "task id={} name={} state={} rsp={:#x} kstack_top={:#x} cr3={:#x} switches={} counter={}",
            t.id, name(t), t.state, t.rsp, t.kstack_top, t.cr3, t.switches, t.counter
        );
    }
}

/// Yields in a loop for `ms` of TSC time; returns (switches, cycles).
pub fn switch_rate(ms: u64) -> (u64, u64) {
    let cycles = crate::timer::tsc_hz() * ms / 1000;
    let t0 = crate::timer::rdtsc();
    let s0 = SWITCHES.load(Ordering::SeqCst);
    while crate::timer::rdtsc() - t0 < cycles {
        schedule();
    }
    (SWITCHES.load(Ordering::SeqCst) - s0, crate::timer::rdtsc() - t0)
}
