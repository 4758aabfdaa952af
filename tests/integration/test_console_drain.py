"""The guest never stalls on its console: while the lab waits on gdb (at `lab_ready`, or at an
`--at` stop) it still reads the serial socket, which QEMU fills a byte at a time. Without the
drain a guest that printed more than about 270 bytes before the stop spun on its UART and the
stop never came."""

from __future__ import annotations

import json

import pytest

from conftest import assemble_multiboot
from labtest import lab_cli

PRINTED = 16 * 1024  # bytes the talkative guest prints before its stop


@pytest.fixture(scope="module")
def talkative_kernel(tmp_path_factory):
    """A Multiboot guest that prints PRINTED bytes on COM1 (waiting for the transmitter, as a
    real driver does), then reaches `done`, where the lab stops it."""
    return assemble_multiboot(tmp_path_factory.mktemp("talk"), "talk", f"""cli
        mov ${PRINTED}, %ecx
1:      mov $0x3fd, %dx          # COM1 line status: wait for THR empty (bit 5)
2:      inb %dx, %al
        test $0x20, %al
        jz 2b
        mov $0x3f8, %dx
        mov $'x', %al
        outb %al, %dx
        loop 1b
        .globl done
done:   hlt
        jmp done
""")


def test_a_guest_that_prints_kilobytes_before_the_stop_reaches_it(talkative_kernel):
    # The stop is reached; the lab then refuses the 32-bit CPU state in one line. Without the
    # drain this was a timeout (exit 3) with the guest spinning on its UART.
    r = lab_cli("inspect", "--kernel", str(talkative_kernel), "--at", "done", "--ready-timeout", "20")
    assert r.returncode == 2, r.stderr
    assert "stopped at done" in r.stderr and "not in long mode" in r.stderr, r.stderr


@pytest.mark.parametrize("fresh", [True, False], ids=["booted", "restored"])
def test_a_long_command_line_does_not_stall_the_lab_kernel(kernel, fresh):
    append = "lab.padding=" + "p" * 400  # the kernel prints its command line at boot
    r = lab_cli("inspect", "--kernel", str(kernel), "--append", append, "--json",
                *(["--fresh"] if fresh else []))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["FAIL"] == 0
