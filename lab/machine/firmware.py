"""What the firmware asks on the serial console before it starts the kernel, answered: today
the UEFI shell's countdown before it runs startup.nsh ("Press ESC in 5 seconds to skip
startup.nsh or any other key to continue", lab/host/esp.py). A handshake, not a wait: the lab
lets the paused guest run, waits (bounded) for the question, sends the answer and stops the CPU
again, so the session then starts from a paused CPU as on every other boot path."""

from __future__ import annotations


def answer_firmware(gdb, serial, prompt: tuple[bytes, str] | None, timeout: float) -> None:
    """With `prompt` = (the question as a regex, the line to answer it with), runs the guest
    until the question appears on `serial`, answers and stops it; nothing when it is None."""
    if prompt is None:
        return
    question, reply = prompt
    gdb.cont()
    serial.expect(question, timeout, f"the firmware's prompt {question.decode(errors='replace')!r}")
    serial.send_line(reply)
    gdb.interrupt()
