"""Seed 004, "Operating System - CPU Exceptions" (the interrupt stack frame and what the
x86-interrupt calling convention does behind the scenes)."""

from __future__ import annotations

from lab.checks.claim_evidence import HOLDS, REFUTED, UNMEASURED
from lab.checks.claim_judges import aligns_rsp, error_code_vectors, gate_if

from .backends import needs, on_trials
from .firejudges import error_code_breaks_alignment
from .trialjudges import old_rsp_pushed, stacks_by_rule
from .tutorialjudges import any_vector_returns, pf_round_trip

SEED = "004_50a9bf41cbb8e124.txt"
PREFIX = "s004"
TITLE = "Operating System - CPU Exceptions: the interrupt stack frame"


def error_code_must_go(obs):
    """The error code is the handler's to remove before iretq: removing it returns (#PF);
    removing one that was never pushed (#UD) breaks the return."""
    pf, pfe = pf_round_trip(obs)
    ud, ude = any_vector_returns(obs)
    if UNMEASURED in (pf, ud):
        return UNMEASURED, pfe + ude
    return (HOLDS if pf == HOLDS and ud == REFUTED else REFUTED), pfe + ude


CLAIMS = (
    ("align", "The Interrupt Stack Frame: aligning the stack pointer",
     "On an interrupt the CPU aligns RSP to 16 bytes before it pushes the frame.", needs("fires")(aligns_rsp)),
    ("switch-some", "The Interrupt Stack Frame: switching stacks (in some cases)",
     "The stack is switched on a privilege change and for a gate with an IST entry, and otherwise not.",
     on_trials(stacks_by_rule([(0, 0), (0, 6), (3, 0), (3, 6)]))),
    ("old-rsp", "The Interrupt Stack Frame: pushing the old stack pointer",
     "The CPU pushes RSP and SS as they were before the alignment.", on_trials(old_rsp_pushed)),
    ("rflags", "The Interrupt Stack Frame: pushing and updating the RFLAGS register",
     "The CPU pushes the old RFLAGS and changes some of its bits (IF, through an interrupt gate).",
     needs("fires")(gate_if)),
    ("error-code", "The Interrupt Stack Frame: pushing an error code",
     "Only some exceptions, such as page faults, push an error code.", needs("fires")(error_code_vectors)),
    ("error-misaligns", "Behind the Scenes: aligning the stack",
     "The CPU aligns the stack, and an error code then shifts it by 8: the handler no longer starts with RSP where "
     "a function's entry has it (8 mod 16).",
     needs("fires")(error_code_breaks_alignment)),
    ("error-pop", "Behind the Scenes: handling the error code",
     "The error code has to be popped before iretq, and only for the vectors that push one.",
     on_trials(error_code_must_go)),
)
