"""A context switch on CPU K changes CPU K's TSS.RSP0 and per-CPU `current` only (lab-kernel
tier; the observation is lab/experiments/cpu_switch.py's): a pure function of every CPU's
snapshot before and after each `on K switch`.

- `cpu-switch.current`: CPU K's `current` changed, to the task the shell reported;
- `cpu-switch.rsp0`: CPU K's TSS.RSP0 became that task's `kstack_top` (the next ring-3 -> 0
  entry on CPU K lands on the new task's stack);
- `cpu-switch.others`: no other CPU's RSP0 or `current` changed (a switch that wrote the boot
  CPU's globals, as a rip-relative `lab_switch_to` does, fails here);
- `cpu-switch.gs-base`: no CPU's GS base changed (the scheduler changes the data in the area,
  not the GS base).
"""

from __future__ import annotations

from lab.checks.base import Check, Checks

TIER = "lab-kernel"
C = Checks(TIER)


def _by_cpu(snaps) -> dict:
    return {s.index: s for s in snaps}


def _label(step, i: int) -> str:
    return f"switch {i + 1} on CPU {step.cpu}"


def _step_problems(step, i: int) -> dict[str, list[str]]:
    before, after, k = _by_cpu(step.before), _by_cpu(step.after), step.cpu
    label = _label(step, i)
    out = {"current": [], "rsp0": [], "others": [], "gs-base": []}
    if k not in before or k not in after:
        out["current"].append(f"{label}: CPU {k} was not read before and after")
        return out
    b, a = before[k], after[k]
    if a.current == b.current:
        out["current"].append(f"{label}: CPU {k}'s current stayed {a.current:#x} ({a.task or '?'})")
    reported = step.line.get("current")
    if reported is not None and int(reported, 0) != a.current:
        out["current"].append(f"{label}: the shell reported current={reported}, gdb read {a.current:#x}")
    if not a.kstack_top or a.rsp0 != a.kstack_top:
        out["rsp0"].append(f"{label}: CPU {k}'s RSP0 {a.rsp0:#x} is not the new task's ({a.task or '?'}) "
                           f"kstack_top {a.kstack_top:#x}: a ring-3 entry would land on another stack")
    for j in sorted(set(before) | set(after)):
        if j not in before or j not in after:
            out["others"].append(f"{label}: CPU {j} was read only {'after' if j in after else 'before'}")
            continue
        bj, aj = before[j], after[j]
        if aj.gs_base != bj.gs_base:
            out["gs-base"].append(f"{label}: CPU {j}'s GS base changed {bj.gs_base:#x} -> {aj.gs_base:#x}")
        if j == k:
            continue
        if aj.rsp0 != bj.rsp0:
            out["others"].append(f"{label}: CPU {j}'s RSP0 changed {bj.rsp0:#x} -> {aj.rsp0:#x}")
        if aj.current != bj.current:
            out["others"].append(f"{label}: CPU {j}'s current changed {bj.current:#x} -> {aj.current:#x}")
    return out


def run(obs) -> list[Check]:
    """Four checks over every step of `obs` (a CpuSwitchObservation, or anything with `steps`
    of SwitchStep shape: cpu, before, after, line)."""
    found = {"current": [], "rsp0": [], "others": [], "gs-base": []}
    for i, step in enumerate(obs.steps):
        for key, lines in _step_problems(step, i).items():
            found[key] += lines
    if not obs.steps:
        return [C.fail("cpu-switch.current", "CPU K switched tasks", ["no switch was observed"])]
    k = obs.steps[0].cpu
    moves = "; ".join(f"{_label(s, i)}: {_by_cpu(s.before).get(k).task if k in _by_cpu(s.before) else '?'} -> "
                      f"{_by_cpu(s.after).get(k).task if k in _by_cpu(s.after) else '?'}" for i, s in enumerate(obs.steps))
    tops = "; ".join(f"{_label(s, i)}: RSP0 {_by_cpu(s.after)[k].rsp0:#x}" for i, s in enumerate(obs.steps)
                     if k in _by_cpu(s.after))
    n = len(obs.steps[0].before)
    return [
        C.problems("cpu-switch.current", f"the switch makes CPU {k}'s per-CPU current the new task",
                   found["current"], moves),
        C.problems("cpu-switch.rsp0", f"CPU {k}'s TSS.RSP0 becomes the new task's kstack_top",
                   found["rsp0"], tops),
        C.problems("cpu-switch.others", "no other CPU's TSS.RSP0 or per-CPU current changes",
                   found["others"], f"{n - 1} other CPUs: RSP0 and current unchanged at every switch"),
        C.problems("cpu-switch.gs-base", "no CPU's GS base changes: the switch changes the data in the area",
                   found["gs-base"], f"{n} CPUs: GS base unchanged at every switch"),
    ]
