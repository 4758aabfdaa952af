"""Seed 000, "x86-64 Kernel Internals: Stacks, Interrupts, and Context Switches" (a complete
tutorial): its statements about frames, the TSS and IST, double faults, gates and CR3."""

from __future__ import annotations

from lab.checks.claim_judges import (cr3_on_switch, df_on_ist_survives, df_without_ist_triple,
                                     error_code_always, fault_during_df, gate_if, gprs_saved_by_cpu,
                                     iretq_pops_rsp_only_on_privilege_change,
                                     ss_rsp_only_on_privilege_change)

from .backends import invert, needs, on_trials
from .trialjudges import (any_fault_in_delivery_is_df, benign_first_serial, cr3_flushes_tlb,
                          global_survives_cr3, pairs_table, stacks_by_rule)

SEED = "000_9ed5d01f220ebabf.txt"
PREFIX = "s000"
TITLE = "x86-64 Kernel Internals: Stacks, Interrupts, and Context Switches"

CLAIMS = (
    ("frame-ss-rsp", "6. What the CPU Pushes on Entry",
     "Without a privilege change the CPU pushes RIP, CS and RFLAGS (and maybe an error code); SS and RSP only "
     "when it changes privilege.", needs("fires")(ss_rsp_only_on_privilege_change)),
    ("error-code-some", "6. What the CPU Pushes on Entry",
     "Only some exceptions push an error code.", invert(needs("fires")(error_code_always))),
    ("gprs-not-saved", "6. Critical Kernel Rule",
     "The CPU saves no general-purpose register when it delivers an interrupt; the handler saves what it uses.",
     invert(needs("fires")(gprs_saved_by_cpu))),
    ("iretq-rsp", "6. IRETQ vs RET",
     "iretq pops RSP and SS only when it returns to a different privilege level.",
     needs("fires")(iretq_pops_rsp_only_on_privilege_change)),
    ("rsp0", "7. The TSS",
     "An interrupt taken in ring 3 runs on the stack TSS.RSP0 names.", on_trials(stacks_by_rule([(3, 0)]))),
    ("ist-any-ring", "7. IST",
     "A gate with a non-zero IST index loads RSP from that IST slot, whatever the privilege level it interrupts.",
     on_trials(stacks_by_rule([(0, 6), (3, 6)]))),
    ("ist-zero", "9. Setting Up TSS and IST in Rust",
     "An IST field of 0 in a gate means no IST stack (the slots are IST1-IST7): from ring 0 the frame goes on the "
     "interrupted stack.", on_trials(stacks_by_rule([(0, 0)]))),
    ("df-on-delivery", "7. Double Fault and IST",
     "Any exception raised while the CPU invokes an exception handler becomes a double fault.",
     on_trials(any_fault_in_delivery_is_df)),
    ("df-table", "7. Double Fault and IST",
     "(lab) A fault during a delivery is a #DF only for contributory then contributory, or page fault then "
     "contributory or page fault (SDM Table 6-5); other pairs are handled one after the other.",
     on_trials(pairs_table)),
    ("benign-serial", "7. Double Fault and IST",
     "(lab) After a benign first exception (#UD, #NM) a fault in its delivery is delivered as itself, never as #DF.",
     on_trials(benign_first_serial)),
    ("df-fault-triple", "7. Double Fault and IST",
     "If delivering the #DF fails too, the CPU shuts down (a triple fault; QEMU resets).",
     needs("probes")(fault_during_df)),
    ("df-ist-survives", "7. Double Fault and IST",
     "With #DF on its own IST stack, a kernel stack overflow reaches the #DF handler.",
     needs("probes")(df_on_ist_survives)),
    ("df-no-ist", "9. Pitfall 4: No IST for Double Fault",
     "With #DF on the kernel stack, a kernel stack overflow ends in a triple fault.",
     needs("probes")(df_without_ist_triple)),
    ("gate-if", "9. Pitfall 3: Wrong IDT Entry Type",
     "An interrupt gate clears IF on entry; a trap gate leaves it as it was.", needs("fires")(gate_if)),
    ("cr3-flush", "8. CR3 and Page Tables", "Writing CR3 flushes the TLB.", on_trials(cr3_flushes_tlb)),
    ("cr3-global", "8. CR3 and Page Tables",
     "(lab) A global translation (CR4.PGE=1) survives a write to CR3.", on_trials(global_survives_cr3)),
    ("process-cr3", "8. Thread Switch vs Process Switch",
     "A thread switch keeps CR3; a process switch loads another.", needs("tasks")(cr3_on_switch)),
)
