"""QEMU `-d int` log parsing, table-driven over lines QEMU 7.2 printed in this lab."""

import pytest

from lab.target.qemu_log import CheckException, LogEvent, parse

EVENTS = [
    ("     1: v=0e e=0003 i=0 cpl=0 IP=0008:00000000001023fb pc=00000000001023fb SP=0010:000000000012ec18 CR2=0000000040001000",
     dict(vector=0x0E, error_code=3, software=False, cpl=0, cs=8, rip=0x1023FB, ss=0x10, rsp=0x12EC18, cr2=0x40001000)),
    ("1: v=03 e=0000 i=1 cpl=0 IP=0008:0000000000102233 pc=0000000000102233 SP=0010:000000000012ec18 env->regs[R_EAX]=5e0000006f74cf00",
     dict(vector=3, error_code=0, software=True, cpl=0, cs=8, rip=0x102233, ss=0x10, rsp=0x12EC18, cr2=None)),
    ("    22: v=24 e=0000 i=0 cpl=0 IP=0008:00000000001034b9 pc=00000000001034b9 SP=0010:000000000012edb0 env->regs[R_EAX]=0000000000000001",
     dict(vector=0x24, error_code=0, software=False, cpl=0, cs=8, rip=0x1034B9, ss=0x10, rsp=0x12EDB0, cr2=None)),
    ("     3: v=0b e=0412 i=0 cpl=3 IP=0023:0000000000401000 pc=0000000000401000 SP=001b:00007ffffffff000",
     dict(vector=0x0B, error_code=0x412, software=False, cpl=3, cs=0x23, rip=0x401000, ss=0x1B, rsp=0x7FFFFFFFF000, cr2=None)),
]


@pytest.mark.parametrize("line, fields", EVENTS)
def test_event_lines(line, fields):
    [event] = parse(line)
    assert isinstance(event, LogEvent)
    assert {k: getattr(event, k) for k in fields} == fields


@pytest.mark.parametrize("line, old, new", [
    ("check_exception old: 0xffffffff new 0xe", None, 0x0E),
    ("check_exception old: 0xe new 0xd", 0x0E, 0x0D),
    ("check_exception old: 0x8 new 0xd", 0x08, 0x0D),
])
def test_check_exception_lines(line, old, new):
    [event] = parse(line)
    assert isinstance(event, CheckException) and (event.old, event.new) == (old, new)


@pytest.mark.parametrize("line", [
    "RAX=0000000000000000 RBX=0000000000120fc8 RCX=00000000000003f8 RDX=00000000000003f8",
    "CPU Reset (CPU 0)",
    "v=0e e=0003",  # truncated
    "",
])
def test_other_lines_are_ignored(line):
    assert parse(line) == []


from pathlib import Path

from lab.target.qemu_log import TripleFault, chain, state_at_last_event
from lab.x86.vectors import mnemonic

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("recording, expected", [
    ("qemu72_int_log_oh.txt", ["#PF", "#PF", "#DF"]),
    ("qemu72_int_log_df-no-ist.txt", ["#PF", "#PF", "#DF", "#PF", "triple fault"]),
    ("qemu72_int_log_df-not-present.txt", ["#GP", "#NP", "#DF", "#NP", "triple fault"]),
])
def test_chain_from_recorded_logs(recording, expected):
    assert chain(parse((DATA / recording).read_text()), mnemonic) == expected


@pytest.mark.parametrize("lines, expected", [
    (["check_exception old: 0xffffffff new 0xe"], ["#PF"]),
    (["check_exception old: 0xffffffff new 0xd", "check_exception old: 0xd new 0xe"], ["#GP", "#PF"]),
    (["check_exception old: 0xffffffff new 0xe", "check_exception old: 0x8 new 0xe", "Triple fault"],
     ["#PF", "#DF", "#PF", "triple fault"]),
    (["Triple fault"], ["triple fault"]),
    ([], []),
])
def test_chain_rules(lines, expected):
    assert chain(parse("\n".join(lines)), mnemonic) == expected


def test_triple_fault_line():
    assert parse("Triple fault") == [TripleFault("Triple fault")]


def test_state_at_last_event_takes_the_last_event_and_its_dump():
    text = "\n".join([
        "     3: v=0d e=0000 i=0 cpl=0 IP=0008:0000000000105852 pc=0000000000105852 SP=0010:0000000000132d30",
        "RAX=0000000000000001 RBX=0000000000000002 RCX=0000000000000003 RDX=0000000000000004",
        "check_exception old: 0xd new 0xb",
        "     4: v=08 e=0000 i=0 cpl=0 IP=0008:0000000000105852 pc=0000000000105852 SP=0010:0000000000132d30",
        "RAX=0000000000000005 RBX=0000000000000006 RCX=0000000000000007 RDX=0000000000000008",
        "RIP=0000000000105852 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0",
        "check_exception old: 0x8 new 0xb",
        "Triple fault",
    ])
    state = state_at_last_event(text)
    assert state[0].startswith("4: v=08") and state[-1].startswith("RIP=0000000000105852") and len(state) == 3
