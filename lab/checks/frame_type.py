"""`fire.frame-type`: the type through which the handler reads its frame (DWARF) puts each
member naming a frame word at the slot where the CPU pushed that word (SDM vol. 3A §6.14.2,
Figure 6-9: from the handler's entry RSP, the error code where the vector has one, then RIP,
CS, RFLAGS, RSP, SS). The tutorials' classic bug, a struct read from the stub's RSP after its
register pushes, reads a saved register as RIP: FAIL, naming the member and, by the fire's
sentinels, the register it reads. The observation: lab/experiments/frame_type.py.
"""

from __future__ import annotations

from lab.checks.base import Check, Checks
from lab.x86.frames import ERROR_FRAME, INTERRUPT_FRAME, QWORD

C = Checks("frame")
RULES = {"fire.frame-type": "FAIL: a member of the type the handler reads its frame through (DWARF) that names a "
                            "frame word (RIP, CS, RFLAGS, RSP, SS; the error code where the vector pushes one) "
                            "lies elsewhere than the CPU pushed that word: every such exception is misread. "
                            "SKIP: no DWARF, no frame type reached, or the guest observer"}
WORD_LABEL = {"rip": "RIP", "cs": "CS", "rflags": "RFLAGS", "rsp": "RSP", "ss": "SS", "error_code": "the error code"}


def _where(address: int, value: int | None, ft: dict, sentinels: dict) -> str:
    """What lies at `address`, in words a kernel developer recognises."""
    reg = next((r for r, v in sentinels.items() if v == value), None) if value is not None else None
    if reg:
        return f"the interrupted {reg.upper()} (this fire's sentinel), saved by the stub"
    if address < ft["entry_rsp"]:
        return f"what the stub pushed, {ft['entry_rsp'] - address} bytes below the CPU's frame"
    return "a slot of the CPU's frame" if address < ft["base"] + INTERRUPT_FRAME.size else "beyond the CPU's frame"


def check(obs, error_code: bool) -> Check:
    """`error_code`: whether the CPU pushed one for this fire (lab/checks/frame.py has_error_code)."""
    title = "the handler's frame type (DWARF) reads each frame word where the CPU pushed it"
    ft = obs.frame_type
    if ft is None and getattr(obs, "observer", "gdb") != "gdb":
        return C.skip("fire.frame-type", title, "observed with --observer gdb: the stub's argument is read at its call")
    if ft is None:
        return C.skip("fire.frame-type", title, "the gate's handler was not entered")
    if "skip" in ft:
        return C.skip("fire.frame-type", title, ft["skip"])
    layout = ERROR_FRAME if error_code else INTERRUPT_FRAME
    r, stack = ft["reader"], (obs.entry or {}).get("stack") or []
    how = ("the handler's own parameter (interrupt ABI)" if r["interrupt_abi"] else
           f"reached {ft['steps']} instructions after the handler's entry, {r['param']} = {ft['pointer']:#x}")
    evidence = [f"{r['type']} via {r['function']}({r['param']}): {how}"]
    wrong: dict[int, list[str]] = {}  # by how far off: one shifted type is one finding
    for m in ft["members"]:
        if m["word"] == "error_code" and not error_code:
            evidence.append(f"{m['path']}: the CPU pushed no error code for this vector (not judged)")
            continue
        want = ft["entry_rsp"] + layout.offset(m["word"])
        slot = (want - ft["entry_rsp"]) // QWORD
        pushed = stack[slot] if slot < len(stack) else None
        label = WORD_LABEL[m["word"]]
        got = "unreadable" if m["value"] is None else f"{m['value']:#x}"
        if m["address"] == want:
            evidence.append(f"{m['path']} (offset {m['offset']}) at {want:#x} = {got}: {label}")
            continue
        lines = wrong.setdefault(want - m["address"], [])
        where = _where(m["address"], m["value"], ft, obs.sentinels or {})
        if not lines:
            lines.append(f"{r['type']}.{m['path']} (offset {m['offset']}) reads {got} at {m['address']:#x}: "
                         f"{where}; the CPU pushed {label}" + (f" {pushed:#x}" if pushed is not None else "")
                         + f" at {want:#x} ({want - m['address']:+d} bytes)")
        else:
            lines.append(f"{m['path']} for {label}: {where.split(' (')[0].split(',')[0]}")
    if wrong:
        return C.fail("fire.frame-type", title, [
            lines[0] + ("" if len(lines) == 1 else f"; {len(lines) - 1} more member(s) as far off: "
                        + "; ".join(lines[1:])) for lines in wrong.values()] + evidence[:1])
    return C.result("fire.frame-type", title, True, evidence)
