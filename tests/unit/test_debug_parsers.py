"""The parsers behind `lab debug`: QEMU's -d int lines (with the register some vectors add),
the fatal chain lab-chain lists, the gdb commands' arguments, HMP `info replay`, the shell
relay's reply, and a recording's description. Table-driven, no QEMU."""

from __future__ import annotations

import json

import pytest

from lab.errors import LabError, UserError
from lab.machine.relay import reply_of
from lab.machine.replay import META, RRFILE, RRSNAPSHOT_IMAGE, KERNEL_COPY, Recording, parse_info_replay
from lab.present.gdbargs import MAX_FRAMES, parse_count, parse_int, parse_range, parse_vector
from lab.target.qemu_log import fatal_chain, parse

# QEMU 7.2's log of `lab probe df-no-ist --record`, as printed here (boot lines dropped).
DF_NO_IST = """\
check_exception old: 0xffffffff new 0xe
     1: v=0e e=0002 i=0 cpl=0 IP=0008:0000000000106ccd pc=0000000000106ccd SP=0010:0000000000142fd0 CR2=0000000000142fc8
RAX=00000000001430f8 RBX=0000000000000000
check_exception old: 0xe new 0xe
     2: v=08 e=0000 i=0 cpl=0 IP=0008:0000000000106ccd pc=0000000000106ccd SP=0010:0000000000142fd0 env->regs[R_EAX]=00000000001430f8
check_exception old: 0x8 new 0xe
Triple fault
"""
# A fault whose handler ran, after an earlier one that was handled too (only the last counts).
HANDLED = """\
check_exception old: 0xffffffff new 0xd
     4: v=0d e=0000 i=0 cpl=0 IP=0008:0000000000101000 pc=0000000000101000 SP=0010:0000000000150000
check_exception old: 0xffffffff new 0xe
     5: v=0e e=0002 i=0 cpl=0 IP=0008:0000000000102000 pc=0000000000102000 SP=0010:0000000000151000 CR2=0000000040001000
     6: v=20 e=0000 i=0 cpl=0 IP=0008:0000000000103000 pc=0000000000103000 SP=0010:0000000000152000
"""
# idt-limit0: int3 with an IDT limit of 0, each delivery a #GP.
IDT_LIMIT0 = """\
check_exception old: 0xffffffff new 0xd
     7: v=0d e=001a i=0 cpl=0 IP=0008:0000000000104000 pc=0000000000104000 SP=0010:0000000000153000
check_exception old: 0xd new 0xd
     8: v=08 e=0000 i=0 cpl=0 IP=0008:0000000000104000 pc=0000000000104000 SP=0010:0000000000153000 env->regs[R_EAX]=0000000000000000
check_exception old: 0x8 new 0xd
Triple fault
"""

CHAINS = [
    (DF_NO_IST, [(1, 0x0E, None, 0x0E, "its delivery raised #2"),
                 (2, 0x0E, 0x0E, 0x08, "combined with #1 into #DF; the #DF's delivery raised #3"),
                 (3, 0x0E, 0x08, None, "triple fault: the CPU shut down")]),
    (HANDLED, [(1, 0x0E, None, 0x0E, "delivered")]),
    (IDT_LIMIT0, [(1, 0x0D, None, 0x0D, "its delivery raised #2"),
                  (2, 0x0D, 0x0D, 0x08, "combined with #1 into #DF; the #DF's delivery raised #3"),
                  (3, 0x0D, 0x08, None, "triple fault: the CPU shut down")]),
    ("", []),
    ("     9: v=20 e=0000 i=0 cpl=0 IP=0008:0000000000103000 pc=0000000000103000 SP=0010:0000000000152000\n", []),
]


# The double-fault probe: the #PF's delivery raised a #PF, combined into a #DF delivered on IST1.
DOUBLE_FAULT = """\
check_exception old: 0xffffffff new 0xe
     1: v=0e e=0002 i=0 cpl=0 IP=0008:0000000000106cb4 pc=0000000000106cb4 SP=0010:0000000000143000 CR2=0000000000142ff8
check_exception old: 0xe new 0xe
     2: v=08 e=0000 i=0 cpl=0 IP=0008:0000000000106cb4 pc=0000000000106cb4 SP=0010:0000000000143000 env->regs[R_EAX]=0000000000143018
"""
CHAINS.append((DOUBLE_FAULT, [(1, 0x0E, None, 0x0E, "its delivery raised #2"),
                              (2, 0x0E, 0x0E, 0x08, "combined with #1 into #DF; delivered")]))


@pytest.mark.parametrize("log, expected", CHAINS)
def test_fatal_chain(log, expected):
    got = [(e.number, e.vector, e.during, e.delivery.vector if e.delivery else None, e.outcome)
           for e in fatal_chain(parse(log))]
    assert got == expected


@pytest.mark.parametrize("log, handled", [(DF_NO_IST, [False, False, False]), (HANDLED, [True]),
                                          (DOUBLE_FAULT, [False, True]), (IDT_LIMIT0, [False, False, False])])
def test_fatal_chain_handled(log, handled):
    assert [e.handled for e in fatal_chain(parse(log))] == handled


def test_fatal_chain_positions_are_the_raising_instruction():
    entries = fatal_chain(parse(DF_NO_IST))
    assert {(e.position.rip, e.position.rsp) for e in entries} == {(0x106CCD, 0x142FD0)}
    assert entries[0].delivery.cr2 == 0x142FC8 and entries[1].delivery.rax == 0x1430F8
    assert entries[2].delivery is None and entries[2].position is entries[1].position


@pytest.mark.parametrize("line, rax", [
    ("2: v=08 e=0000 i=0 cpl=0 IP=0008:0000000000106ccd pc=0000000000106ccd SP=0010:0000000000142fd0 env->regs[R_EAX]=00000000001430f8", 0x1430F8),
    ("1: v=0e e=0002 i=0 cpl=0 IP=0008:0000000000106ccd pc=0000000000106ccd SP=0010:0000000000142fd0 CR2=0000000000142fc8", None),
])
def test_event_register(line, rax):
    [event] = parse(line)
    assert event.rax == rax


@pytest.mark.parametrize("text, vector", [("14", 14), ("0x0e", 14), ("#PF", 14), ("pf", 14), ("gp", 13), ("255", 255), ("0", 0)])
def test_parse_vector(text, vector):
    assert parse_vector(text) == vector


@pytest.mark.parametrize("text, message", [
    ("300", "vector 300 is outside 0-255"),
    ("foo", "unknown vector mnemonic 'foo'"),
    ("1x", "a vector must be a number"),
])
def test_parse_vector_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_vector(text)


@pytest.mark.parametrize("text, expected", [("", (0, 255)), ("8", (8, 8)), ("13-14", (13, 14)), ("pf-32", (14, 32))])
def test_parse_range(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize("text, message", [("14-13", "empty range"), ("0-300", "outside 0-255"), ("x-y", "unknown vector")])
def test_parse_range_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_range(text)


def test_parse_int():
    assert parse_int("0x10", "N") == 16
    with pytest.raises(UserError, match="N must be a number"):
        parse_int("ten", "N")


@pytest.mark.parametrize("text, count", [("1", 1), ("8", 8), ("0x10", 16), (str(MAX_FRAMES), MAX_FRAMES)])
def test_parse_count(text, count):
    assert parse_count(text, "the number of frames") == count


@pytest.mark.parametrize("text, message", [
    ("0", "the number of frames must be 1-1024, not 0"), ("-5", "must be 1-1024, not -5"),
    (str(MAX_FRAMES + 1), "must be 1-1024, not 1025"), ("x", "must be a number")])
def test_parse_count_refuses(text, message):
    with pytest.raises(UserError, match=message):
        parse_count(text, "the number of frames")


@pytest.mark.parametrize("text, count", [
    ("Replaying execution '/tmp/r/replay.bin': instruction count = 5732177\r\n", 5732177),
    ("Recording execution '/tmp/r/replay.bin': instruction count = 12\n", 12),
])
def test_info_replay(text, count):
    assert parse_info_replay(text) == count


def test_info_replay_refuses_another_answer():
    with pytest.raises(LabError, match="unexpected `info replay` answer"):
        parse_info_replay("Record/replay is not active\r\n")


@pytest.mark.parametrize("output, line, reply", [
    (b"info\r\ninfo version=1 cpus=1\r\nlab> ", b"info", b"info version=1 cpus=1\n"),
    (b"help\r\na\r\nb\r\nlab> ", b"help", b"a\nb\n"),
    (b"nope\r\nunknown command 'nope'\r\nlab> ", b"nope", b"unknown command 'nope'\n"),
    (b"banner\r\nlab> info\r\ninfo version=1\r\nlab> ", b"info", b"info version=1\n"),  # the first prompt, then the echo
    (b"boot\r\nlab> ", b"info", None),                  # a prompt but no echo yet: not the reply
    (b"info\r\ninfo vers", b"info", None),             # the echo, no prompt yet
    (b"information\r\nlab> ", b"info", None),          # not the echo of `info`
])
def test_shell_reply(output, line, reply):
    assert reply_of(output, line) == reply


def _recording(tmp_path, **meta):
    for name in (RRFILE, RRSNAPSHOT_IMAGE, KERNEL_COPY):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / META).write_text(json.dumps({"probe": "df-no-ist", "profile": "tcg", **meta}))
    return tmp_path


def test_recording_round_trip(tmp_path):
    rec = Recording.load(_recording(tmp_path, end_icount=42))
    assert (rec.probe, rec.end_icount) == ("df-no-ist", 42)
    args = " ".join(rec.replay_args())
    assert "rr=replay" in args and f"rrfile={tmp_path / RRFILE}" in args and "shutdown=pause" in args
    assert "rr=record" in " ".join(rec.record_args())


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "is not a recording"),
    (lambda p: _recording(p), "did not reach its end"),
    (lambda p: (_recording(p, end_icount=1), (p / RRFILE).unlink()), "lacks replay.bin"),
    (lambda p: (p / META).write_text("{"), "not a recording's description"),
    (lambda p: (p / META).write_text('{"probe": "x", "profile": "tcg", "colour": 1}'), "not a recording's description"),
])
def test_recording_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(UserError, match=message):
        Recording.load(tmp_path)
