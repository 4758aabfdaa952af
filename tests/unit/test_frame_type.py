"""The DWARF frame readers (lab/target/frametypes.py) from real gcc output, and the
`fire.frame-type` judge (lab/checks/frame_type.py) over hand-built observations: each wrong
layout FAILs naming the member, each control passes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.checks.base import Verdict
from lab.checks.frame_type import check
from lab.target import frametypes
from lab.target.frametypes import frame_readers, parse, word_of


@pytest.mark.parametrize("name, word", [
    ("rip", "rip"), ("black_rip", "rip"), ("instruction_pointer", "rip"), ("ip", "rip"), ("RIP", "rip"),
    ("cs", "cs"), ("code_segment", "cs"), ("rflags", "rflags"), ("flags", "rflags"), ("cpu_flags", "rflags"),
    ("rsp", "rsp"), ("sp", "rsp"), ("stack_pointer", "rsp"), ("ss", "ss"), ("stack_segment", "ss"),
    ("error_code", "error_code"), ("orig_ax", "error_code"), ("err", "error_code"),
    ("r15", None), ("vector", None), ("zip", None), ("ripple", None), ("gs_base", None), ("rax", None),
])
def test_word_of(name, word):
    assert word_of(name) == word


C_SOURCE = r"""
typedef unsigned long u64;
struct frame { u64 rip, cs, rflags, rsp, ss; };
struct swapped { u64 cs, rip, rflags, rsp, ss; };
typedef struct { u64 r15, r14, vector, error_code; struct frame iret; } regs_t;
struct sockaddr { unsigned ip; unsigned port; };
volatile u64 sink;
__attribute__((interrupt)) void isr(struct frame *f) { sink = f->rip; }
void by_pointer(struct swapped *f) { sink = f->rip; }
void dispatch(int vector, const regs_t *regs) { sink = regs->iret.rip + vector; }
void by_value(struct frame f) { sink = f.cs; }
void not_a_frame(struct sockaddr *a) { sink = a->ip; }
void _start(void) { for (;;) ; }
"""


@pytest.fixture(scope="module")
def c_elf(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("frametypes")
    (d / "t.c").write_text(C_SOURCE)
    subprocess.run(["gcc", "-g", "-O0", "-ffreestanding", "-nostdlib", "-static", "-mgeneral-regs-only",
                    "-o", str(d / "t.elf"), str(d / "t.c")], check=True, capture_output=True)
    return d / "t.elf"


def test_readers_from_gcc_dwarf(c_elf):
    readers = {r.function: r for r in parse(c_elf)["readers"]}
    assert set(readers) == {"isr", "by_pointer", "dispatch", "by_value"}  # not the sockaddr one
    isr, swapped, dispatch, by_value = (readers[n] for n in ("isr", "by_pointer", "dispatch", "by_value"))
    assert (isr.param, isr.index, isr.by_value, isr.type_name, isr.size) == ("f", 0, False, "frame", 40)
    assert [(m.path, m.offset, m.word) for m in isr.members] == [
        ("rip", 0, "rip"), ("cs", 8, "cs"), ("rflags", 16, "rflags"), ("rsp", 24, "rsp"), ("ss", 32, "ss")]
    assert {m.path: m.offset for m in swapped.members}["rip"] == 8
    assert (dispatch.index, dispatch.type_name) == (1, "regs_t")  # through the typedef and const
    assert {m.path: m.offset for m in dispatch.members} == {
        "error_code": 24, "iret.rip": 32, "iret.cs": 40, "iret.rflags": 48, "iret.rsp": 56, "iret.ss": 64}
    assert by_value.by_value


def test_no_dwarf_is_a_reason(c_elf, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    stripped = tmp_path / "stripped.elf"
    subprocess.run(["objcopy", "--strip-debug", str(c_elf), str(stripped)], check=True)
    assert "no DWARF" in parse(stripped)["skip"]
    (tmp_path / "System.map").write_text("ffffffff81000000 T _text\n")
    assert "not an ELF" in frame_readers(tmp_path / "System.map")["skip"]
    damaged = tmp_path / "damaged.elf"
    damaged.write_bytes(c_elf.read_bytes()[:200])
    assert "cannot read" in frame_readers(damaged)["skip"]


def test_readers_are_cached_by_content(c_elf, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(frametypes, "_MEMO", {})
    first = frame_readers(c_elf)["readers"]
    assert frame_readers(c_elf)["readers"] is first  # this process remembers it
    frametypes._MEMO.clear()
    cached = list((tmp_path / "x86-kernel-lab" / "frametypes").glob("*.json"))
    assert len(cached) == 1
    calls = []
    monkeypatch.setattr(frametypes, "parse", lambda p: calls.append(p) or {"readers": []})
    assert frame_readers(c_elf)["readers"] == first and calls == []  # from the cache
    cached[0].write_text("{not json")
    frametypes._MEMO.clear()
    assert frame_readers(c_elf)["readers"] == {} and calls == [c_elf]  # a broken cache is parsed again


ENTRY_RSP = 0x170C40
SENTINELS = {"rax": 0x5E00_0000_0000_00AA, "rbx": 0x5E00_0100_0000_00BB, "rcx": 0x5E00_0200_0000_00CC,
             "rdx": 0x5E00_0300_0000_00DD, "rsi": 0x5E00_0400_0000_005E}
PUSHED = {"error_code": 3, "rip": 0x106B71, "cs": 8, "rflags": 0x216, "rsp": 0x170C78, "ss": 0x10}
WORDS = ("rip", "cs", "rflags", "rsp", "ss")


def observation(offsets: dict[str, int], *, pointer: int, error_code: bool = True, values=None,
                steps: int = 18, type_name: str = "Frame", observer: str = "gdb"):
    """A fire whose handler reads `type_name` at `pointer`, members at `offsets`; memory holds the
    CPU's frame at ENTRY_RSP and the sentinels the stub pushed below it."""
    stack = [PUSHED[w] for w in (("error_code",) if error_code else ()) + WORDS]
    memory = {ENTRY_RSP + 8 * i: v for i, v in enumerate(stack)}
    memory |= {ENTRY_RSP - 8 * (len(SENTINELS) - i): v for i, v in enumerate(SENTINELS.values())}
    members = []
    for path, off in offsets.items():
        address = pointer + off
        members.append({"path": path, "offset": off, "size": 8, "word": word_of(path.split(".")[-1]),
                        "address": address, "value": (values or {}).get(path, memory.get(address)), "error": None})
    ft = {"reader": {"function": "handle", "address": 0x1000, "param": "f", "type": type_name,
                     "by_value": False, "interrupt_abi": steps == 0},
          "pointer": pointer, "base": ENTRY_RSP + (8 if error_code else 0), "entry_rsp": ENTRY_RSP,
          "steps": steps, "pc": 0x1000, "members": members}
    return SimpleNamespace(frame_type=ft, entry={"stack": stack}, sentinels=SENTINELS, observer=observer)


GOOD = {w: 8 * i for i, w in enumerate(WORDS)}


@pytest.mark.parametrize("what, obs, error_code, verdict, says", [
    ("the CPU's frame, error code pushed", observation(GOOD, pointer=ENTRY_RSP + 8), True, Verdict.PASS, "RIP"),
    ("no error code", observation(GOOD, pointer=ENTRY_RSP, error_code=False), False, Verdict.PASS, "RIP"),
    ("a TrapFrame with the error code", observation({"error_code": 0, **{f"iret.{w}": 8 + o for w, o in GOOD.items()}},
                                                    pointer=ENTRY_RSP), True, Verdict.PASS, "iret.rip"),
    ("the tutorial's struct at the stub's RSP", observation(GOOD, pointer=ENTRY_RSP - 40, type_name="TutorialFrame"),
     True, Verdict.FAIL, "TutorialFrame.rip (offset 0) reads 0x5e000000000000aa"),
    ("it names the register it reads", observation(GOOD, pointer=ENTRY_RSP - 40), True, Verdict.FAIL,
     "the interrupted RAX"),
    ("one shift is one finding", observation(GOOD, pointer=ENTRY_RSP - 40), True, Verdict.FAIL,
     "4 more member(s) as far off"),
    ("the error code forgotten: all one slot low", observation(GOOD, pointer=ENTRY_RSP), True, Verdict.FAIL,
     "Frame.rip (offset 0) reads 0x3"),
    ("RIP and CS swapped", observation({"cs": 0, "rip": 8, "rflags": 16, "rsp": 24, "ss": 32}, pointer=ENTRY_RSP,
                                       error_code=False),
     False, Verdict.FAIL, "Frame.cs (offset 0) reads 0x106b71"),
    ("an error-code member where none is pushed is not judged",
     observation({"error_code": 0, **{w: 8 + o for w, o in GOOD.items()}}, pointer=ENTRY_RSP - 8, error_code=False),
     False, Verdict.PASS, "not judged"),
    ("an error-code member in the wrong place",
     observation({"error_code": 8, **{w: 16 + o for w, o in GOOD.items()}}, pointer=ENTRY_RSP - 16), True,
     Verdict.FAIL, "Frame.error_code (offset 8)"),
])
def test_judge(what, obs, error_code, verdict, says):
    c = check(obs, error_code)
    assert c.verdict is verdict, (what, c.evidence)
    assert any(says in e for e in c.evidence), (what, c.evidence)


def test_swapped_fields_are_two_findings():
    c = check(observation({"cs": 0, "rip": 8, "rflags": 16, "rsp": 24, "ss": 32}, pointer=ENTRY_RSP,
                          error_code=False), False)
    assert [e.split(" (")[0] for e in c.evidence[:2]] == ["Frame.cs", "Frame.rip"]


@pytest.mark.parametrize("frame_type, observer, says", [
    (None, "guest", "--observer gdb"),
    (None, "gdb", "not entered"),
    ({"skip": "the kernel has no DWARF (.debug_info): build it with debug info"}, "gdb", "no DWARF"),
])
def test_skips_say_why(frame_type, observer, says):
    c = check(SimpleNamespace(frame_type=frame_type, observer=observer, entry=None, sentinels={}), True)
    assert c.verdict is Verdict.SKIP and says in c.evidence[0]
