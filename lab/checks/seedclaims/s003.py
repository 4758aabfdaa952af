"""Seed 003, the GS-register story ("Why the GS Register is the Kernel's North Star"): swapgs,
the syscall entry's stack dance, and the context switch."""

from __future__ import annotations

from lab.checks.claim_judges import as_claim, callee_saved_switch, one_rsp_change, syscall_no_stack_switch

from .backends import needs, on_trials
from .trialjudges import cpu_swaps_gs, swapgs_twice

SEED = "003_8e98cca7442c992b.txt"
PREFIX = "s003"
TITLE = "Why the GS register is the kernel's north star"

CLAIMS = (
    ("cpu-swapgs", "The Transition: From User to Kernel",
     "On a system call or an interrupt the CPU itself executes swapgs.", on_trials(cpu_swaps_gs)),
    ("syscall-gs", "Entry and the Trap Frame",
     "(lab) At the syscall entry point the GS base is still the user's; the kernel's own swapgs switches it.",
     needs("ring3")(lambda ev: as_claim(ev.ring3, "syscall.swapgs-entry"))),
    ("swapgs-twice", "Why the GS Register is the Kernel's North Star",
     "swapgs exchanges the GS base with IA32_KERNEL_GS_BASE; a second swapgs exchanges them back.",
     on_trials(swapgs_twice)),
    ("rcx-r11", "Entry and the Trap Frame",
     "After syscall RCX holds the user's return RIP and R11 its RFLAGS, which the trap frame must save.",
     needs("ring3")(lambda ev: as_claim(ev.ring3, "syscall.rcx-r11"))),
    ("syscall-rsp", "The RSP Dilemma",
     "syscall leaves RSP pointing at the user's stack: the kernel switches stacks itself.",
     needs("ring3")(syscall_no_stack_switch)),
    ("percpu-slot", "The Stash Before the Push",
     "The entry parks the user RSP in a per-CPU slot through GS, then loads the kernel stack from another.",
     needs("ring3")(lambda ev: as_claim(ev.ring3, "syscall.user-rsp-slot"))),
    ("one-rsp", "2. The RSP Swap",
     "One instruction moves RSP from one task's kernel stack to the next's.", needs("tasks")(one_rsp_change)),
    ("callee-saved", "1. Freezing Task A",
     "A sleeping task's stack holds its callee-saved registers and the return address of its call into the "
     "switch, which resumes it with ret.", needs("tasks")(callee_saved_switch)),
)
