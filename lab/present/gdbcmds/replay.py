"""The lab's gdb commands on a replayed recording (`lab debug --replay RUN`): the exceptions of
the recorded fatal chain, read from QEMU's `-d int` log of the recorded run, and a move to the
delivery of any of them (QEMU replays to the instruction; gdb's reverse-continue goes back)."""

from __future__ import annotations

import os
from pathlib import Path

import gdb  # provided by gdb itself

from lab.errors import UserError
from lab.machine.replay import REPLAY_ENV, Recording, parse_info_replay
from lab.present.gdbcmds.live import LabCommand, LiveTarget, command, console, parse_int, symbols

#: lab-goto's bound on reverse-continues to an instruction that ran before with another RSP
#: (each one replays from the recording's start).
MAX_REVERSE_HOPS = 16


def recording() -> Recording:
    path = os.environ.get(REPLAY_ENV)
    if not path:
        raise UserError("not a replay: lab-chain and lab-goto work in `lab debug --replay RUN` sessions")
    return Recording.load(Path(path))


def chain(rec: Recording):
    from lab.target.qemu_log import fatal_chain, parse

    entries = fatal_chain(parse(rec.log.read_text(errors="replace")))
    if not entries:
        raise UserError(f"QEMU's log of the recording ({rec.log}) shows no exception chain")
    return entries


def icount() -> int:
    return parse_info_replay(gdb.execute("monitor info replay", to_string=True))


def _raised_by(e) -> str:
    from lab.x86.vectors import mnemonic

    return "the instruction" if e.during is None else f"delivering {mnemonic(e.during)}"


@command
class LabChain(LabCommand):
    """lab-chain: the exceptions of the recorded fatal chain (QEMU's `-d int` log of the
    recorded run): what raised each, where the CPU was (IP, SP), and what followed."""
    cmd = "lab-chain"

    def run(self, arg):
        from rich.table import Table

        from lab.x86.vectors import mnemonic

        rec = recording()
        table = Table(title=f"exception chain of {rec.probe} (recorded; lab-goto N moves to one)", title_justify="left")
        for col in ("#", "exception", "raised by", "IP", "SP", "error code", "CR2", "then"):
            table.add_column(col)
        for e in chain(rec):
            p, d = e.position, e.delivery
            ip = f"{p.cs:04x}:{p.rip:#x} {symbols().describe(p.rip)}" if p else "?"
            table.add_row(str(e.number), mnemonic(e.vector), _raised_by(e), ip,
                          f"{p.ss:04x}:{p.rsp:#x}" if p else "?",
                          f"{d.error_code:#x}" if d else "", f"{d.cr2:#x}" if d and d.cr2 is not None else "",
                          e.outcome)
        console().print(table)


def _to_end(rec: Recording) -> None:
    """Runs the replay forward to its end (the user's breakpoints held back meanwhile)."""
    held = [b for b in gdb.breakpoints() if b.enabled]
    for b in held:
        b.enabled = False
    try:
        gdb.execute(f"monitor replay_break {rec.end_icount}", to_string=True)
        gdb.execute("continue", to_string=True)
    finally:
        for b in held:
            b.enabled = True


def _at(pos) -> bool:
    regs = LiveTarget().registers()
    return regs.get("rip") == pos.rip and regs.get("rsp") == pos.rsp


def _in_handler(entry) -> bool:
    """At the first instruction of the handler of `entry`'s delivery, with the frame naming the
    logged IP: the delivery has happened. (The faulting instruction and the handler's first one
    share an instruction count, so reverse-continue to the first may stop at the second.)"""
    from lab.present.gdbcmds.frames import live_gates
    from lab.x86.frames import QWORD, qwords
    from lab.x86.vectors import pushes_error_code

    d = entry.delivery
    if not entry.handled or d is None:
        return False
    regs = LiveTarget().registers()
    gate = next((g for g in live_gates() if g.vector == d.vector), None)
    if gate is None or not gate.present or regs.get("rip") != gate.offset:
        return False
    slot = regs["rsp"] + (QWORD if pushes_error_code(d.vector) else 0)
    return qwords(LiveTarget().read_memory(slot, QWORD))[0] == entry.position.rip


def _push_note(entry) -> str:
    """Where the CPU had to push the frame of the delivery at `entry`, and whether it could."""
    from lab.present.gdbcmds.frames import live_gates
    from lab.target.cpu import parse_info_registers
    from lab.x86.frames import ERROR_FRAME, INTERRUPT_FRAME
    from lab.x86.tss import TSS
    from lab.x86.vectors import mnemonic, pushes_error_code

    d = entry.delivery
    gate = next((g for g in live_gates() if g.vector == d.vector), None)
    if gate is None or not gate.present:
        return f"the IDT has no present gate for {mnemonic(d.vector)}: the CPU could not deliver it"
    t = LiveTarget()
    if gate.ist:
        tr = parse_info_registers(t.monitor("info registers")).tr
        top, stack = TSS.read_field(t.read_memory, tr.base, f"ist{gate.ist}"), f"IST{gate.ist}"
    else:
        top, stack = d.rsp, "the interrupted stack (no IST)"
    size = (ERROR_FRAME if pushes_error_code(d.vector) else INTERRUPT_FRAME).size
    start = (top & ~0xF) - size  # SDM vol. 3A §6.14.2: RSP aligned to 16 before the push
    where = symbols().describe(start)
    try:
        t.read_memory(start, size)
    except gdb.MemoryError:
        return (f"the CPU could not push the {mnemonic(d.vector)} frame: it goes on {stack} at "
                f"[{start:#x}, {start + size:#x}){f' ({where})' if where else ''}, which is not mapped")
    return f"the {mnemonic(d.vector)} frame goes on {stack} at [{start:#x}, {start + size:#x})"


@command
class LabGoto(LabCommand):
    """lab-goto N: move the replay to the delivery of the chain's Nth exception (lab-chain
    numbers them): the instruction that raised it, with the registers QEMU logged there; for an
    exception whose handler ran, its first instruction, where lab-frame decodes the frame."""
    cmd = "lab-goto"

    def run(self, arg):
        from lab.x86.vectors import mnemonic

        rec = recording()
        entries = chain(rec)
        if not arg:
            raise UserError(f"usage: lab-goto N (1-{len(entries)}; lab-chain lists them)")
        n = parse_int(arg, "N")
        if not 1 <= n <= len(entries):
            raise UserError(f"the chain has exceptions 1-{len(entries)}, not {n}")
        entry = entries[n - 1]
        pos = entry.position
        if pos is None:
            raise UserError(f"QEMU's log gives no position for exception {n}")
        if not _at(pos) and icount() < rec.end_icount:
            _to_end(rec)  # (never past the end: the replay's log ends there)
        hops = 0
        while not (_at(pos) or _in_handler(entry)):
            if hops == MAX_REVERSE_HOPS:
                raise UserError(f"{pos.rip:#x} ran {hops} times before the end with another RSP than "
                                f"{pos.rsp:#x}; use reverse-continue with a breakpoint there")
            gdb.Breakpoint(f"*{pos.rip:#x}", type=gdb.BP_HARDWARE_BREAKPOINT, internal=True, temporary=True)
            before = icount()
            gdb.execute("reverse-continue", to_string=True)
            if icount() == before:
                raise UserError(f"the replay never ran {pos.rip:#x} with RSP {pos.rsp:#x}")
            hops += 1
        if _in_handler(entry):
            print(f"lab-goto: #{n} {mnemonic(entry.vector)}, raised by {_raised_by(entry)} at {pos.rip:#x} "
                  f"({symbols().describe(pos.rip)}), RSP {pos.rsp:#x}; delivered: now at the handler's entry "
                  f"{symbols().describe(LiveTarget().registers()['rip'])}, instruction {icount()} of the replay; "
                  f"lab-frame decodes what the CPU pushed")
            print(f"lab-goto: QEMU logged: {entry.delivery.line}")
            return
        regs = LiveTarget().registers()
        print(f"lab-goto: #{n} {mnemonic(entry.vector)}, raised by {_raised_by(entry)}; the CPU is at "
              f"{regs['cs']:04x}:{regs['rip']:#x} ({symbols().describe(regs['rip'])}), RSP {regs['ss']:04x}:"
              f"{regs['rsp']:#x}, instruction {icount()} of the replay")
        print(f"lab-goto: QEMU logged there: {entry.delivery.line if entry.delivery else pos.line}")
        if entry.handled:
            gdb.execute("stepi", to_string=True)  # the delivery: the handler's first instruction
            print(f"lab-goto: delivered; now at the handler's entry {symbols().describe(LiveTarget().registers()['rip'])}; "
                  f"lab-frame decodes what the CPU pushed")
        elif entry.delivery is None:
            print(f"lab-goto: no delivery followed: {entry.outcome}")
        else:
            print(f"lab-goto: {_push_note(entry)}; then: {entry.outcome}")
