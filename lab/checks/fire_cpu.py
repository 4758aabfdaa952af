"""Checks on a fire that ran on one CPU of many (`lab fire --cpu K`, the kernel's `on K fire`).

SDM vol. 3A §6.14.5: a gate naming an IST slot makes the CPU load RSP from that slot of *its*
TSS, the one its own TR selects; so CPU K's handler runs on CPU K's own IST stack, and a
handler on another CPU's stack is a TSS (or TR) set up wrong. §11.6.1: an NMI IPI with a
destination field (shorthand 00) reaches that one CPU: no other CPU takes it.

Each check SKIPs on what the observation does not hold (a fire on the boot CPU, a gate with no
IST slot, an NMI the host injected into every CPU).
"""

from __future__ import annotations

from lab.checks.base import Check, Checks
from lab.x86.frames import frame_bytes
from lab.x86.vectors import pushes_error_code

C = Checks("frame")
NO_ENTRY = "the handler for the expected vector was not entered"


def check_own_ist(obs, s) -> Check:
    """The handler-entry RSP is CPU K's own IST top (its TSS's slot the gate names) minus the
    frame, and no other CPU's TSS names the same top (a stack two CPUs share)."""
    n = obs.gate["ist"]
    title = f"the handler runs on CPU {obs.cpu}'s own IST{n} stack (its TSS, from its TR)"
    if not n:
        return C.skip("fire.own-ist", "the handler runs on the CPU's own IST stack", "the gate names no IST slot")
    if obs.ist_tops is None:
        return C.skip("fire.own-ist", title, "every CPU's IST tops are read for a fire on an AP only")
    if obs.entry is None:
        return C.skip("fire.own-ist", title, NO_ENTRY)
    size = frame_bytes(pushes_error_code(obs.vector) and not s.software)
    base = obs.entry["rsp"] + size
    own = obs.ist_tops[obs.cpu]
    ev = [f"entry RSP {obs.entry['rsp']:#x} + {size} frame bytes = {base:#x}",
          f"CPU {obs.cpu}'s IST{n} top {own:#x}" if own is not None else f"CPU {obs.cpu} has no TSS (TR 0)"]
    others = {j: top for j, top in enumerate(obs.ist_tops) if j != obs.cpu and top is not None}
    landed = [j for j, top in others.items() if top == base]
    shared = [j for j, top in others.items() if top == own]
    ev += [f"= CPU {j}'s IST{n} top: the handler ran on CPU {j}'s stack" for j in landed if j not in shared]
    ev += [f"CPU {j}'s TSS names the same IST{n} top: the two CPUs share the stack" for j in shared]
    return C.result("fire.own-ist", title, own is not None and base == own and not shared, ev)


def check_nmi_target_only(obs, s) -> Check:
    """An NMI IPI to CPU K: the other CPUs' NMI counts (the kernel's `cpus`) did not move, and
    no other CPU stopped at the handler's breakpoints (gdb) or made a record of this fire (the
    in-guest observer): this covers the boot CPU, which has no NMI count (an NMI there that no
    harness claims is fatal)."""
    title = f"the NMI reached CPU {obs.cpu} alone"
    if obs.nmis_before is None or obs.nmis_after is None:
        why = ("the host injected the NMI into every CPU (QMP inject-nmi)" if obs.nmi_source == "inject-nmi"
               else "each CPU's NMIs are counted for an NMI IPI to an AP only")
        return C.skip("fire.nmi-target-only", title, why)
    moved = [j for j, (a, b) in enumerate(zip(obs.nmis_before, obs.nmis_after))
             if j != obs.cpu and a != b]
    if len(obs.nmis_before) != len(obs.nmis_after):
        moved.append(-1)
    ev = [f"NMIs per CPU before {obs.nmis_before}, after {obs.nmis_after}"]
    ev += [f"CPU {j} took {obs.nmis_after[j] - obs.nmis_before[j]} NMI(s)" for j in moved if j >= 0]
    ev += ["`cpus` listed a different number of CPUs after the fire"] if -1 in moved else []
    ev += [f"CPU {e['cpu']} {e['what']}" for e in obs.elsewhere]
    return C.result("fire.nmi-target-only", title, not moved and not obs.elsewhere, ev)


CHECKS = (check_own_ist, check_nmi_target_only)
