"""The lab's gdb commands around a handler: break at the entry the live IDT names, decode the
frame the CPU pushed, walk the stack, fire an exception, type into the kernel's shell, and
the context view printed at every stop at a handler's entry."""

from __future__ import annotations

import socket
import threading

import gdb  # provided by gdb itself

from lab.errors import UserError
from lab.present.gdbcmds.live import (LabCommand, LiveTarget, command, console, one_line, parse_vector,
                                      replaying, shell_socket, symbols)

#: How long lab-shell waits for the kernel's reply (the relay's bound, lab/machine/relay.py).
SHELL_REPLY_TIMEOUT = 10.0


def live_gates():
    from lab.target.cpu import parse_info_registers
    from lab.x86.idt import decode_idt

    t = LiveTarget()
    idtr = parse_info_registers(t.monitor("info registers")).idtr
    return decode_idt(t.read_memory(idtr.base, idtr.size))


@command
class LabFrame(LabCommand):
    """lab-frame: decode the interrupt or exception frame at the current stop. The stop must be
    the first instruction of a handler the IDT names (`lab-break VECTOR` stops there); past a
    handler's prologue it says how to stop at the entry."""
    cmd = "lab-frame"

    def run(self, arg):
        from lab.experiments.frame import decode_at_stop
        from lab.present.render import frame_table

        t = LiveTarget()
        console().print(frame_table(decode_at_stop(t, t.monitor, symbols())))


def stack_table(n: int):
    from rich.table import Table

    from lab.x86.frames import QWORD, qwords

    t, sym = LiveTarget(), symbols()
    regs = t.registers()
    table = Table(title=f"RBP chain from RIP {regs['rip']:#x} ({sym.describe(regs['rip'])})", title_justify="left")
    for col in ("frame", "address", "slot", "value", "symbol"):
        table.add_column(col)
    rbp = regs["rbp"]
    for i in range(n):
        if rbp == 0:
            break
        try:
            raw = t.read_memory(rbp, 2 * QWORD)  # saved RBP, return address
        except gdb.MemoryError:
            table.add_row(str(i), f"{rbp:#x}", "(unreadable)", "", "")
            break
        saved, ret = qwords(raw)
        table.add_row(str(i), f"{rbp:#x}", "saved rbp", f"{saved:#x}", "")
        # A call may be a function's last instruction (a call to a noreturn function):
        # name the return address by the byte before it, as debuggers do.
        caller = sym.resolve(ret - 1)
        where = f"{caller.symbol.display}+{caller.offset + 1:#x}" if caller else ""
        table.add_row("", f"{rbp + QWORD:#x}", "return address", f"{ret:#x}", where)
        if saved <= rbp:
            break  # the chain must grow toward older (higher) frames
        rbp = saved
    return table


@command
class LabStack(LabCommand):
    """lab-stack [N]: walk the RBP chain (frame pointers), N frames (default 8), each slot
    labelled and every return address resolved to a demangled symbol."""
    cmd = "lab-stack"

    def run(self, arg):
        from lab.present.gdbargs import parse_count

        console().print(stack_table(parse_count(arg.strip(), "the number of frames") if arg.strip() else 8))


def _interrupt_if_running() -> None:
    thread = gdb.selected_thread()
    if thread is not None and thread.is_running():
        gdb.execute("interrupt")


def shell_request(kind: str, line: str) -> str:
    """Sends `kind line` to `lab debug`'s shell relay: `type` only types the line; `ask` runs
    the guest until the relay answers with the shell's reply (the relay waits for the prompt),
    then stops it again, and returns the reply."""
    if replaying():
        raise UserError("a replay's kernel input is the recording's: nothing can be typed into it")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(shell_socket())
        s.sendall(f"{kind} {line}\n".encode())
        if kind != "ask":
            return ""
        answer: list[bytes] = []
        s.settimeout(SHELL_REPLY_TIMEOUT + 5)  # the relay's own bound comes first

        cancelled = threading.Event()  # the guest stopped elsewhere: no interrupt for this one

        def read_answer() -> None:
            try:
                with s.makefile("rb") as f:
                    answer.append(f.read())
            except OSError:
                pass
            if not cancelled.is_set():  # gdb runs it in its own thread: stops the guest
                gdb.post_event(lambda: None if cancelled.is_set() else _interrupt_if_running())

        reader = threading.Thread(target=read_answer, daemon=True)
        stops: list = []
        gdb.events.stop.connect(stops.append)
        try:
            reader.start()
            gdb.execute("continue")  # not to_string: the stop's printing (lab-context) is the user's
        finally:
            gdb.events.stop.disconnect(stops.append)
        if any(isinstance(e, gdb.BreakpointEvent) for e in stops):
            # Stopped at a breakpoint before the shell answered: hang up and say where.
            cancelled.set()
            s.shutdown(socket.SHUT_RDWR)
            reader.join(SHELL_REPLY_TIMEOUT)
            raise UserError(f"the guest stopped at a breakpoint before the shell answered {line!r} "
                            f"(at {symbols().describe(LiveTarget().registers()['rip']) or 'no symbol'})")
        reader.join(SHELL_REPLY_TIMEOUT + 5)
        cancelled.set()  # answered, or the guest stopped for another reason: nothing more to stop
    reply = answer[0].decode(errors="replace") if answer else ""
    status, _, text = reply.partition("\n")
    if status != "ok":
        raise UserError(status or "the shell relay did not answer")
    return text


@command
class LabShell(LabCommand):
    """lab-shell LINE: type LINE into the kernel's shell, run the guest until the shell's prompt
    is back, stop it again and print the reply (`lab-shell info`, `lab-shell help`)."""
    cmd = "lab-shell"

    def run(self, arg):
        if not arg:
            raise UserError("usage: lab-shell LINE (e.g. lab-shell info)")
        print(shell_request("ask", arg), end="")


@command
class LabBreak(LabCommand):
    """lab-break VECTOR|NAME: a hardware breakpoint on the first instruction of the handler the
    live IDT names for VECTOR (0-255) or NAME (#PF, pf, GP, ...), where lab-frame can decode the
    frame. (gdb's `hbreak isr_pf` stops after the prologue; this does not.)"""
    cmd = "lab-break"

    def run(self, arg):
        from lab.x86.vectors import mnemonic

        if not arg:
            raise UserError("usage: lab-break VECTOR|NAME (e.g. lab-break 14, lab-break #GP)")
        vector = parse_vector(arg)
        gate = next((g for g in live_gates() if g.vector == vector), None)
        if gate is None:
            raise UserError(f"the IDT's limit does not reach vector {vector}")
        if not gate.present:
            raise UserError(f"the IDT gate for vector {vector} ({mnemonic(vector)}) is not present: no handler to break at")
        bp = gdb.Breakpoint(f"*{gate.offset:#x}", type=gdb.BP_HARDWARE_BREAKPOINT)
        print(f"lab-break: hardware breakpoint {bp.number} at {gate.offset:#x} "
              f"({symbols().describe(gate.offset) or 'no symbol'}), the entry of the {mnemonic(vector)} "
              f"handler (vector {vector}) in the live IDT")


@command
class LabFire(LabCommand):
    """lab-fire SCENARIO [STYLE]: fire a catalogued exception and stop at its handler's first
    instruction (then: lab-frame, lab-stack, continue). Needs `lab debug`, which relays the
    kernel's shell."""
    cmd = "lab-fire"

    def run(self, arg):
        from lab.scenarios.exceptions import check_style, get

        words = arg.split()
        if not words:
            raise UserError("usage: lab-fire SCENARIO [x86-interrupt|stub]")
        scenario = get(words[0])
        style = check_style(words[1]) if len(words) > 1 else "x86-interrupt"
        handler = handler_for(scenario.vector, style)
        shell_request("type", f"fire {scenario.name} {style}")
        gdb.Breakpoint(f"*{handler:#x}", type=gdb.BP_HARDWARE_BREAKPOINT, internal=True, temporary=True)
        gdb.execute("continue")
        print(f"lab-fire: stopped at the {scenario.name} handler ({symbols().describe(handler)}); "
              f"try lab-frame, lab-stack, continue")


def handler_for(vector: int, style: str) -> int:
    """The handler a fire of `style` will enter for `vector`: the kernel sets the gate's style
    as part of `fire`, so the IDT read beforehand may still name the other one."""
    from lab.scenarios.exceptions import SOFT_INT_VECTOR
    from lab.x86.vectors import mnemonic

    name = f"isr_stub_{vector}" if style == "stub" else (
        "isr_soft_int" if vector == SOFT_INT_VECTOR else f"isr_{mnemonic(vector).lstrip('#').lower()}")
    s = symbols().lookup(name)
    if s is None:
        raise UserError(f"the kernel has no {name} handler")
    return s.address


def print_context() -> bool:
    """The context view when the CPU is at a handler's entry: its vector, the decoded frame and
    the RBP chain. False (nothing printed) elsewhere."""
    from lab.experiments.frame import decode_at_stop
    from lab.present.render import frame_table

    pc = LiveTarget().registers()["rip"]
    if not any(g.present and g.offset == pc for g in live_gates()):
        return False
    t = LiveTarget()
    frame = decode_at_stop(t, t.monitor, symbols())
    out = console()
    out.rule(f"lab-context: {frame['mnemonic']} (vector {frame['vectors'][0]}) at {frame['symbol'] or hex(pc)}")
    out.print(frame_table(frame))
    out.print(stack_table(4))
    return True


def _on_stop(event) -> None:
    try:
        print_context()
    except Exception as exc:  # an event handler's exception would print a traceback
        print(f"lab-context: {one_line(exc)}")


@command
class LabContext(LabCommand):
    """lab-context on|off: at every stop at a handler's entry print the vector, the decoded
    frame and the labelled stack, once (a context view; off by default)."""
    cmd = "lab-context"
    enabled = False

    def run(self, arg):
        if arg not in ("on", "off", ""):
            raise UserError(f"usage: lab-context on|off, not {arg!r}")
        if arg == "on" and not LabContext.enabled:
            gdb.events.stop.connect(_on_stop)
        elif arg == "off" and LabContext.enabled:
            gdb.events.stop.disconnect(_on_stop)
        if arg:
            LabContext.enabled = arg == "on"
        print(f"lab-context: {'on' if LabContext.enabled else 'off'}")
