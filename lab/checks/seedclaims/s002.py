"""Seed 002, "black metal kernel — episode 03: interrupt handling": its claims about EOI and the
frame, and its page-fault stub's behaviour as `trial tutorial` reproduces it."""

from __future__ import annotations

from lab.checks.claim_judges import (iretq_pops_rsp_only_on_privilege_change,
                                     ss_rsp_only_on_privilege_change)

from .backends import invert, needs, on_trials
from .trialjudges import never_again_without_eoi, only_higher_class_without_eoi
from .tutorialjudges import any_vector_returns, call_aligned, frame_is_cpu_frame, pf_round_trip

SEED = "002_e6608577afa232f2.txt"
PREFIX = "s002"
TITLE = "black metal kernel, episode 03: interrupt handling"

CLAIMS = (
    ("eoi-never", "03 — interrupt handling: context preservation",
     "A handler that does not send EOI leaves its core without local-APIC interrupts for good.",
     on_trials(never_again_without_eoi)),
    ("eoi-classes", "03 — interrupt handling: context preservation",
     "(lab) Without the EOI only vectors of a higher priority class than the one in service arrive; the others "
     "wait in the IRR until EOIs retire the in-service vectors.", on_trials(only_higher_class_without_eoi)),
    ("frame-rsp-ss", "expanded — naked functions, calling conventions, and iretq",
     "The CPU always pushes RIP, CS and RFLAGS, and RSP and SS only after a privilege change.",
     needs("fires")(ss_rsp_only_on_privilege_change)),
    ("stub-frame", "the code: black_page_fault_handler / black_page_fault_router",
     "The stub's pointer (RSP after its fifteen pushes) is the CPU's frame, so the function's frame.rip is the "
     "interrupted RIP.", on_trials(frame_is_cpu_frame)),
    ("stub-align", "the code: black_page_fault_handler",
     "The stub calls the Rust function with the stack aligned as the System V ABI requires.",
     on_trials(call_aligned)),
    ("stub-pf-return", "the code: black_page_fault_handler",
     "On a page fault the stub's return (add rsp, 8; iretq) resumes the faulting instruction with the registers "
     "restored.", on_trials(pf_round_trip)),
    ("stub-any-vector", "expanded — naked functions, calling conventions, and iretq",
     "The stub's iretq resumes the interrupted code exactly as if nothing happened, whatever the vector.",
     on_trials(any_vector_returns)),
    ("iretq-pops", "expanded — naked functions, calling conventions, and iretq",
     "(lab) iretq pops RSP and SS too, even without a privilege change, not only RIP, CS and RFLAGS.",
     invert(needs("fires")(iretq_pops_rsp_only_on_privilege_change))),
)
