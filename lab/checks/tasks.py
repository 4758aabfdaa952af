"""Checks on the kernel's tasks and on traced context switches."""

from __future__ import annotations

from lab.checks.base import Check, Checks, Verdict, verdict
from lab.experiments.tasks import SCHEDULE, TASK_START
from lab.labkernel.layouts import SWITCH_FRAME

TIER = "tasks"
C = Checks(TIER)
QWORD = 8




def check_layouts(obs) -> list[Check]:
    out = []
    for struct, both in obs.layouts.items():
        title = f"the declared {struct} layout matches the DWARF the compiler emitted"
        if both["dwarf"] is None:
            out.append(C.make(f"tasks.layout-{struct}", title, Verdict.SKIP, ("no DWARF for it",)))
            continue
        d, w = both["declared"], both["dwarf"]
        diffs = [f"size declared {d['size']} vs DWARF {w['size']}"] if d["size"] != w["size"] else []
        for m in sorted(set(d["members"]) | set(w["members"])):
            if d["members"].get(m) != w["members"].get(m):
                diffs.append(f"{m}: declared {d['members'].get(m)} vs DWARF {w['members'].get(m)}")
        out.append(C.result(f"tasks.layout-{struct}", title, not diffs,
                      diffs or [f"{len(d['members'])} members, {d['size']} bytes"]))
    return out


def check_current(obs) -> Check:
    running = [t for t in obs.tasks if t.state == "running"]
    ok = len(running) == 1 and running[0].address == obs.current
    return C.result("tasks.current", "exactly one task runs, and PERCPU.current points at it", ok,
              [f"running: {[t.name for t in running]}; current {obs.current:#x}"])


def check_rsp0(obs) -> Check:
    cur = next((t for t in obs.tasks if t.address == obs.current), None)
    ok = cur is not None and obs.rsp0 == cur.fields["kstack_top"]
    return C.result("tasks.rsp0", "TSS.RSP0 is the current task's kernel stack top", ok,
              [f"TSS.RSP0 {obs.rsp0:#x}; current {cur.name if cur else '?'} kstack_top "
               f"{cur.fields['kstack_top'] if cur else 0:#x}"])


def check_frames(obs) -> list[Check]:
    out = []
    for t in obs.tasks:
        if t.frame is None:
            continue
        top, rsp = t.fields["kstack_top"], t.fields["rsp"]
        in_stack = t.stack_low is not None and t.stack_low <= rsp <= top - SWITCH_FRAME.size
        ret_ok = t.ret_symbol.startswith(SCHEDULE + "+") or t.ret_symbol == TASK_START
        slots = ", ".join(f"{k}={v:#x}" for k, v in t.frame.items())
        out.append(C.result(f"tasks.frame-{t.name}",
                      f"{t.name}: saved RSP on its own stack; the switch frame returns into "
                      f"{SCHEDULE} (or {TASK_START} if it never ran)",
                      in_stack and ret_ok,
                      [f"rsp {rsp:#x} in its stack {t.stack_low or 0:#x}..{top:#x}; ret -> "
                       f"{t.ret_symbol or 'no symbol'}", slots]))
    return out


def _rsp_jumps(trace):
    return [(i, a, b) for i, ((pc_a, a), (_, b)) in enumerate(zip(trace.steps, trace.steps[1:]))
            if abs(b - a) not in (0, QWORD)]


def check_trace(trace, n: int) -> list[Check]:
    prev, nxt = trace.prev, trace.next
    label = f"{n}"
    jumps = _rsp_jumps(trace)
    ok = len(jumps) == 1 and trace.steps[jumps[0][0]][0] == trace.stack_pc \
        and jumps[0][2] == nxt["rsp"]
    ev = [f"{len(trace.steps) - 1} instructions; RSP changes other than push/pop: "
          + (", ".join(f"{a:#x} -> {b:#x} at {trace.steps[i][0]:#x}" for i, a, b in jumps) or "none"),
          f"next.rsp {nxt['rsp']:#x}; the switch instruction is at {trace.stack_pc:#x}"]
    out = [C.result(f"tasks.switch{label}-rsp", "RSP changes exactly once, from the outgoing stack to the incoming "
              "task's saved slot", ok, ev)]
    ok = trace.current_after == nxt["address"] and trace.rsp0_after == nxt["kstack_top"]
    out.append(C.result(f"tasks.switch{label}-current", "afterwards PERCPU.current and TSS.RSP0 name the incoming task", ok,
                  [f"current {trace.current_after:#x} (next {nxt['address']:#x}); TSS.RSP0 "
                   f"{trace.rsp0_after:#x} (next kstack_top {nxt['kstack_top']:#x})"]))
    process_switch = prev["cr3"] != nxt["cr3"]
    changed = trace.cr3_before != trace.cr3_after
    ok = changed == process_switch and trace.cr3_after == nxt["cr3"]
    kind = "process switch: CR3 changes" if process_switch else "thread switch: CR3 stays"
    out.append(C.result(f"tasks.switch{label}-cr3", kind, ok,
                  [f"CR3 {trace.cr3_before:#x} -> {trace.cr3_after:#x}; prev.cr3 {prev['cr3']:#x}, next.cr3 {nxt['cr3']:#x}"]))
    return out


def check_preemption(obs) -> Check:
    r = obs.rates
    title = "preemption: every timer tick switches to another runnable task"
    if not r:
        return C.make("tasks.preemption", title, Verdict.SKIP, ("not measured",))
    ok = r["preempt_ticks"] > 0 and abs(r["preempt_switches"] - r["preempt_ticks"]) <= 1
    return C.result("tasks.preemption", title, ok,
              [f"{r['preempt_ticks']} ticks, {r['preempt_switches']} switches in {r['window_ms']} ms "
               f"({r['preempt_per_s']:.0f} switches/s at {r['preempt_timer_hz']} Hz); cooperative: "
               f"{r['cooperative_per_s']:.0f} switches/s"])


def run(obs) -> list[Check]:
    checks = check_layouts(obs) + [check_current(obs), check_rsp0(obs)] + check_frames(obs)
    checks.append(check_preemption(obs))
    for n, t in enumerate(obs.traces, 1):
        checks += check_trace(t, n)
    return checks
