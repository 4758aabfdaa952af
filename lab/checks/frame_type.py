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
C_INJECT = Checks("inject")
RULES = {  # literal: docs/gen.py reads it with ast
    "fire.frame-type": "FAIL: a member of the type the handler reads its frame through (DWARF) that names a "
                       "frame word (RIP, CS, RFLAGS, RSP, SS; the error code where the vector pushes one) lies "
                       "elsewhere than the CPU pushed that word: every such exception is misread. SKIP: no "
                       "DWARF, no frame type reached, or the guest observer",
    "inject.frame-type": "FAIL: as fire.frame-type, at an agnostic fire in any kernel with DWARF. SKIP: no "
                         "DWARF (a bzImage, a System.map), no frame type within the steps taken",
}
WORD_LABEL = {"rip": "RIP", "cs": "CS", "rflags": "RFLAGS", "rsp": "RSP", "ss": "SS", "error_code": "the error code"}


def _where(address: int, value: int | None, ft: dict, registers: dict, named: str) -> str:
    """What lies at `address`, in words a kernel developer recognises: a register whose value
    it holds (`registers`, unique and not small), else its place relative to the frame."""
    regs = [r for r, v in registers.items() if v == value] if value is not None and value > 0xFFFF else []
    if len(regs) == 1:
        return f"the interrupted {regs[0].upper()} ({named}), saved by the stub"
    if address < ft["entry_rsp"]:
        return f"what the stub pushed, {ft['entry_rsp'] - address} bytes below the CPU's frame"
    return "a slot of the CPU's frame" if address < ft["base"] + INTERRUPT_FRAME.size else "beyond the CPU's frame"


def judge(ft: dict, stack: list[int], error_code: bool, registers: dict, named: str) -> tuple[bool, list[str]]:
    """(every frame-word member at its slot, evidence); `stack`: the qwords from the entry RSP;
    `registers`: the interrupted registers' values, for naming what a wrong member reads."""
    layout = ERROR_FRAME if error_code else INTERRUPT_FRAME
    r = ft["reader"]
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
        where = _where(m["address"], m["value"], ft, registers, named)
        if not lines:
            lines.append(f"{r['type']}.{m['path']} (offset {m['offset']}) reads {got} at {m['address']:#x}: "
                         f"{where}; the CPU pushed {label}" + (f" {pushed:#x}" if pushed is not None else "")
                         + f" at {want:#x} ({want - m['address']:+d} bytes)")
        else:
            lines.append(f"{m['path']} for {label}: {where.split(' (')[0].split(',')[0]}")
    if wrong:
        return False, [lines[0] + ("" if len(lines) == 1 else f"; {len(lines) - 1} more member(s) as far off: "
                                   + "; ".join(lines[1:])) for lines in wrong.values()] + evidence[:1]
    return True, evidence


def check(obs, error_code: bool) -> Check:
    """A fire's (lab/checks/frame.py); `error_code`: whether the CPU pushed one for it."""
    title = "the handler's frame type (DWARF) reads each frame word where the CPU pushed it"
    ft = obs.frame_type
    if ft is None and getattr(obs, "observer", "gdb") != "gdb":
        return C.skip("fire.frame-type", title, "observed with --observer gdb: the stub's argument is read at its call")
    if ft is None:
        return C.skip("fire.frame-type", title, "the gate's handler was not entered")
    if "skip" in ft:
        return C.skip("fire.frame-type", title, ft["skip"])
    ok, evidence = judge(ft, (obs.entry or {}).get("stack") or [], error_code, obs.sentinels or {},
                         "this fire's sentinel")
    return C.result("fire.frame-type", title, ok, evidence)


def check_injected(obs, error_code: bool) -> Check:
    """An agnostic fire's (lab/checks/inject.py): the registers are the kernel's own at the stop."""
    title = "the handler's frame type (DWARF) reads each frame word where the CPU pushed it"
    ft = obs.frame_type
    if ft is None:
        return C_INJECT.skip("inject.frame-type", title, "the gate's handler was not entered")
    if "skip" in ft:
        return C_INJECT.skip("inject.frame-type", title, ft["skip"])
    ok, evidence = judge(ft, obs.frame, error_code, obs.registers or {}, "its value when the injected instruction ran")
    return C_INJECT.result("inject.frame-type", title, ok, evidence)
