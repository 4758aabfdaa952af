"""Seed 001, "Background on x86 Architecture" / "Mode Transfer in x86": the hardware's steps on
an exception or a trap, and iret."""

from __future__ import annotations

from lab.checks.claim_evidence import HOLDS, HOLDS_IF
from lab.checks.claim_judges import (error_code_vectors, gate_if, gprs_saved_by_cpu,
                                     iretq_pops_rsp_only_on_privilege_change)

from .backends import invert, needs, on_trials
from .trialjudges import cpl_in_cs, old_rsp_pushed, stacks_by_rule

SEED = "001_122eb797de732a51.txt"
PREFIX = "s001"
TITLE = "Background on x86 Architecture: Mode Transfer in x86"

ALL_STACKS = [(0, 0), (0, 6), (3, 0), (3, 6)]


@needs("fires")
def masks_interrupts(ev):
    """The hardware masks interrupts on every exception or trap: only through interrupt gates."""
    v, e = gate_if(ev)
    if v == HOLDS:
        return HOLDS_IF, e + ["only through an interrupt gate: a trap gate keeps IF=1 (syscall masks what IA32_FMASK says)"]
    return v, e


def _switch(obs):
    v, e = stacks_by_rule(ALL_STACKS)(obs)
    if v == HOLDS:
        return HOLDS_IF, e + ["only from ring 3 (TSS.RSP0) or through an IST gate; from ring 0 without IST "
                              "the interrupted stack is kept"]
    return v, e


CLAIMS = (
    ("mask", "Mode Transfer in x86, step 1",
     "The hardware masks interrupts when it takes an exception or a system-call trap.", masks_interrupts),
    ("saves-ss-rsp", "Mode Transfer in x86, steps 2 and 4",
     "The hardware saves the interrupted SS:RSP, RFLAGS and CS:RIP on the handler's stack.",
     on_trials(old_rsp_pushed)),
    ("switch-stack", "Mode Transfer in x86, step 3",
     "The hardware switches to the kernel interrupt stack a special register names.", on_trials(_switch)),
    ("error-code", "Mode Transfer in x86, step 5",
     "Some exceptions (e.g. the page fault) push an error code as the top item; for the others the handler "
     "pushes a dummy.", needs("fires")(error_code_vectors)),
    ("gprs", "Mode Transfer in x86, step 6",
     "The handler, not the hardware, pushes the remaining registers.", invert(needs("fires")(gprs_saved_by_cpu))),
    ("iret", "Mode Transfer in x86, the return",
     "iret restores RIP, RFLAGS and the interrupted stack pointer.",
     invert(needs("fires")(iretq_pops_rsp_only_on_privilege_change))),
    ("cpl-cs", "Background on x86 Architecture",
     "The current privilege level is held in the low bits of CS.", on_trials(cpl_in_cs)),
)
