"""Checks on the syscall path, interrupts taken in ring 3 and ring-3 exceptions (SDM vol. 2B
SYSCALL/SYSRET and SWAPGS; vol. 3A §6.14.2 and §6.12.1: a privilege change loads RSP from
TSS.RSP0 and pushes the user SS:RSP; §5.7 page-fault U/S bit)."""

from __future__ import annotations

from lab.checks.base import Check, Checks, Verdict, verdict
from lab.experiments.ring3 import CLOBBERED, SYSCALL_LEN
from lab.labkernel.contract import USER_CS, USER_SS
from lab.x86.frames import INTERRUPT_FRAME, TRAP_FRAME_GPRS, describe_pf_error
from lab.x86.vectors import PF, mnemonic

TIER = "ring3"
C = Checks(TIER)
RF_AND_FIXED = (1 << 16) | (1 << 1)  # SYSCALL clears RF; bit 1 always reads 1




def syscall_checks(o, unobserved: str | None = None) -> list[Check]:
    if o is None:
        return [C.result("syscall.reached", "SYSCALL from ring 3 enters the kernel at LSTAR in ring 0",
                         False, [unobserved or "the syscall path was not observed"])]
    u, st = o.user, o.steps
    ret = u["rip"] + SYSCALL_LEN
    entry, after_gs, after_stack = st["lab_syscall_entry"], st["lab_syscall_after_swapgs"], st["lab_syscall_after_stack"]
    sysret = st["lab_syscall_sysret"]
    out = [
        C.result("syscall.rcx-r11", "at entry RCX = the user's return address, R11 = the user's RFLAGS",
           entry["rcx"] == ret and entry["r11"] == u["eflags"],
           [f"RCX {entry['rcx']:#x} (syscall at {u['rip']:#x} + {SYSCALL_LEN}); R11 {entry['r11']:#x} "
            f"(user RFLAGS {u['eflags']:#x})"]),
        C.result("syscall.fmask", "inside the kernel RFLAGS = user RFLAGS with the FMASK bits cleared",
           (entry["eflags"] | RF_AND_FIXED) == ((u["eflags"] & ~o.fmask) | RF_AND_FIXED),
           [f"RFLAGS {entry['eflags']:#x}; user {u['eflags']:#x} & ~FMASK {o.fmask:#x} = {u['eflags'] & ~o.fmask:#x}"]),
        C.result("syscall.swapgs-entry", "swapgs at entry: GS_BASE becomes the per-CPU area, KERNEL_GS_BASE the user's",
           entry["gs_base"] == u["gs_base"] and entry["k_gs_base"] == o.percpu_address
           and after_gs["gs_base"] == o.percpu_address and after_gs["k_gs_base"] == u["gs_base"],
           [f"before: GS {entry['gs_base']:#x} KGS {entry['k_gs_base']:#x}; after: GS {after_gs['gs_base']:#x} "
            f"KGS {after_gs['k_gs_base']:#x}; PERCPU at {o.percpu_address:#x}"]),
        C.result("syscall.user-rsp-slot", "the user RSP is stored at PERCPU.user_rsp (offset 0x10)",
           o.percpu.get("user_rsp") == u["rsp"] and entry["rsp"] == u["rsp"],
           [f"PERCPU.user_rsp {o.percpu.get('user_rsp', 0):#x}; user RSP {u['rsp']:#x}"]),
        C.result("syscall.kernel-stack", "after the switch RSP = PERCPU.kernel_rsp = the task's kernel stack top",
           after_stack["rsp"] == o.percpu.get("kernel_rsp") == o.kstack_top,
           [f"RSP {after_stack['rsp']:#x}; PERCPU.kernel_rsp {o.percpu.get('kernel_rsp', 0):#x}; "
            f"kstack_top {o.kstack_top:#x}"]),
    ]
    tf = o.trap_frame
    bad = [f"{r} {tf[r]:#x} != user {u[r]:#x}" for r in TRAP_FRAME_GPRS
           if r not in CLOBBERED and tf[r] != u[r]]
    if (tf["rcx"], tf["r11"], tf["rip"], tf["rflags"]) != (ret, u["eflags"], ret, u["eflags"]):
        bad.append(f"RCX/RIP {tf['rcx']:#x}/{tf['rip']:#x}, R11/RFLAGS {tf['r11']:#x}/{tf['rflags']:#x}")
    if (tf["rsp"], tf["ss"], tf["cs"]) != (u["rsp"], USER_SS, USER_CS):
        bad.append(f"RSP {tf['rsp']:#x} SS {tf['ss']:#x} CS {tf['cs']:#x}")
    out.append(C.result("syscall.trap-frame", "the frame holds the user registers at `syscall` (RCX = return RIP, R11 = RFLAGS)",
                  not bad, bad or [f"{len(TRAP_FRAME_GPRS) - len(CLOBBERED)} GPRs, RIP, RFLAGS, RSP, SS, CS match"]))
    out.append(C.result("syscall.swapgs-exit", "at sysretq GS is the user's again and RCX/R11/RSP are the user's",
                  sysret["gs_base"] == u["gs_base"] and sysret["k_gs_base"] == o.percpu_address
                  and sysret["rcx"] == ret and sysret["r11"] == u["eflags"] and sysret["rsp"] == u["rsp"],
                  [f"GS {sysret['gs_base']:#x} KGS {sysret['k_gs_base']:#x}; RCX {sysret['rcx']:#x} "
                   f"R11 {sysret['r11']:#x} RSP {sysret['rsp']:#x}"]))
    return out


def interrupt_check(i) -> Check:
    f = INTERRUPT_FRAME.decode(b"".join(v.to_bytes(8, "little") for v in i.stack))
    ok = (f["cs"] & 3 == 3 and f["cs"] == USER_CS and f["ss"] == USER_SS
          and i.user_low <= f["rsp"] <= i.user_high and i.entry_rsp == i.tss_rsp0 - INTERRUPT_FRAME.size)
    return C.result("ring3.interrupt", "an interrupt in ring 3: CS RPL 3, user SS:RSP saved, entry RSP = TSS.RSP0 - 40", ok,
              [f"CS {f['cs']:#x} SS {f['ss']:#x} RSP {f['rsp']:#x} RIP {f['rip']:#x}; entry RSP {i.entry_rsp:#x}, "
               f"TSS.RSP0 {i.tss_rsp0:#x}"])


def fault_check(f, accel: str, qemu: str = "") -> tuple[Check, str]:
    """(check, outcome) with outcome PASS | FAIL | DEVIATION: a deviation recorded for this
    accelerator and QEMU version (lab/scenarios/deviations.py, `ring3:<program>`)."""
    from lab.checks.deviation import version_of
    from lab.scenarios.deviations import applicable

    title = f"{f.program}: {mnemonic(f.expected_vector)} from ring 3 with a user frame and error code {f.expected_error:#x}"
    got = f.report.get("vector")
    if f.entry is None:
        devs = applicable(f"ring3:{f.program}", accel, version_of(qemu))
        seen = [d for d in devs if d.vector == got]
        outcome = "DEVIATION" if seen else "FAIL"
        ev = [f"delivered {mnemonic(got) if got is not None else 'nothing'} instead"] + [d.note(qemu or "?") for d in seen]
        return C.make(f"ring3.fault-{f.program}", title, Verdict.FAIL, tuple(ev)), outcome
    st = f.entry["stack"]
    ec, rip, cs, rflags, rsp, ss = st
    problems = []
    if ec != f.expected_error:
        problems.append(f"error code {ec:#x}" + (f" ({describe_pf_error(ec)})" if f.expected_vector == PF else ""))
    if (cs, ss) != (USER_CS, USER_SS):
        problems.append(f"CS {cs:#x} SS {ss:#x}")
    if rip != f.fault_va:
        problems.append(f"RIP {rip:#x} != the faulting instruction {f.fault_va:#x}")
    if f.entry["rsp"] != f.tss_rsp0 - 48:
        problems.append(f"entry RSP {f.entry['rsp']:#x} != TSS.RSP0 {f.tss_rsp0:#x} - 48")
    if f.expected_cr2 is not None and f.entry["cr2"] != f.expected_cr2:
        problems.append(f"CR2 {f.entry['cr2']:#x} != {f.expected_cr2:#x}")
    ev = problems or [f"error code {ec:#x}, CS {cs:#x} SS {ss:#x}, RIP {rip:#x} (the faulting instruction), "
                      f"user RSP {rsp:#x}, entry RSP = TSS.RSP0 - 48" +
                      (f", CR2 {f.entry['cr2']:#x} ({describe_pf_error(ec)})" if f.expected_cr2 else "")]
    c = C.result(f"ring3.fault-{f.program}", title, not problems, ev)
    return c, ("PASS" if not problems else "FAIL")


def bench_check(b) -> Check:
    if "fault" in b:
        return C.result("syscall.bench", "syscall round trips complete (getpid x 100000)", False,
                        [f"the benchmark faulted: {b['fault']}"])
    return C.result("syscall.bench", "syscall round trips complete (getpid x 100000)", b.get("syscalls") == 100000 and b.get("code") == 0,
              [f"{b.get('syscalls')} syscalls in {b.get('tsc_cycles', 0) / max(b.get('tsc_hz', 1), 1) * 1000:.1f} ms = "
               f"{b.get('per_s', 0):,.0f}/s"])


def run(o) -> tuple[list[Check], dict[str, str]]:
    checks = syscall_checks(o.syscall, o.unobserved.get("syscall")) + [interrupt_check(o.interrupt)]
    outcomes = {}
    for f in o.faults:
        c, outcome = fault_check(f, o.accel, getattr(o, "qemu", ""))
        checks.append(c)
        outcomes[f.program] = outcome
    checks.append(bench_check(o.bench))
    return checks, outcomes
