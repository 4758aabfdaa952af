"""Table-driven tests for the in-guest observer's decoders (lab/labkernel/observer.py).

Records are built with `struct.pack` in the field order of kernel/src/observer.rs, never with
the lab's own encoder; one is the hex line the kernel printed for `fire de` on TCG."""

from __future__ import annotations

import struct

import pytest

from lab.errors import GuestError
from lab.experiments.kvm_probe import EMULATION_FAILURE, NO_REPORT, STOPPED, classify, classify_probe, host_cpu
from lab.labkernel.layouts import OBSERVER_MAGIC, OBSERVER_RECORD, OBSERVER_SIZE
from lab.labkernel.observer import decode_buffer, decode_record, parse_dump

NONE = 2**64 - 1
#: The kernel's own line for `fire de` (x86-interrupt style), TCG, this build.
KERNEL_DE = ("010000000000000000000000000000000000000000000000ffffffffffffffff48ec1600000000009165100000000000"
             "0800000000000000160200000000000078ec160000000000100000000000000000000000000000004600000000000000"
             "000000000000000000201300000000000800000000000000100000000000000010f90800008e10000000000000000000"
             "000000000000000078ec1600000000001602000000000000080000000000000010000000000000000100000000000000"
             "0000000000000000")


def record(seq=1, vector=14, style=0, error=0x2, rsp=0x1000, words=(2, 0x104000, 8, 0x246, 0x1040, 0x10),
           rflags=0x46, cr2=0xdead000, cr3=0x120000, cs=8, ss=0x10, gate=(0x00008e0000080000 | 0x1234, 0),
           ist_top=0, plant=(0x1048, 0x246, 8, 0x10, 3), cpu=0) -> bytes:
    return struct.pack("<5Q6Q5Q2QQ5QQ", seq, vector, style, error, rsp, *words, rflags, cr2, cr3, cs, ss,
                       *gate, ist_top, *plant, cpu)


def test_the_layout_is_the_kernels_size():
    assert len(record()) == OBSERVER_RECORD.size == 0xc8


@pytest.mark.parametrize("raw, want", [
    (record(), dict(seq=1, vector=14, style="x86-interrupt", error_code=2, entry_rsp=0x1000, frame=0x1008,
                    saved_rip=0x104000, cr2=0xdead000, cr3=0x120000, cs=8, ss=0x10, ist_top=0,
                    plant={"rsp": 0x1048, "rflags": 0x246, "cs": 8, "ss": 0x10, "fire": 3})),
    (record(seq=7, vector=6, style=1, error=NONE, words=(0x104872, 8, 0x216, 0x153bd8, 0x10, 0)),
     dict(seq=7, vector=6, style="stub", error_code=None, frame=0x1000, saved_rip=0x104872)),
    (record(vector=2, error=NONE, ist_top=0x160000, gate=(0x00008e0200080000, 0)),
     dict(vector=2, error_code=None, ist_top=0x160000, cpu=0)),
    (record(vector=2, error=NONE, ist_top=0x100e000, cpu=3), dict(ist_top=0x100e000, cpu=3)),
    (bytes.fromhex(KERNEL_DE), dict(seq=1, vector=0, style="x86-interrupt", error_code=None,
                                    entry_rsp=0x16ec48, saved_rip=0x106591, cs=8, ss=0x10, cpu=0,
                                    plant={"rsp": 0x16ec78, "rflags": 0x216, "cs": 8, "ss": 0x10, "fire": 1})),
])
def test_decode_record(raw, want):
    r = decode_record(raw)
    for name, value in want.items():
        assert getattr(r, name) == value, name


@pytest.mark.parametrize("raw, needle", [
    (record()[:-1], "200 bytes, got 199"),
    (record(style=3), "style 3"),
])
def test_decode_record_rejects(raw, needle):
    with pytest.raises(GuestError, match=needle):
        decode_record(raw)


def dump(count: int, records: list[bytes], new=None, lost=0, capacity=64, size=0xc8) -> str:
    head = f"observed count={count} new={len(records) if new is None else new} lost={lost} capacity={capacity} record_size={size}"
    return "\n".join([head] + [f"record {r.hex()}" for r in records])


@pytest.mark.parametrize("text, seqs, lost", [
    (dump(0, []), [], 0),
    (dump(2, [record(seq=1), record(seq=2)]), [1, 2], 0),
    (dump(70, [record(seq=s) for s in range(7, 71)], lost=6), list(range(7, 71)), 6),
    ("fire de\r\n" + dump(3, [record(seq=3)]) + "\r\n", [3], 0),
])
def test_parse_dump(text, seqs, lost):
    d = parse_dump(text)
    assert [r.seq for r in d.records] == seqs and d.lost == lost


@pytest.mark.parametrize("text, needle", [
    ("nothing here", "0 header lines"),
    (dump(2, [record(seq=2)], new=2), "announced 2 records and printed 1"),
    (dump(2, [record(seq=2), record(seq=1)]), "out of order"),
    (dump(1, [record(seq=1)], size=0xb8), "records of 184 bytes"),
    (dump(1, [record(seq=1)], capacity=8), "has 8 records"),
])
def test_parse_dump_rejects(text, needle):
    with pytest.raises(GuestError, match=needle):
        parse_dump(text)


def buffer(count: int, slots: dict[int, bytes], magic=OBSERVER_MAGIC) -> bytes:
    raw = bytearray(struct.pack("<5Q", magic, 0xc8, 64, count, 0) + bytes(64 * 0xc8))
    for slot, rec in slots.items():
        raw[40 + slot * 0xc8:40 + (slot + 1) * 0xc8] = rec
    return bytes(raw)


@pytest.mark.parametrize("raw, after, seqs, lost", [
    (buffer(0, {}), 0, [], 0),
    (buffer(2, {0: record(seq=1), 1: record(seq=2)}), 0, [1, 2], 0),
    (buffer(2, {0: record(seq=1), 1: record(seq=2)}), 1, [2], 0),
    # wrapped: seq 65 overwrote slot 0; seq 1 is gone
    (buffer(65, {i: record(seq=i + 1) for i in range(1, 64)} | {0: record(seq=65)}), 0, list(range(2, 66)), 1),
])
def test_decode_buffer(raw, after, seqs, lost):
    assert len(raw) == OBSERVER_SIZE
    d = decode_buffer(raw, after)
    assert [r.seq for r in d.records] == seqs and d.lost == lost


@pytest.mark.parametrize("raw, needle", [
    (buffer(0, {}, magic=0)[:], "magic"),
    (buffer(0, {})[:-8], "bytes, got"),
    (buffer(1, {0: record(seq=5)}), "holds seq 5"),
])
def test_decode_buffer_rejects(raw, needle):
    with pytest.raises(GuestError, match=needle):
        decode_buffer(raw)


@pytest.mark.parametrize("status, stderr, want", [
    ("internal-error", "KVM internal error. Suberror: 1\nemulation failure\nRAX=0", EMULATION_FAILURE),
    ("running", "", NO_REPORT),
    ("shutdown", "", STOPPED),
    ("paused", "KVM internal error. Suberror: 1", EMULATION_FAILURE),
])
def test_classify_a_fire_that_did_not_come_back(status, stderr, want):
    assert classify(status, stderr).startswith(want)


# Recorded on this lab's KVM host (QEMU 7.2.22, AMD EPYC, nested): `probe idt-limit0` typed
# into the shell of plain QEMU; the QMP event, query-status and the head of QEMU's stderr.
KVM_STDERR = ("KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000001\n"
              "extra data[1]: 0xc35d10c48348cc0f\nemulation failure\nRAX=000000000016ed16 RBX=000000000011e0d0\n")
RESET = {"timestamp": {"seconds": 1796128578, "microseconds": 254277}, "event": "SHUTDOWN",
         "data": {"guest": True, "reason": "guest-reset"}}


@pytest.mark.parametrize("event, status, stderr, want", [
    (RESET, None, "", None),  # the triple fault's reset under -no-reboot: runs
    ({"event": "RESET", "data": {"guest": True, "reason": "guest-reset"}}, None, "", None),
    (None, "internal-error", KVM_STDERR, EMULATION_FAILURE),  # STOP, no SHUTDOWN: the host cannot
    (None, "paused", KVM_STDERR, EMULATION_FAILURE),
    (None, "running", "", NO_REPORT),  # nothing happened within the wait
    ({"event": "SHUTDOWN", "data": {"guest": True, "reason": "guest-shutdown"}}, None, "", STOPPED),
    (None, "guest-panicked", "", STOPPED),
])
def test_classify_a_triple_fault_probe(event, status, stderr, want):
    why = classify_probe(event, status, stderr)
    assert why is None if want is None else why.startswith(want), why
    if want == EMULATION_FAILURE:
        assert "KVM internal error. Suberror: 1 / emulation failure" in why


@pytest.mark.parametrize("cpuinfo, vendor, model", [
    ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU\nprocessor\t: 1\n"
     "vendor_id\t: Other\n", "GenuineIntel", "Intel(R) Xeon(R) CPU"),
    ("vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n", "AuthenticAMD", "AMD EPYC"),
    ("", "unknown", "unknown"),
])
def test_host_cpu(cpuinfo, vendor, model):
    cpu = host_cpu(cpuinfo)
    assert (cpu.vendor, cpu.model) == (vendor, model)


def test_the_default_observer_is_the_kernels_own_only_where_it_has_one():
    from lab.errors import UserError
    from lab.runs.fire import choose_observer
    from lab.target.symbols import Symbols

    assert choose_observer(None, Symbols.empty()) == "gdb"  # a foreign kernel
    assert choose_observer("gdb", Symbols.empty()) == "gdb"
    with pytest.raises(UserError, match="unknown observer 'eyes'"):
        choose_observer("eyes", Symbols.empty())
