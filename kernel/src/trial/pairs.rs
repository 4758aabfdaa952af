//! `trial pairs`: an exception raised while the CPU delivers another (SDM vol. 3A §6.15,
//! "Interrupt 8—Double Fault Exception", Tables 6-4 and 6-5). The first exception A is one of
//! #DE (contributory), #UD and #NM (benign) and #PF (page fault); its delivery is made to fault
//! in one of four ways, each raising a second exception B:
//!
//! | cause | what is broken in A's delivery | B by the manual |
//! | `not-present` | A's gate has P=0 | #NP |
//! | `noncanonical-handler` | A's gate names a non-canonical handler address | #GP |
//! | `pf-stack` | A's gate names an IST slot whose stack is an unmapped page | #PF |
//! | `noncanonical-stack` | A's gate names an IST slot holding a non-canonical RSP | #SS |
//!
//! One line per pair: `trial pair first=<a> cause=<c> vector=<first handler reached>
//! error=… rip=… cr2=… fault_at=<A's instruction>`. The lab compares each with Table 6-5.
//! (#BP is not used: under KVM with the lab's gdb attached, int3 is the debugger's.)

use crate::arch::x86_64::gdt::sel;
use crate::arch::x86_64::idt::Gate;
use crate::arch::x86_64::{paging, stacks};
use crate::serial_println;

use super::{decl, edit_gate, hex_or_none, prepare_idt, record, recorder, set_gate, set_ist, TRIAL_IST};

core::arch::global_asm!(
    r#"
.global trial_raise_de, trial_at_de
trial_raise_de:
    xor eax, eax
    xor edx, edx
    xor ecx, ecx
trial_at_de:
    div rcx
    ret
.global trial_raise_ud, trial_at_ud
trial_raise_ud:
trial_at_ud:
    ud2
    ret
.global trial_raise_nm, trial_at_nm
trial_raise_nm:
    mov rax, cr0
    or rax, {cr0_ts}
    mov cr0, rax
trial_at_nm:
    movaps xmm0, xmm0
    ret
.global trial_raise_pf, trial_at_pf
trial_raise_pf:
    mov rax, {page}
trial_at_pf:
    mov rax, [rax]
    ret
"#,
    page = const paging::NOT_PRESENT,
    cr0_ts = const CR0_TS,
);

/// CR0.TS: the next SSE instruction raises #NM (SDM vol. 3A §2.5).
const CR0_TS: u64 = 1 << 3;

unsafe extern "C" {
    fn trial_raise_de();
    fn trial_raise_ud();
    fn trial_raise_nm();
    fn trial_raise_pf();
    fn trial_at_de();
    fn trial_at_ud();
    fn trial_at_nm();
    fn trial_at_pf();
}

struct First {
    name: &'static str,
    vector: u8,
    raise: unsafe extern "C" fn(),
    at: unsafe extern "C" fn(),
}

const FIRSTS: [First; 4] = [
    First { name: "de", vector: 0, raise: trial_raise_de, at: trial_at_de },
    First { name: "ud", vector: 6, raise: trial_raise_ud, at: trial_at_ud },
    First { name: "nm", vector: 7, raise: trial_raise_nm, at: trial_at_nm },
    First { name: "pf", vector: 14, raise: trial_raise_pf, at: trial_at_pf },
];

pub const CAUSES: [&str; 4] = ["not-present", "noncanonical-handler", "pf-stack", "noncanonical-stack"];

/// An address with bit 63 set and bits 47-62 clear: not canonical with 4-level paging.
const NONCANONICAL: u64 = 0x8000_0000_0000_0000;

fn break_delivery(vector: u8, cause: &str) {
    match cause {
        "not-present" => edit_gate(vector, |g| g.set_present(false)),
        "noncanonical-handler" => set_gate(vector, Gate::new(NONCANONICAL, sel::KERNEL_CODE, decl(0, 0))),
        "pf-stack" => {
            // The page below the boot stack is its unmapped guard: the first push faults.
            set_ist(stacks::boot_stack_guard() + paging::PAGE);
            edit_gate(vector, |g| g.set_ist(TRIAL_IST));
        }
        "noncanonical-stack" => {
            set_ist(NONCANONICAL);
            edit_gate(vector, |g| g.set_ist(TRIAL_IST));
        }
        _ => {}
    }
}

pub fn run_all() {
    for first in &FIRSTS {
        for cause in CAUSES {
            prepare_idt();
            break_delivery(first.vector, cause);
            let trapped = super::run(first.raise);
            // SAFETY: clears the CR0.TS the #NM trigger set (harmless otherwise).
            unsafe { core::arch::asm!("clts") };
            let r = record();
            serial_println!(
                "trial pair first={} first_vector={} cause={} trapped={} vector={} error={} rip={:#x} cs={:#x} \
                 entry_rsp={:#x} cr2={:#x} fault_at={:#x} handler={:#x}",
                first.name, first.vector, cause, trapped as u8, hex_or_none(r.vector), hex_or_none(r.error),
                r.rip, r.cs, r.entry_rsp, r.cr2, first.at as *const () as u64, recorder(first.vector),
            );
        }
    }
}
