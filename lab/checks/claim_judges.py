"""The judges of the claims (lab/checks/claims.py): each a function of the evidence alone,
returning a verdict and its evidence in one line each. None stores an answer."""

from __future__ import annotations

from lab.checks.base import Verdict
from lab.checks.claim_evidence import (HOLDS, HOLDS_IF, REFUTED, UNMEASURED, _check,
                                       _delivered_as_expected, _fires, _name)
from lab.checks.frame import saved_frame
from lab.checks.timer import pitfall_gate
from lab.x86.frames import INTERRUPT_FRAME, PF_ERROR_CODE, QWORD, RFLAGS_IF
from lab.x86.vectors import DF, ERROR_CODE_VECTORS, GP, NP, PF


def _ranges(values) -> str:
    """8, 10-14, 17, 29, 30: sorted numbers, runs of three or more folded."""
    runs: list[list[int]] = []
    for v in sorted(values):
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) >= 3 else ", ".join(map(str, r)) for r in runs)


# -- interrupt frames -------------------------------------------------------------------------

def ss_rsp_only_on_privilege_change(ev):
    same_cpl = _fires(ev)
    if not same_cpl:
        return UNMEASURED, ["no fire reached its handler"]
    pushed = [r for r in same_cpl if _check(r, "fire.rsp").verdict is Verdict.PASS
              and _check(r, "fire.cs-ss").verdict is Verdict.PASS]
    r = pushed[0] if pushed else same_cpl[0]
    f = saved_frame(r.observation, r.scenario)
    ev_ = [f"{len(pushed)} of {len(same_cpl)} exceptions taken at CPL 0 (no privilege change) pushed SS and RSP",
           f"e.g. {_name(r)}: saved RSP {f.rsp:#x} = interrupted RSP, saved SS {f.ss:#x}"]
    return (REFUTED if pushed else HOLDS), ev_


def aligns_rsp(ev):
    fires = _fires(ev)
    if not fires:
        return UNMEASURED, ["no fire reached its handler"]
    misaligned = [r for r in fires if r.observation.before["rsp"] % 16]
    ok = [r for r in misaligned if _check(r, "fire.alignment").verdict is Verdict.PASS]
    if not misaligned:
        return UNMEASURED, ["no exception interrupted a misaligned RSP"]
    r = ok[0] if ok else misaligned[0]
    e = [f"{len(ok)} of {len(misaligned)} exceptions interrupting RSP = 8 mod 16 pushed their frame below "
         f"RSP aligned down to 16", _check(r, "fire.alignment").evidence[0]]
    return (HOLDS if len(ok) == len(misaligned) else REFUTED), e


def error_code_always(ev):
    without = [r for r in _fires(ev) if r.observation.delivered and r.observation.delivered["error_code"] is None]
    if not _fires(ev):
        return UNMEASURED, []
    names = sorted({f"{r.scenario.name} (vector {r.observation.vector})" for r in without})
    return (REFUTED if without else HOLDS), [f"no error code pushed for: {', '.join(names) or 'none'}"]


def error_code_vectors(ev):
    seen = {}
    for r in _fires(ev):
        d = r.observation.delivered
        if d and not r.scenario.software:
            seen.setdefault(d["vector"], set()).add(d["error_code"] is not None)
    for name, (obs, _) in ev.probes.items():
        if obs.df_frame:
            seen.setdefault(DF, set()).add(True)
    if not seen:
        return UNMEASURED, []
    manual = set(ERROR_CODE_VECTORS)
    wrong = [v for v, pushes in seen.items() if pushes != {v in manual}]
    listed = ", ".join(f"{v}:{'code' if True in p else 'none'}" for v, p in sorted(seen.items()))
    e = [f"measured vectors: {listed}",
         f"the manual's set: {_ranges(ERROR_CODE_VECTORS)}"]
    if wrong:
        return REFUTED, e + [f"disagreeing: {wrong}"]
    unraised = [v for v in ERROR_CODE_VECTORS if v not in seen]  # #TS among them: no task switch here
    return HOLDS_IF, e + [f"for every vector measured here ({_ranges(unraised)} not raised on this machine)"]


def gprs_saved_by_cpu(ev):
    fires = _fires(ev)
    if not fires:
        return UNMEASURED, []
    sizes = sorted({r.observation.before["rsp"] // 16 * 16 - r.observation.entry["rsp"] for r in fires
                    if not r.observation.gate["ist"]})
    return (REFUTED if sizes and max(sizes) <= QWORD + INTERRUPT_FRAME.size else HOLDS), [
        f"at the handler's first instruction the CPU had pushed {', '.join(map(str, sizes))} bytes: "
        f"RIP, CS, RFLAGS, RSP, SS and perhaps an error code; no general-purpose register",
        "the stub style's TrapFrame holds them because the stub pushed them"]


def _saved_rip(ev, rip, kinds, saved):
    runs = [r for r in _fires(ev) if r.scenario.rip == rip and _delivered_as_expected(r)]
    if not runs:
        return UNMEASURED, []
    bad = [_name(r) for r in runs if _check(r, "fire.rip").verdict is not Verdict.PASS]
    return (REFUTED if bad else HOLDS), [f"{len(runs) - len(bad)} of {len(runs)} {kinds} saved {saved}",
                                          _check(runs[0], "fire.rip").evidence[0]]


def fault_rip(ev):
    return _saved_rip(ev, "fault", "faults", "the faulting instruction's address")


def trap_rip(ev):
    return _saved_rip(ev, "next", "traps (int3, single step, int n)", "the next instruction's address")


def gate_if(ev):
    fires = _fires(ev)
    interrupt = [r for r in fires if r.observation.gate["type"] == "interrupt"]
    trap = [r for r in fires if r.observation.gate["type"] == "trap"]
    if not interrupt or not trap:
        return UNMEASURED, ["need both gate types"]
    bad = [_name(r) for r in interrupt + trap if _check(r, "fire.if").verdict is not Verdict.PASS]
    return (REFUTED if bad else HOLDS), [f"IF=0 in {len(interrupt)} interrupt-gate handlers, IF kept (1) in "
                                          f"{len(trap)} trap-gate handlers; interrupted code had IF=1"]


def resume_intact(ev):
    fires = [r for r in ev.fires if r.observation.after is not None and r.observation.entry is not None]
    if not fires:
        return UNMEASURED, []
    bad = [_name(r) for r in fires if _check(r, "fire.resume").verdict is not Verdict.PASS]
    return (HOLDS_IF if not bad else REFUTED), [
        f"{len(fires) - len(bad)} of {len(fires)} returns with iretq resumed with all 15 sentinel registers intact",
        "condition: the handler saves what it uses (both handler styles here do)"]


def iretq_pops_rsp_only_on_privilege_change(ev):
    fires = [r for r in _fires(ev) if r.observation.after is not None and r.observation.before["rsp"] % 16]
    if not fires:
        return UNMEASURED, []
    restored = [r for r in fires if r.observation.after["rsp"] == r.observation.before["rsp"]]
    r = restored[0] if restored else fires[0]
    base = r.observation.before["rsp"] // 16 * 16
    return (REFUTED if restored else HOLDS), [
        f"{len(restored)} of {len(fires)} same-CPL returns restored the unaligned RSP "
        f"(e.g. {r.observation.before['rsp']:#x}); without popping RSP it would be the aligned frame base {base:#x}"]


def cr2(ev):
    pfs = [r for r in _fires(ev) if r.observation.expected_cr2 is not None and r.observation.entry]
    if not pfs:
        return UNMEASURED, []
    bad = [_name(r) for r in pfs if _check(r, "fire.cr2").verdict is not Verdict.PASS]
    return (REFUTED if bad else HOLDS), [f"{len(pfs) - len(bad)} of {len(pfs)} page faults left the faulting address in CR2"]


def pf_error_bits(ev):
    bits = {}
    for r in _fires(ev, lambda r: r.observation.vector == PF):
        code = r.observation.entry["stack"][0]
        bits[r.scenario.name] = PF_ERROR_CODE.decode_int(code)
    if ev.ring3:
        for f in ev.ring3[0].faults:
            if f.program == "kread" and f.entry:
                bits["kread (ring 3)"] = PF_ERROR_CODE.decode_int(f.entry["stack"][0])
    need = {"pf-write": "w", "pf-nx": "id", "pf-rsvd": "rsvd", "kread (ring 3)": "us"}
    if not all(k in bits for k in need):
        return UNMEASURED, [f"measured: {sorted(bits)}"]
    ok = all(bits[k][b] for k, b in need.items())
    rsvd_p = bits["pf-rsvd"]["p"]
    e = [", ".join(f"{k}: {b.upper()}={bits[k][b]}" for k, b in need.items())]
    if ok and not rsvd_p:
        return HOLDS_IF, e + ["but with RSVD set, P was 0 here (the manual sets P for a present entry): "
                              "true to the manual only on hardware (QEMU TCG drops P)"]
    return (HOLDS if ok else REFUTED), e


def styles_same_frame(ev):
    by = {}
    for r in _fires(ev, _delivered_as_expected):
        by.setdefault(r.scenario.name, {})[r.observation.style] = r
    pairs = [(a["x86-interrupt"], a["stub"]) for a in by.values() if len(a) == 2]
    if not pairs:
        return UNMEASURED, []
    same = [p for p in pairs if len(p[0].observation.entry["stack"]) == len(p[1].observation.entry["stack"])
            and saved_frame(p[0].observation, p[0].scenario).cs == saved_frame(p[1].observation, p[1].scenario).cs
            and p[0].observation.entry["rsp"] == p[1].observation.entry["rsp"]]
    return (HOLDS if len(same) == len(pairs) else REFUTED), [
        f"{len(same)} of {len(pairs)} scenarios: the compiler's x86-interrupt handler and the naked stub were entered "
        f"with the same RSP and frame; only what the handler does next differs"]


# -- double and triple faults -------------------------------------------------------------------

def _probe(ev, name):
    return ev.probes.get(name)


def df_on_ist_survives(ev):
    p = _probe(ev, "control")
    if not p:
        return UNMEASURED, []
    obs, checks = p
    ok = obs.outcome == "survives" and all(c.verdict is not Verdict.FAIL for c in checks)
    return (HOLDS if ok else REFUTED), [f"control: {obs.outcome}; " + (obs.report or "")]


def df_without_ist_triple(ev):
    p = _probe(ev, "df-no-ist")
    if not p:
        return UNMEASURED, []
    obs, _ = p
    return (HOLDS if obs.outcome == "triple fault" else REFUTED), [
        f"df-no-ist: {obs.outcome}; chain {' -> '.join(obs.chain or []) or 'unavailable'}"]


def fault_during_df(ev):
    names = [n for n in ("df-no-ist", "df-not-present", "idt-limit0") if _probe(ev, n)]
    if not names:
        return UNMEASURED, []
    e = []
    ok = True
    for n in names:
        obs, _ = ev.probes[n]
        chain = obs.chain or []
        after_df = chain[chain.index("#DF") + 1:] if "#DF" in chain else []
        ok &= obs.outcome == "triple fault" and bool(after_df) and after_df[-1] == "triple fault"
        e.append(f"{n}: {' -> '.join(chain) or obs.outcome} (QMP: {obs.shutdown})")
    return (HOLDS if ok else REFUTED), e


def df_error_zero(ev):
    p = _probe(ev, "double-fault")
    if not p or not p[0].df_frame:
        return UNMEASURED, []
    code = p[0].df_frame["stack"][0]
    return (HOLDS if code == 0 else REFUTED), [f"#DF pushed error code {code:#x}"]


def contributory_pair(ev):
    p = _probe(ev, "df-not-present")
    if not p or p[0].chain is None:
        return UNMEASURED, ["needs the TCG exception log"]
    chain = p[0].chain
    ok = chain[:3] == ["#GP", "#NP", "#DF"]
    return (HOLDS if ok else REFUTED), [f"chain: {' -> '.join(chain)}"]


def not_present_gate_np(ev):
    np_ = next((r for r in ev.fires if r.scenario.name == "np"), None)
    zero = next((r for r in ev.fires if r.scenario.name == "gp-nogate"), None)
    if not np_ or not zero or not np_.observation.delivered or not zero.observation.delivered:
        return UNMEASURED, []
    v1, v2 = np_.observation.delivered["vector"], zero.observation.delivered["vector"]
    e = [f"int to a valid interrupt gate with P=0: vector {v1}", f"int to an all-zero IDT entry: vector {v2}"]
    if v1 == NP and v2 == GP:
        return HOLDS_IF, e + ["only if the gate's type is valid: the CPU checks the type before P"]
    return (HOLDS if v1 == v2 == NP else REFUTED), e


def idt_limit(ev):
    p = _probe(ev, "idt-limit0")
    if not p or p[0].chain is None:
        return UNMEASURED, []
    return (HOLDS if p[0].chain[:1] == ["#GP"] else REFUTED), [f"int3 with IDTR.limit 0: {' -> '.join(p[0].chain)}"]


# -- TSS, tasks, ring 3, syscall, timer ------------------------------------------------------------

def tss_stacks(ev):
    ist = [r for r in _fires(ev) if r.observation.gate["ist"] and _check(r, "fire.alignment").verdict is Verdict.PASS]
    ring = ev.ring3[0].interrupt if ev.ring3 else None
    if not ist or ring is None:
        return UNMEASURED, []
    ok = ring.entry_rsp == ring.tss_rsp0 - 40
    return (HOLDS if ok else REFUTED), [
        f"{len(ist)} IST deliveries started exactly at their IST slot's top (e.g. {_name(ist[0])})",
        f"a ring-3 interrupt started at TSS.RSP0 {ring.tss_rsp0:#x} - 40 = {ring.entry_rsp:#x}"]


def callee_saved_switch(ev):
    if not ev.tasks:
        return UNMEASURED, []
    obs, checks = ev.tasks
    frames = [t for t in obs.tasks if t.frame]
    ran = all(t.fields["switches"] > 0 for t in obs.tasks)
    ok = frames and all(set(t.frame) == {"r15", "r14", "r13", "r12", "rbp", "rbx", "ret"} for t in frames) and ran
    return (HOLDS_IF if ok else REFUTED), [
        f"{len(frames)} sleeping tasks each hold 6 registers and a return address; every task ran and was resumed",
        "condition: the switch is an ordinary call, so the caller already saved the caller-saved registers (System V)"]


def one_rsp_change(ev):
    if not ev.tasks or not ev.tasks[0].traces:
        return UNMEASURED, []
    checks = [c for c in ev.tasks[1] if c.id.endswith("-rsp") and c.id.startswith("tasks.switch")]
    ok = all(c.verdict is Verdict.PASS for c in checks)
    return (HOLDS if ok else REFUTED), [f"{len(checks)} traced switches"] + [checks[0].evidence[0]]


def cr3_on_switch(ev):
    if not ev.tasks:
        return UNMEASURED, []
    checks = [c for c in ev.tasks[1] if c.id.endswith("-cr3")]
    kinds = {c.title for c in checks}
    ok = all(c.verdict is Verdict.PASS for c in checks) and len(kinds) == 2
    return (HOLDS if ok else REFUTED), [f"{c.title}: {c.evidence[0]}" for c in checks[:4]]


def rsp0_follows_task(ev):
    if not ev.tasks:
        return UNMEASURED, []
    checks = [c for c in ev.tasks[1] if c.id.endswith("-current")]
    ok = all(c.verdict is Verdict.PASS for c in checks) and bool(checks)
    return (HOLDS_IF if ok else REFUTED), [checks[0].evidence[0] if checks else "",
                                          "condition: the kernel updates it; the CPU never does (it only reads RSP0)"]


def as_claim(run, check_id):
    """A claim that one of a command's own checks decides: ``run`` is that command's
    (observation, checks, ...) tuple, or None when the command did not run."""
    if not run:
        return UNMEASURED, []
    c = next((c for c in run[1] if c.id == check_id), None)
    if c is None and check_id.startswith("syscall."):
        # The path was never entered (ring3's `syscall.reached` FAIL): refuted there, by it.
        c = next((c for c in run[1] if c.id == "syscall.reached"), None)
    if c is None:
        return UNMEASURED, []
    return (HOLDS if c.verdict is Verdict.PASS else REFUTED), list(c.evidence)


def syscall_no_stack_switch(ev):
    if not ev.ring3:
        return UNMEASURED, []
    o = ev.ring3[0].syscall
    verdict, e = as_claim(ev.ring3, "syscall.rcx-r11")
    if o is None:
        return verdict, e
    same = o.steps["lab_syscall_entry"]["rsp"] == o.user["rsp"]
    return (HOLDS if verdict == HOLDS and same else REFUTED), e + [
        f"RSP at the entry point {o.steps['lab_syscall_entry']['rsp']:#x} is still the user's {o.user['rsp']:#x}"]


def ring3_faults_contained(ev):
    if not ev.ring3:
        return UNMEASURED, []
    obs, checks, outcomes = ev.ring3
    passed = [p for p, o in outcomes.items() if o in ("PASS", "DEVIATION")]
    return (HOLDS if passed and len(passed) == len(outcomes) else REFUTED), [
        f"{', '.join(f'{p}: {o}' for p, o in outcomes.items())}; the kernel answered after each"]


def trap_gate_timer(ev):
    if not ev.timer:
        return UNMEASURED, []
    g = pitfall_gate(ev.timer[0], "trap-gate")
    if g is None:
        return UNMEASURED, []
    inside = bool(g.rflags & RFLAGS_IF)
    return (HOLDS if inside else REFUTED), [f"timer on a trap gate: RFLAGS {g.rflags:#x} at the handler, IF={int(inside)}"]
