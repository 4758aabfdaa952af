//! IPIs between CPUs and the `cpus`/`ipi` shell commands. A fixed IPI on `vector::IPI` is
//! counted per receiving CPU; a CPU asked to answer sends one back to the boot CPU, which is
//! how `ipi <cpu> fixed` times a round trip in TSC cycles. `ipi <cpu> nmi` sends an NMI: it
//! lands on the target's own NMI IST stack (its TSS's IST2); on an AP the exception hook here
//! claims it, counting it and keeping the address of the frame the CPU pushed (`cpus` prints
//! it: IST2's top minus the 40-byte frame when the CPU switched to its own NMI stack).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{AP_PERCPU, AP_TSS, MAX_CPUS, apic, online};
use crate::arch::x86_64::handlers::InterruptFrame;
use crate::arch::x86_64::idt::{Style, vector};
use crate::timer::{rdtsc, tsc_hz};
use crate::{fire, serial_println};
use crate::arch::x86_64::tss;

/// Fixed IPIs each CPU (by APIC ID) has taken.
static RECEIVED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Set for a CPU whose next fixed IPI makes it triple-fault (`ipi <cpu> triple`).
static TRIPLE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// A scenario for an AP to run (`on <cpu> fire`): scenario index + 1 (0: none), style, vector,
/// packed as `index + 1 | style << 16 | vector << 24`; DONE counts the ones it finished.
static REQUEST: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// An AP asked to show its swapgs (`on <cpu> swapgs`).
static SWAPGS_REQUEST: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// A timer run for an AP (`timers`): `hz | ms << 32` (0: none).
static TIMER_REQUEST: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// NMIs each AP has taken, and where the CPU pushed the last one's frame.
static NMIS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static NMI_FRAME: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Set for a CPU that must answer its next IPI with one to the boot CPU.
static ANSWER: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// The IPI hook (arch `hooks`): count, answer if asked, acknowledge.
pub fn on_ipi() {
    let me = apic::id() as usize % MAX_CPUS;
    RECEIVED[me].fetch_add(1, Ordering::SeqCst);
    if TRIPLE[me].load(Ordering::SeqCst) {
        // This CPU's IDTR alone gets limit 0: int3 finds no gate (#GP), nor does the #GP (#DF),
        // nor the #DF: the CPU shuts down (SDM vol. 3A §6.15, "Double Fault Exception").
        crate::arch::x86_64::idt::load_with_limit(0);
        // SAFETY: the point is the fault; nothing runs after it.
        unsafe { core::arch::asm!("int3") };
    }
    if ANSWER[me].swap(false, Ordering::SeqCst) {
        apic::send(0, apic::icr::FIXED | apic::icr::LEVEL_ASSERT | vector::IPI as u32);
    }
    crate::drivers::lapic::end_of_interrupt();
}

/// The exception hook (arch `hooks`): an NMI on an AP is claimed (counted, its frame's
/// address kept) and returns; everything else, and every NMI on the boot CPU, is not ours.
/// The fire hook comes before this one (`kernel_main`: `fire::init` first), so the NMI an
/// AP's own `nmi` harness waits for is the harness's (its `fired` line), not counted here.
pub fn on_exception(v: u8, frame: *mut InterruptFrame, _: Option<u64>, _: Style) -> bool {
    let me = apic::id() as usize % MAX_CPUS;
    if v != vector::NMI || me == 0 {
        return false;
    }
    NMI_FRAME[me].store(frame as u64, Ordering::SeqCst);
    NMIS[me].fetch_add(1, Ordering::SeqCst);
    true
}

/// `ipi <cpu> <fixed|nmi>`; Err for a malformed line (the shell prints the usage).
pub fn cmd_ipi(cpu: Option<&str>, kind: Option<&str>) -> Result<(), ()> {
    let k = cpu.and_then(|c| c.parse::<usize>().ok()).ok_or(())?;
    if k == 0 || k >= online() as usize {
        serial_println!("error: cpu {k} is not an application processor that is online (cpus={})", online());
        return Ok(());
    }
    match kind {
        Some("fixed") => {
            let before = RECEIVED[0].load(Ordering::SeqCst);
            ANSWER[k].store(true, Ordering::SeqCst);
            let hz = tsc_hz();
            let t0 = rdtsc();
            apic::send(k as u32, apic::icr::FIXED | apic::icr::LEVEL_ASSERT | vector::IPI as u32);
            x86_64::instructions::interrupts::enable();
            while RECEIVED[0].load(Ordering::SeqCst) == before && rdtsc() - t0 < hz {
                core::hint::spin_loop();
            }
            let cycles = rdtsc() - t0;
            x86_64::instructions::interrupts::disable();
            let answered = RECEIVED[0].load(Ordering::SeqCst) != before;
            serial_println!("ipi cpu={k} kind=fixed answered={} round_trip_cycles={cycles} tsc_hz={hz} received={}",
                            answered as u8, RECEIVED[k].load(Ordering::SeqCst));
        }
        Some("triple") => {
            TRIPLE[k].store(true, Ordering::SeqCst);
            serial_println!("ipi cpu={k} kind=triple sent=1");
            apic::send(k as u32, apic::icr::FIXED | apic::icr::LEVEL_ASSERT | vector::IPI as u32);
        }
        Some("nmi") => {
            apic::send(k as u32, apic::icr::NMI | apic::icr::LEVEL_ASSERT);
            serial_println!("ipi cpu={k} kind=nmi sent=1");
        }
        _ => return Err(()),
    }
    Ok(())
}

/// Runs scenario `s` on AP `k` (boot CPU: posts it, wakes the AP with an IPI, waits, bounded
/// by five seconds of TSC time, for the AP to finish; the AP prints the `fired` line). For
/// `nmi` the boot CPU sends the NMI: to CPU k alone, once its harness is in its wait loop.
pub fn fire_on(k: usize, s: &'static fire::Scenario, style: Style, vector: u8) {
    if k == 0 || k >= online() as usize {
        return serial_println!("error: cpu {k} is not an application processor that is online (cpus={})", online());
    }
    let index = fire::SCENARIOS.iter().position(|x| core::ptr::eq(x, s)).unwrap() as u64;
    let before = DONE[k].load(Ordering::SeqCst);
    let nmi = s.name == "nmi";
    if nmi {
        fire::disarm_nmi();
    }
    REQUEST[k].store((index + 1) | (matches!(style, Style::Stub) as u64) << 16 | (vector as u64) << 24, Ordering::SeqCst);
    apic::send(k as u32, apic::icr::FIXED | apic::icr::LEVEL_ASSERT | vector::IPI as u32);
    let (hz, t0) = (tsc_hz(), rdtsc());
    let running = || DONE[k].load(Ordering::SeqCst) == before && rdtsc() - t0 < hz * 5;
    if nmi {
        // The `nmi` harness on CPU k waits for an NMI: once it is armed (in its loop), CPU k
        // alone gets one, an NMI IPI (ICR delivery mode NMI, destination k; SDM vol. 3A §11.6.1).
        while !fire::nmi_armed() && running() {
            core::hint::spin_loop();
        }
        if fire::nmi_armed() {
            apic::send(k as u32, apic::icr::NMI | apic::icr::LEVEL_ASSERT);
        }
    }
    while running() {
        core::hint::spin_loop();
    }
    if DONE[k].load(Ordering::SeqCst) == before {
        serial_println!("error: cpu {k} did not finish {} within 5 s", s.name);
    }
}

/// An AP's idle loop, after each wake-up: the scenario posted for it, if any, with interrupts
/// off as on the boot CPU's shell.
pub fn run_request(k: usize) {
    super::switch::run_request(k);
    if SWAPGS_REQUEST[k].swap(false, Ordering::SeqCst) {
        swapgs_here(k);
        DONE[k].fetch_add(1, Ordering::SeqCst);
    }
    let t = TIMER_REQUEST[k].swap(0, Ordering::SeqCst);
    if t != 0 {
        run_timer(k, t & 0xFFFF_FFFF, t >> 32);
        DONE[k].fetch_add(1, Ordering::SeqCst);
    }
    let r = REQUEST[k].swap(0, Ordering::SeqCst);
    if r == 0 {
        return;
    }
    let s = &fire::SCENARIOS[(r & 0xFFFF) as usize - 1];
    let style = if (r >> 16) & 0xFF == 1 { Style::Stub } else { Style::X86Interrupt };
    x86_64::instructions::interrupts::disable();
    fire::fire(s, style, (r >> 24) as u8);
    DONE[k].fetch_add(1, Ordering::SeqCst);
}

/// The GS base a user program would leave behind, for `swapgs_here`.
pub const USER_GS: u64 = 0x5555_0000;

/// What the syscall entry does with GS, on this CPU: KERNEL_GS_BASE holds this CPU's area and
/// GS_BASE a user value; `swapgs` exchanges them, and the per-CPU area's self pointer is read
/// through GS right after (`lab_smp_after_swapgs`, where a debugger can stop and look). Then the
/// kernel's usual state (GS_BASE = the area, KERNEL_GS_BASE = 0) is put back.
#[unsafe(no_mangle)]
#[inline(never)]
#[allow(named_asm_labels)] // one call site, never inlined: the label is defined once
pub fn lab_smp_swapgs(user_gs: u64) -> (u64, u64) {
    use x86_64::VirtAddr;
    use x86_64::registers::model_specific::{GsBase, KernelGsBase};
    let own = GsBase::read().as_u64();
    KernelGsBase::write(VirtAddr::new(own));
    GsBase::write(VirtAddr::new(user_gs));
    let self_ptr: u64;
    // SAFETY: GS_BASE becomes `own`, a PerCpu; the load reads its self pointer.
    unsafe {
        core::arch::asm!("swapgs", ".global lab_smp_after_swapgs", "lab_smp_after_swapgs:",
                         "mov {0}, gs:[{off}]", out(reg) self_ptr,
                         off = const core::mem::offset_of!(crate::task::PerCpu, self_ptr), options(nostack));
    }
    let after = GsBase::read().as_u64();
    KernelGsBase::write(VirtAddr::new(0));
    (after, self_ptr)
}

fn swapgs_here(k: usize) {
    let (gs, self_ptr) = lab_smp_swapgs(USER_GS);
    serial_println!("swapgs cpu={k} gs_base={gs:#x} self={self_ptr:#x} own={}", (gs == self_ptr) as u8);
}

/// `on <cpu> swapgs`: CPU `k` (0: this, the boot CPU) shows what swapgs gives it.
pub fn swapgs_on(k: usize) {
    if k == 0 {
        return swapgs_here(0);
    }
    if k >= online() as usize {
        return serial_println!("error: cpu {k} is not an application processor that is online (cpus={})", online());
    }
    let before = DONE[k].load(Ordering::SeqCst);
    SWAPGS_REQUEST[k].store(true, Ordering::SeqCst);
    apic::send(k as u32, apic::icr::FIXED | apic::icr::LEVEL_ASSERT | vector::IPI as u32);
    let (hz, t0) = (tsc_hz(), rdtsc());
    while DONE[k].load(Ordering::SeqCst) == before && rdtsc() - t0 < hz * 5 {
        core::hint::spin_loop();
    }
}

/// On AP `k`: its own local APIC timer, periodic at `hz` on `vector::IPI`, for `ms` of TSC time
/// with interrupts on; the interrupts it took in that window are its ticks.
fn run_timer(k: usize, hz: u64, ms: u64) {
    let (bus, _) = crate::drivers::lapic::calibrate(); // the boot CPU calibrated it
    let count = (bus / hz).clamp(1, u32::MAX as u64);
    let cycles = tsc_hz() * ms / 1000;
    let before = RECEIVED[k].load(Ordering::SeqCst);
    let t0 = rdtsc();
    apic::timer_periodic(count as u32, vector::IPI);
    x86_64::instructions::interrupts::enable();
    while rdtsc() - t0 < cycles {
        core::hint::spin_loop();
    }
    // Stop the timer before masking interrupts: a tick already pending is taken here, counted
    // in this window, not after it (at this CPU's next `sti`, where it would count as an IPI).
    apic::timer_periodic(0, vector::IPI);
    x86_64::instructions::interrupts::disable();
    let ticks = RECEIVED[k].load(Ordering::SeqCst) - before;
    serial_println!("timer cpu={k} apic periodic requested={hz} rate={} ms={ms} ticks={ticks} tsc_cycles={} tsc_hz={}",
                    bus / count, rdtsc() - t0, tsc_hz());
}

/// `timers <ms> <cpu>:<hz> ...`: each named AP runs its own local APIC timer at its rate for
/// the same `ms`, all at once; each prints its `timer cpu=...` line; the boot CPU waits.
pub fn cmd_timers(ms: Option<&str>, specs: &mut dyn Iterator<Item = &str>) -> Result<(), ()> {
    let ms = ms.and_then(|m| m.parse::<u64>().ok()).filter(|m| (1..=10_000).contains(m)).ok_or(())?;
    let mut posted = [0u64; MAX_CPUS];
    let mut any = false;
    for spec in specs {
        let (cpu, hz) = spec.split_once(':').ok_or(())?;
        let k = cpu.parse::<usize>().map_err(|_| ())?;
        let hz = hz.parse::<u64>().ok().filter(|h| (1..=100_000).contains(h)).ok_or(())?;
        if k == 0 || k >= online() as usize {
            serial_println!("error: cpu {k} is not an application processor that is online (cpus={})", online());
            return Ok(());
        }
        posted[k] = hz | ms << 32;
        any = true;
    }
    if !any {
        return Err(());
    }
    crate::drivers::lapic::calibrate();
    let before: [u64; MAX_CPUS] = core::array::from_fn(|k| DONE[k].load(Ordering::SeqCst));
    for k in 1..MAX_CPUS {
        if posted[k] != 0 {
            TIMER_REQUEST[k].store(posted[k], Ordering::SeqCst);
            apic::send(k as u32, apic::icr::FIXED | apic::icr::LEVEL_ASSERT | vector::IPI as u32);
        }
    }
    let (hz, t0) = (tsc_hz(), rdtsc());
    let bound = hz * (ms / 1000 + 5);
    while (1..MAX_CPUS).any(|k| posted[k] != 0 && DONE[k].load(Ordering::SeqCst) == before[k]) && rdtsc() - t0 < bound {
        core::hint::spin_loop();
    }
    Ok(())
}

/// `cpus`: one line per CPU online.
pub fn list() {
    for k in 0..online() as usize {
        // SAFETY: read-only looks at statics the boot CPU filled before the APs started.
        let (tss, gs) = unsafe {
            if k == 0 {
                (tss::base(), &raw const crate::task::PERCPU as u64)
            } else {
                (&raw const AP_TSS[k - 1] as u64, &raw const AP_PERCPU[k - 1] as u64)
            }
        };
        // SAFETY: `tss` is a TaskStateSegment (the boot CPU's or AP_TSS[k-1]).
        let t = unsafe { &*(tss as *const crate::arch::x86_64::tss::TaskStateSegment) };
        let (rsp0, ists) = (t.privilege_stack_table[0], t.interrupt_stack_table);
        serial_println!("cpu index={k} tss={tss:#x} rsp0={rsp0:#x} ist1={:#x} ist2={:#x} ist3={:#x} gs_base={gs:#x} \
                         ipis={} nmis={} nmi_frame={:#x}", ists[0], ists[1], ists[2], RECEIVED[k].load(Ordering::SeqCst),
                        NMIS[k].load(Ordering::SeqCst), NMI_FRAME[k].load(Ordering::SeqCst));
    }
}
