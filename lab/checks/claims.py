"""`lab claims`: statements of the kind tutorials make about x86-64 interrupts, stacks, the TSS,
double faults, context switches and `syscall`, each decided by measurement.

Every claim is a function of the evidence the lab's experiments gather at run time (fire,
probe, tasks, ring3, timer). None stores an answer: change the evidence and the verdict
changes (tests/unit/test_claims.py does exactly that).

Verdicts: HOLDS; HOLDS_IF (holds only under a condition, which the evidence names); REFUTED;
UNMEASURED (the experiment did not produce what the claim needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lab.checks.claim_evidence import HOLDS, HOLDS_IF, REFUTED, UNMEASURED, Evidence, judged
from lab.checks.claim_judges import (
    aligns_rsp, callee_saved_switch, contributory_pair, cr2, cr3_on_switch, df_error_zero,
    df_on_ist_survives, df_without_ist_triple, error_code_always, error_code_vectors,
    fault_during_df, fault_rip, gate_if, gprs_saved_by_cpu, idt_limit,
    iretq_pops_rsp_only_on_privilege_change, not_present_gate_np, one_rsp_change,
    pf_error_bits, resume_intact, ring3_faults_contained, rsp0_follows_task,
    ss_rsp_only_on_privilege_change, styles_same_frame, syscall_no_stack_switch, trap_gate_timer,
    trap_rip, tss_stacks, as_claim,
)
from lab.checks.claim_judges_smp import own_gs_area, own_tss_and_stacks, switch_keeps_gs_base, triple_fault_local

__all__ = ["CLAIMS", "Claim", "Evidence", "HOLDS", "HOLDS_IF", "REFUTED", "UNMEASURED", "evaluate"]


@dataclass(frozen=True)
class Claim:
    id: str
    topic: str
    statement: str
    judge: Callable[[Evidence], tuple[str, list[str]]]


CLAIMS: tuple[Claim, ...] = (
    Claim("frame-ss-rsp", "interrupt frame", "An interrupt that does not change privilege pushes only RIP, CS and "
          "RFLAGS; SS and RSP are pushed only when the CPU moves to a more privileged ring.", ss_rsp_only_on_privilege_change),
    Claim("frame-align", "interrupt frame", "In 64-bit mode the CPU rounds RSP down to a 16-byte boundary before it "
          "pushes the interrupt frame.", aligns_rsp),
    Claim("error-code-always", "interrupt frame", "Every exception pushes an error code.", error_code_always),
    Claim("error-code-vectors", "interrupt frame", "Only #DF, #TS, #NP, #SS, #GP, #PF, #AC (and #CP, #VC, #SX) push an "
          "error code.", error_code_vectors),
    Claim("gprs-saved", "interrupt frame", "On an interrupt the CPU saves the general-purpose registers for the "
          "handler.", gprs_saved_by_cpu),
    Claim("fault-rip", "interrupt frame", "For a fault, the saved RIP is the address of the instruction that "
          "faulted, so returning retries it.", fault_rip),
    Claim("trap-rip", "interrupt frame", "For a trap (int3, a single step, int n), the saved RIP is the address of "
          "the next instruction.", trap_rip),
    Claim("gate-if", "IDT", "An interrupt gate clears RFLAGS.IF on entry; a trap gate leaves it as it was.", gate_if),
    Claim("resume-intact", "iretq", "After iretq the interrupted code continues with every register as it was.",
          resume_intact),
    Claim("iretq-rsp", "iretq", "iretq pops RSP and SS only when it returns to a less privileged ring.",
          iretq_pops_rsp_only_on_privilege_change),
    Claim("cr2", "page faults", "On a page fault, CR2 holds the linear address that could not be accessed.", cr2),
    Claim("pf-bits", "page faults", "The page-fault error code tells a write, a user-mode access, a reserved-bit "
          "violation and an instruction fetch apart.", pf_error_bits),
    Claim("styles-same-frame", "handlers", "A compiler-generated interrupt handler and a hand-written assembly stub "
          "receive the same frame from the CPU.", styles_same_frame),
    Claim("np-gate", "IDT", "Raising a vector whose IDT gate is not present gives #NP.", not_present_gate_np),
    Claim("idt-limit", "IDT", "A vector beyond the IDT's limit gives #GP.", idt_limit),
    Claim("df-ist-survives", "double fault", "A kernel stack overflow is survivable if #DF has its own IST stack: the "
          "#DF handler runs on a good stack.", df_on_ist_survives),
    Claim("df-no-ist-triple", "double fault", "Without an IST stack for #DF, a kernel stack overflow ends in a "
          "triple fault.", df_without_ist_triple),
    Claim("fault-in-df", "double fault", "A fault while the CPU delivers #DF shuts the machine down (a triple "
          "fault, seen by QEMU as a guest reset).", fault_during_df),
    Claim("df-error-zero", "double fault", "#DF always pushes an error code of 0.", df_error_zero),
    Claim("contributory", "double fault", "Two contributory exceptions in a row (#GP, then #NP while delivering it) "
          "become a #DF.", contributory_pair),
    Claim("tss-stacks", "TSS", "In 64-bit mode the TSS holds no registers, only stack pointers: RSP0 for entering "
          "ring 0 and IST1-7 for gates that name them.", tss_stacks),
    Claim("ring3-interrupt", "TSS", "An interrupt in ring 3 switches to TSS.RSP0 and pushes the user SS and RSP.",
          lambda ev: as_claim(ev.ring3, "ring3.interrupt")),
    Claim("callee-saved", "context switch", "A context switch only has to save RSP and the callee-saved registers "
          "(rbx, rbp, r12-r15).", callee_saved_switch),
    Claim("one-rsp-change", "context switch", "In a context switch exactly one instruction changes RSP from one "
          "task's stack to another's.", one_rsp_change),
    Claim("cr3-switch", "address spaces", "Switching threads of one address space keeps CR3; switching processes "
          "loads a new CR3.", cr3_on_switch),
    Claim("rsp0-task", "TSS", "TSS.RSP0 must name the running task's kernel stack.", rsp0_follows_task),
    Claim("syscall-rcx-r11", "syscall", "syscall saves the return address in RCX and RFLAGS in R11 and does not "
          "switch stacks.", syscall_no_stack_switch),
    Claim("swapgs", "per-CPU", "swapgs exchanges the GS base with IA32_KERNEL_GS_BASE, which gives the kernel its "
          "per-CPU area before it has saved anything.", lambda ev: as_claim(ev.ring3, "syscall.swapgs-entry")),
    Claim("fmask", "syscall", "After syscall, RFLAGS has the IA32_FMASK bits cleared, so interrupts are off until "
          "the kernel turns them on.", lambda ev: as_claim(ev.ring3, "syscall.fmask")),
    Claim("percpu-slot", "per-CPU", "The syscall entry parks the user RSP in the per-CPU area and loads the kernel "
          "stack from it.", lambda ev: as_claim(ev.ring3, "syscall.user-rsp-slot")),
    Claim("ring3-faults", "user mode", "A fault in ring 3 can be contained: the kernel kills the task and goes on.",
          ring3_faults_contained),
    Claim("no-eoi", "interrupt controllers", "A timer handler that forgets the EOI gets exactly one tick.",
          lambda ev: as_claim(ev.timer, "timer.no-eoi")),
    Claim("percpu-own-gs", "many CPUs", "Each CPU has its own GS base and its own per-CPU area.", own_gs_area),
    Claim("percpu-own-tss", "many CPUs", "Each CPU runs with its own TSS and its own RSP0 and IST stacks.",
          own_tss_and_stacks),
    Claim("switch-keeps-gs", "many CPUs", "A context switch changes the data in the per-CPU area (the current "
          "task, the kernel stack), not the GS base that points at the area.", switch_keeps_gs_base),
    Claim("triple-fault-one-cpu", "many CPUs", "A triple fault on one CPU resets only that CPU; the others keep "
          "running.", triple_fault_local),
    Claim("trap-gate-timer", "interrupt controllers", "A timer wired to a trap gate runs its handler with "
          "interrupts enabled.", trap_gate_timer),
)


def evaluate(ev: Evidence) -> list[dict]:
    out = []
    for c in CLAIMS:
        verdict, evidence = judged(c, ev)
        out.append({"id": c.id, "topic": c.topic, "statement": c.statement, "verdict": verdict, "evidence": evidence})
    return out
