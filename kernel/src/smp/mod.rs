//! Many CPUs: the boot CPU starts the others (INIT-SIPI-SIPI, SDM vol. 3A §9.4.4 "MP
//! Initialization Example"; MP spec 1.4 §B.4) through its local APIC and the real-mode
//! trampoline (`trampoline.rs`), and gives each application processor its own GDT (a copy of
//! `GDT` whose TSS descriptor names its own TSS), its own TSS with its own RSP0 and IST stacks
//! (each with an unmapped guard page below it), and its own per-CPU area reached through its own
//! GS base. The IDT is shared. The APs' stacks are not in the kernel image (whose frames the
//! BIOS path must find free below the bootloader's own): they sit at `AP_STACKS_BASE`, identity-
//! mapped physical memory nothing else uses once the kernel runs. With one CPU (fw_cfg's CPU count is 1, or no fw_cfg) nothing
//! here runs: the 1-CPU boot is unchanged.
//!
//! CPU index = initial APIC ID (QEMU numbers its vCPUs' APIC IDs 0..N-1 with the default
//! topology); AP k uses slot k - 1 of each `AP_*` array.

mod apic;
mod ipi;
mod switch;
pub mod trampoline;

pub use ipi::{cmd_ipi, cmd_timers, fire_on, list, swapgs_on};
pub use switch::{ap_tasks, switch_on};

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::arch::x86_64::stacks::{GUARD_SIZE, GuardedStack};
use crate::arch::x86_64::tss::{TaskStateSegment, ist};
use crate::arch::x86_64::{fpu, gdt, idt, paging};
use crate::task::PerCpu;
use crate::timer::{rdtsc, tsc_hz};

pub const MAX_CPUS: usize = 8;
const APS: usize = MAX_CPUS - 1;
pub const AP_RUN_STACK_SIZE: usize = 16 * 1024;
pub const AP_STACK_SIZE: usize = 8 * 1024;
pub const AP_WORKER_STACK_SIZE: usize = 16 * 1024;

/// One AP's stacks, each above its own guard page: the one it runs on, RSP0, the #DF, NMI and
/// #MC IST stacks (the boot CPU's IST numbering, `tss::ist`), and its worker task's kernel
/// stack (`switch.rs`).
#[repr(C, align(4096))]
pub struct ApStacks {
    pub run: GuardedStack<AP_RUN_STACK_SIZE>,
    pub rsp0: GuardedStack<AP_STACK_SIZE>,
    pub double_fault: GuardedStack<AP_STACK_SIZE>,
    pub nmi: GuardedStack<AP_STACK_SIZE>,
    pub machine_check: GuardedStack<AP_STACK_SIZE>,
    pub worker: GuardedStack<AP_WORKER_STACK_SIZE>,
}
const _: () = assert!(size_of::<ApStacks>()
                      == 6 * GUARD_SIZE + AP_RUN_STACK_SIZE + 4 * AP_STACK_SIZE + AP_WORKER_STACK_SIZE);


/// Where AP k's `ApStacks` start: `AP_STACKS_BASE + (k - 1) * size_of::<ApStacks>()` (16 MiB:
/// above the image, the loaders' data and the bootloader's, inside one 2 MiB page).
pub const AP_STACKS_BASE: u64 = 0x100_0000;
const _: () = assert!(AP_STACKS_BASE % (2 << 20) == 0 && APS * size_of::<ApStacks>() <= 2 << 20);
/// Where the APs' stacks are, for the lab (`lab/labkernel/layouts.py` AP_STACKS_DECL): AP k's
/// block is at `base + (k - 1) * stride`, each stack's top at the block plus its `*_top`.
#[repr(C)]
pub struct ApStacksDecl {
    pub base: u64,
    pub stride: u64,
    pub run_top: u64,
    pub rsp0_top: u64,
    pub double_fault_top: u64,
    pub nmi_top: u64,
    pub machine_check_top: u64,
    pub worker_top: u64,
}
const _: () = assert!(size_of::<ApStacksDecl>() == 64);

const fn top_of(offset: usize, size: usize) -> u64 {
    (offset + size) as u64
}
const RUN: usize = size_of::<GuardedStack<AP_RUN_STACK_SIZE>>();
const OTHER: usize = size_of::<GuardedStack<AP_STACK_SIZE>>();

#[used]
#[unsafe(no_mangle)]
pub static LAB_AP_STACKS: ApStacksDecl = ApStacksDecl {
    base: AP_STACKS_BASE,
    stride: size_of::<ApStacks>() as u64,
    run_top: top_of(offset_of!(ApStacks, run), RUN),
    rsp0_top: top_of(offset_of!(ApStacks, rsp0), OTHER),
    double_fault_top: top_of(offset_of!(ApStacks, double_fault), OTHER),
    nmi_top: top_of(offset_of!(ApStacks, nmi), OTHER),
    machine_check_top: top_of(offset_of!(ApStacks, machine_check), OTHER),
    worker_top: top_of(offset_of!(ApStacks, worker), size_of::<GuardedStack<AP_WORKER_STACK_SIZE>>()),
};

#[unsafe(no_mangle)]
pub static mut AP_TSS: [TaskStateSegment; APS] = [const { TaskStateSegment::new() }; APS];
#[unsafe(no_mangle)]
pub static mut AP_GDT: [gdt::Gdt; APS] = [const { gdt::Gdt { entries: [0; gdt::ENTRIES] } }; APS];
#[unsafe(no_mangle)]
pub static mut AP_PERCPU: [PerCpu; APS] = [const { PerCpu::EMPTY }; APS];
/// The stack each CPU's trampoline loads, by APIC ID (0: the boot CPU, unused).
#[unsafe(no_mangle)]
pub static mut AP_BOOT_TOPS: [u64; MAX_CPUS] = [0; MAX_CPUS];

/// vCPUs the machine has (fw_cfg), and how many APs reached `ap_main`'s end.
static CPUS: AtomicU32 = AtomicU32::new(1);
static ONLINE: AtomicU32 = AtomicU32::new(0);
/// TSC when each CPU came online (by index), and when the first STARTUP IPI was sent.
static ONLINE_TSC: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static SIPI_TSC: AtomicU64 = AtomicU64::new(0);
static BSP_CR4: AtomicU64 = AtomicU64::new(0);
static BSP_EFER: AtomicU64 = AtomicU64::new(0);

fn top<const N: usize>(s: &GuardedStack<N>) -> u64 {
    s as *const _ as u64 + size_of::<GuardedStack<N>>() as u64
}

fn guard<const N: usize>(s: &GuardedStack<N>) -> u64 {
    s as *const _ as u64
}

/// AP `k`'s TSS, GDT (the boot CPU's descriptors, its own TSS descriptor), per-CPU area and
/// boot stack; its guard pages unmapped.
fn prepare(k: usize) {
    let slot = k - 1;
    // SAFETY: the boot CPU alone writes these, before AP k is started.
    unsafe {
        let stacks = &*((AP_STACKS_BASE + (slot * size_of::<ApStacks>()) as u64) as *const ApStacks);
        let tss = &mut (*(&raw mut AP_TSS))[slot];
        tss.privilege_stack_table[0] = top(&stacks.rsp0);
        tss.set_ist_slot(ist::DOUBLE_FAULT, top(&stacks.double_fault));
        tss.set_ist_slot(ist::NMI, top(&stacks.nmi));
        tss.set_ist_slot(ist::MACHINE_CHECK, top(&stacks.machine_check));
        let g = &mut (*(&raw mut AP_GDT))[slot];
        g.entries = (*(&raw const gdt::GDT)).entries;
        let [low, high] = gdt::tss_descriptor(tss as *const _ as u64, (size_of::<TaskStateSegment>() - 1) as u64);
        g.entries[gdt::sel::TSS as usize / 8] = low;
        g.entries[gdt::sel::TSS as usize / 8 + 1] = high;
        let p = &mut (*(&raw mut AP_PERCPU))[slot];
        p.self_ptr = p as *const PerCpu as u64;
        p.tss = tss as *const _ as u64;
        p.cpu = k as u64;
        p.current = switch::prepare(k, top(&stacks.rsp0), top(&stacks.worker));
        p.kernel_rsp = top(&stacks.rsp0);
        (*(&raw mut AP_BOOT_TOPS))[k] = top(&stacks.run);
        for g in [guard(&stacks.run), guard(&stacks.rsp0), guard(&stacks.double_fault), guard(&stacks.nmi),
                  guard(&stacks.machine_check), guard(&stacks.worker)] {
            paging::unmap_guard(g);
        }
    }
}

fn wait_cycles(cycles: u64) {
    let t0 = rdtsc();
    while rdtsc() - t0 < cycles {
        core::hint::spin_loop();
    }
}

/// Starts every AP (call on the boot CPU, after `lapic::init`, interrupts off). Prints one
/// line `smp cpus=N online=M start_cycles=C tsc_hz=H` when the machine has more than one CPU.
pub fn init() {
    let n = crate::drivers::fw_cfg::cpu_count().unwrap_or(1) as usize;
    if n <= 1 {
        return;
    }
    if n > MAX_CPUS {
        crate::serial_println!("smp cpus={n} online=0 error=the kernel starts at most {MAX_CPUS} CPUs");
        return;
    }
    CPUS.store(n as u32, Ordering::SeqCst);
    BSP_CR4.store(x86_64::registers::control::Cr4::read_raw(), Ordering::SeqCst);
    BSP_EFER.store(x86_64::registers::model_specific::Efer::read_raw(), Ordering::SeqCst);
    ONLINE_TSC[0].store(rdtsc(), Ordering::SeqCst);
    for k in 1..n {
        prepare(k);
    }
    trampoline::install();
    let hz = tsc_hz();
    // INIT, 10 ms, STARTUP, 200 us, STARTUP (a second one only if some AP missed the first).
    apic::send(0, apic::icr::INIT | apic::icr::LEVEL_ASSERT | apic::icr::ALL_BUT_SELF);
    wait_cycles(hz / 100);
    SIPI_TSC.store(rdtsc(), Ordering::SeqCst);
    let sipi = apic::icr::STARTUP | apic::icr::LEVEL_ASSERT | apic::icr::ALL_BUT_SELF | trampoline::SIPI_VECTOR;
    apic::send(0, sipi);
    wait_cycles(hz / 5000);
    if ONLINE.load(Ordering::SeqCst) < n as u32 - 1 {
        apic::send(0, sipi);
    }
    let t0 = rdtsc();
    while ONLINE.load(Ordering::SeqCst) < n as u32 - 1 && rdtsc() - t0 < hz {
        core::hint::spin_loop();
    }
    let online = ONLINE.load(Ordering::SeqCst);
    let last = ONLINE_TSC[1..n].iter().map(|t| t.load(Ordering::SeqCst)).max().unwrap_or(0);
    let start = last.saturating_sub(SIPI_TSC.load(Ordering::SeqCst));
    crate::serial_println!("smp cpus={n} online={} start_cycles={start} tsc_hz={hz}", online + 1);
}

/// Registers the IPI hook (boot CPU, before the IDT is loaded: arch `hooks`).
pub fn register() {
    crate::arch::x86_64::hooks::register_ipi_hook(ipi::on_ipi);
    crate::arch::x86_64::hooks::register_exception_hook(ipi::on_exception);
}

/// How many CPUs run the kernel (1 + the APs online).
pub fn online() -> u32 {
    1 + ONLINE.load(Ordering::SeqCst)
}

/// The 64-bit entry of every AP, on its own boot stack, from the trampoline.
extern "C" fn ap_main(apic_id: u64) -> ! {
    let k = apic_id as usize;
    if k == 0 || k >= CPUS.load(Ordering::SeqCst) as usize {
        crate::halt_forever();
    }
    let slot = k - 1;
    use x86_64::VirtAddr;
    use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
    use x86_64::instructions::tables::{lgdt, load_tss};
    use x86_64::registers::model_specific::{GsBase, KernelGsBase};
    use x86_64::structures::DescriptorTablePointer;
    use x86_64::structures::gdt::SegmentSelector;
    // SAFETY: this AP alone uses slot `slot`; the values are the boot CPU's own settings.
    unsafe {
        x86_64::registers::control::Cr4::write_raw(BSP_CR4.load(Ordering::SeqCst));
        x86_64::registers::model_specific::Efer::write_raw(BSP_EFER.load(Ordering::SeqCst));
        let g = &raw const AP_GDT[slot];
        lgdt(&DescriptorTablePointer { limit: gdt::LIMIT, base: VirtAddr::new(g as u64) });
        CS::set_reg(SegmentSelector(gdt::sel::KERNEL_CODE));
        SS::set_reg(SegmentSelector(gdt::sel::KERNEL_DATA));
        DS::set_reg(SegmentSelector(gdt::sel::KERNEL_DATA));
        ES::set_reg(SegmentSelector(gdt::sel::KERNEL_DATA));
        FS::set_reg(SegmentSelector(gdt::sel::NULL));
        GS::set_reg(SegmentSelector(gdt::sel::NULL));
        load_tss(SegmentSelector(gdt::sel::TSS));
        idt::load_with_limit(idt::LIMIT);
        fpu::init();
        GsBase::write(VirtAddr::new((*(&raw const AP_PERCPU))[slot].self_ptr));
        KernelGsBase::write(VirtAddr::new(0));
    }
    apic::init_ap();
    ONLINE_TSC[k].store(rdtsc(), Ordering::SeqCst);
    ONLINE.fetch_add(1, Ordering::SeqCst);
    loop {
        x86_64::instructions::interrupts::enable_and_hlt();
        ipi::run_request(k);
    }
}
