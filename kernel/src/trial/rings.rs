//! `trial stacks` and `trial swapgs`: which stack an interrupt runs on (SDM vol. 3A §6.14.4
//! "Stack Switching in IA-32e Mode", §6.14.5 "Interrupt Stack Table"), and who swaps the GS
//! base (SWAPGS in vol. 2B; the CPU's interrupt and SYSCALL paths leave GS alone).
//!
//! `trial stacks`: a #UD from ring 0 and from ring 3 (a user page entered with iretq), each on
//! a gate with no IST slot and on a gate naming the trial slot. One line each:
//! `trial stack from=<cpl> ist=<0|6> entry_rsp=… rsp_before=… saved_rsp=… saved_ss=…
//! saved_cs=… rsp0=… ist_top=…`.
//!
//! `trial swapgs`: GS_BASE and IA32_KERNEL_GS_BASE set to two markers; the GS base each
//! handler sees (from ring 0 and from ring 3), then after one swapgs and after a second.

use core::arch::asm;

use x86_64::registers::model_specific::Msr;

use crate::arch::x86_64::gdt::sel;
use crate::arch::x86_64::idt::Gate;
use crate::arch::x86_64::{paging, tss};
use crate::serial_println;

use super::{decl, prepare_idt, record, recorder, rsp_mark, set_gate, set_ist, trial_stack_top, Record, TRIAL_IST};

pub const IA32_GS_BASE: u32 = 0xC000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xC000_0102;
/// The event: #UD (`ud2`), from ring 0 and from ring 3. Not `int n`: under the nested KVM
/// measured here an `int` to the private IDT never completed its delivery (RIP stayed on it).
const VECTOR: u8 = 6;
/// `ud2; jmp $`: the user program.
const USER_CODE: [u8; 4] = [0x0F, 0x0B, 0xEB, 0xFE];
const USER_STACK_TOP: u64 = paging::USER_BASE + 3 * paging::PAGE;
/// RFLAGS for ring 3: bit 1 (always one), IF=0 so nothing but the `int` enters the kernel.
const USER_RFLAGS: u64 = 0x2;

#[unsafe(no_mangle)]
static mut TRIAL_USER_RIP: u64 = 0;

core::arch::global_asm!(
    r#"
.global trial_int_ring0
trial_int_ring0:
    mov [rip + TRIAL_RSP_MARK], rsp
    ud2
    ret
.global trial_enter_ring3
trial_enter_ring3:
    push {user_ss}
    mov rax, {user_rsp}
    push rax
    push {rflags}
    push {user_cs}
    push [rip + TRIAL_USER_RIP]
    iretq
"#,
    user_ss = const sel::USER_DATA as u64,
    user_cs = const sel::USER_CODE as u64,
    user_rsp = const USER_STACK_TOP,
    rflags = const USER_RFLAGS,
);

unsafe extern "C" {
    fn trial_int_ring0();
    fn trial_enter_ring3();
}

fn gates(ist: u8) {
    prepare_idt();
    set_gate(VECTOR, Gate::new(recorder(VECTOR), sel::KERNEL_CODE, decl(0, ist)));
}

fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) v) };
    v
}

fn write_cr3(v: u64) {
    // SAFETY: both address spaces share the kernel's PML4 entry 0 (code, stacks, tables).
    unsafe { asm!("mov cr3, {}", in(reg) v) };
}

/// Runs the ring-0 or ring-3 trigger on the current private IDT; None if the user address
/// space could not be built.
fn from_ring(cpl: u8, ist_top: u64) -> Option<(Record, u64)> {
    if cpl == 0 {
        set_ist(ist_top);
        super::run(trial_int_ring0);
        return Some((record(), rsp_mark()));
    }
    let (user_cr3, _) = paging::new_user_address_space(&USER_CODE)?;
    // SAFETY: read by the trigger.
    unsafe { *(&raw mut TRIAL_USER_RIP) = paging::USER_BASE };
    let kernel_cr3 = cr3();
    let was = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    // RSP0 is pointed into the trial's own stack: the running task's RSP0 may be the top of
    // the very stack this code runs on, which a frame pushed there would overwrite.
    let rsp0_was = rsp0();
    set_rsp0(trial_rsp0());
    write_cr3(user_cr3);
    set_ist(ist_top);
    super::run(trial_enter_ring3);
    write_cr3(kernel_cr3);
    set_rsp0(rsp0_was);
    if was {
        x86_64::instructions::interrupts::enable();
    }
    Some((record(), USER_STACK_TOP))
}

/// TSS.RSP0 during the ring-3 trials: half-way down the trial stack (its top is the IST's).
fn trial_rsp0() -> u64 {
    trial_stack_top() - 8192
}

fn set_rsp0(v: u64) {
    // SAFETY: the CPU reads RSP0 only when an interrupt enters ring 0 from ring 3.
    unsafe { (*(&raw mut tss::TSS)).privilege_stack_table[0] = v };
}

fn rsp0() -> u64 {
    // SAFETY: read only.
    unsafe { (*(&raw const tss::TSS)).privilege_stack_table[0] }
}

pub fn stacks() {
    for cpl in [0u8, 3] {
        for ist in [0u8, TRIAL_IST] {
            gates(ist);
            let top = if ist != 0 { trial_stack_top() } else { 0 };
            match from_ring(cpl, top) {
                Some((r, before)) => serial_println!(
                    "trial stack from={cpl} ist={ist} vector={:#x} entry_rsp={:#x} rsp_before={before:#x} \
                     saved_rsp={:#x} saved_ss={:#x} saved_cs={:#x} rsp0={:#x} ist_top={:#x}",
                    r.vector, r.entry_rsp, r.rsp, r.ss, r.cs, if cpl == 3 { trial_rsp0() } else { rsp0() },
                    trial_stack_top(),
                ),
                None => serial_println!("error: no user address space for the ring-3 trial"),
            }
        }
    }
}

fn msr(n: u32) -> u64 {
    // SAFETY: the GS MSRs exist on every x86-64 CPU.
    unsafe { Msr::new(n).read() }
}

fn set_msr(n: u32, v: u64) {
    // SAFETY: canonical values; nothing uses GS while the trial runs (interrupts off).
    unsafe { Msr::new(n).write(v) }
}

fn swapgs_once() -> (u64, u64) {
    // SAFETY: CPL 0; the swapped base is restored before anything uses GS.
    unsafe { asm!("swapgs") };
    (msr(IA32_GS_BASE), msr(IA32_KERNEL_GS_BASE))
}

/// The two markers: canonical, distinct, never a real address of this kernel.
const GS_MARK: u64 = 0x0000_1111_0000_0000;
const KGS_MARK: u64 = 0x0000_2222_0000_0000;

pub fn swapgs() {
    let was = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    let (gs0, kgs0) = (msr(IA32_GS_BASE), msr(IA32_KERNEL_GS_BASE));
    set_msr(IA32_GS_BASE, GS_MARK);
    set_msr(IA32_KERNEL_GS_BASE, KGS_MARK);
    gates(0);
    let ring0 = from_ring(0, 0).map(|(r, _)| r.gs_base).unwrap_or(0);
    let ring3 = from_ring(3, 0).map(|(r, _)| r.gs_base).unwrap_or(0);
    let one = swapgs_once();
    let two = swapgs_once();
    set_msr(IA32_GS_BASE, gs0);
    set_msr(IA32_KERNEL_GS_BASE, kgs0);
    if was {
        x86_64::instructions::interrupts::enable();
    }
    serial_println!(
        "trial swapgs gs={GS_MARK:#x} kernel_gs={KGS_MARK:#x} ring0_handler_gs={ring0:#x} ring3_handler_gs={ring3:#x} \
         after_one_gs={:#x} after_one_kernel_gs={:#x} after_two_gs={:#x} after_two_kernel_gs={:#x}",
        one.0, one.1, two.0, two.1,
    );
}
