//! Context switches on the application processors: each AP has its own task table
//! (`AP_TASKS[k - 1]`: its idle context, the one `ap_main` runs in, and one worker thread on its
//! own guarded kernel stack in the AP's stack block), and `task::schedule` on AP k picks from it
//! (`PerCpu.cpu` says whose table). The switch itself is the boot CPU's `lab_switch_to`,
//! GS-relative: it writes AP k's `PerCpu.current` and the RSP0 of AP k's own TSS, and nothing of
//! any other CPU's, and no GS base.
//!
//! `on <cpu> switch` (boot CPU): posts a switch request to AP k, wakes it with an IPI, waits
//! (bounded) for the task switched in to say it runs, and prints
//! `switch cpu=K from=<name> to=<name> rsp0=0x... current=0x... kstack_top=0x... switches=N
//! cycles=C tsc_hz=H` from AP k's area and TSS as the boot CPU reads them afterwards (C: TSC
//! cycles from posting the request to the incoming task's report: IPI, wake-up and switch). The worker's body is an idle
//! loop like `ap_main`'s (`enable_and_hlt`, `run_request`), so the AP in its worker still
//! answers IPIs and further requests; the next `on K switch` switches back to the idle context.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{APS, AP_PERCPU, AP_TSS, MAX_CPUS, apic, online};
use crate::arch::x86_64::idt::vector;
use crate::serial_println;
use crate::task::{self, Task};
use crate::timer::{rdtsc, tsc_hz};

/// Tasks per AP: its idle context (slot 0) and one worker (slot 1).
pub const AP_TASK_SLOTS: usize = 2;

#[unsafe(no_mangle)]
pub static mut AP_TASKS: [[Task; AP_TASK_SLOTS]; APS] = [const { [task::EMPTY; AP_TASK_SLOTS] }; APS];

/// A switch asked of each AP, and the switches its incoming tasks have reported done.
static REQUEST: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// AP k's table (k >= 1).
pub fn ap_tasks(k: usize) -> &'static mut [Task] {
    // SAFETY: AP k alone schedules from its table; the boot CPU writes it before AP k starts.
    unsafe { &mut (*(&raw mut AP_TASKS))[k - 1] }
}

/// Fills AP k's table (boot CPU, before AP k starts): the idle context, running, whose kernel
/// stack (TSS.RSP0 while it runs) is the AP's declared RSP0 stack, and the worker, runnable on
/// its own stack. Returns the idle task: AP k's first `current`.
pub fn prepare(k: usize, rsp0_top: u64, worker_top: u64) -> *mut Task {
    let mut name = *b"idle0\0\0\0worker0\0";
    name[4] = b'0' + k as u8;
    name[14] = b'0' + k as u8;
    let table = ap_tasks(k);
    let [idle, worker] = table else { unreachable!() };
    task::make_running(idle, core::str::from_utf8(&name[..5]).unwrap(), 0, rsp0_top);
    // SAFETY: the worker's stack is unused: AP k has not started.
    unsafe {
        task::make_task(worker, core::str::from_utf8(&name[8..15]).unwrap(), 1, worker_top, ap_worker, k as u64,
                        task::kernel_cr3())
    };
    idle
}

/// The worker on AP k: says it was switched in, then idles as `ap_main` does.
extern "C" fn ap_worker(k: u64) {
    let k = k as usize;
    DONE[k].fetch_add(1, Ordering::SeqCst);
    loop {
        x86_64::instructions::interrupts::enable_and_hlt();
        super::ipi::run_request(k);
    }
}

/// On AP k, from `ipi::run_request`: the switch asked for. The task switched in reports it: a
/// task resumed here (it slept in this very call), a new worker at its start (`ap_worker`).
pub fn run_request(k: usize) {
    if REQUEST[k].swap(false, Ordering::SeqCst) {
        task::schedule();
        DONE[k].fetch_add(1, Ordering::SeqCst);
    }
}

fn current_of(k: usize) -> *mut Task {
    // SAFETY: a read of AP k's area; AP k writes `current` with one aligned store.
    unsafe { (&raw const AP_PERCPU[k - 1].current).read_volatile() }
}

/// `on <cpu> switch` (boot CPU). CPU 0 is refused: the boot CPU's shell switches with `yield`.
pub fn switch_on(k: usize) {
    if k == 0 {
        return serial_println!("error: on 0 switch: the boot CPU switches tasks with `yield`; \
                                `on <cpu> switch` asks an application processor");
    }
    if k >= online() as usize {
        return serial_println!("error: cpu {k} is not an application processor that is online (cpus={})", online());
    }
    let from = current_of(k);
    let before = DONE[k].load(Ordering::SeqCst);
    let (hz, t0) = (tsc_hz(), rdtsc());
    REQUEST[k].store(true, Ordering::SeqCst);
    apic::send(k as u32, apic::icr::FIXED | apic::icr::LEVEL_ASSERT | vector::IPI as u32);
    while DONE[k].load(Ordering::SeqCst) == before && rdtsc() - t0 < hz * 5 {
        core::hint::spin_loop();
    }
    let cycles = rdtsc() - t0;
    if DONE[k].load(Ordering::SeqCst) == before {
        return serial_println!("error: cpu {k} did not switch within 5 s");
    }
    let to = current_of(k);
    // SAFETY: reads of AP k's TSS and tasks; AP k is idle in `hlt` (its switch is done).
    unsafe {
        let rsp0 = (&raw const AP_TSS[k - 1].privilege_stack_table).read_unaligned()[0];
        let switches = (&raw const AP_PERCPU[k - 1].switches).read_volatile();
        serial_println!("switch cpu={k} from={} to={} rsp0={rsp0:#x} current={:#x} kstack_top={:#x} switches={switches} \
                         cycles={cycles} tsc_hz={hz}", task::name(&*from), task::name(&*to), to as u64, (*to).kstack_top);
    }
}
