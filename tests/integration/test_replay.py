"""Time travel on a fatal path: `lab probe df-no-ist --record`, then `lab debug --replay`:
the replay stops at the end, goes back, and reaches the instruction in lab_recurse that raised
the first #PF with the registers QEMU's `-d int` log shows for that exception."""

from __future__ import annotations

import re

import pytest

from labtest import lab_cli
from lab.target.qemu_log import LogEvent, fatal_chain, parse
from lab.target.symbols import Symbols



def _regs(block: str) -> dict[str, int]:
    return {m[1]: int(m[2], 16) for m in re.finditer(r"^(r[a-z0-9]+|cs|ss)\s+(0x[0-9a-f]+)", block, re.M)}


@pytest.fixture(scope="module")
def recording(kernel, tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    r = lab_cli("probe", "df-no-ist", "--kernel", str(kernel), "--record", str(root), timeout=120)
    assert r.returncode == 0, r.stderr
    rec = root / "df-no-ist"
    assert f"replay it with: lab debug --replay {rec}" in r.stderr
    return rec


def test_replay_reaches_the_first_page_fault(recording, kernel):
    events = [e for e in parse((recording / "qemu.log").read_text()) if isinstance(e, LogEvent)]
    pf = next(e for e in events if e.vector == 0x0E)            # QEMU's line for the first #PF
    df = next(e for e in events if e.vector == 0x08)
    recurse = Symbols.from_elf(kernel).lookup("lab_recurse")
    marks = ["@end", "@goto1", "@back", "@fwd", "@goto2"]
    cmds = ["echo @end\\n", "info registers rip rsp", "lab-chain",
            "lab-goto 1", "echo @goto1\\n", "info registers rip rsp cs ss",
            "reverse-stepi", "echo @back\\n", "info registers rip rsp",
            "stepi", "echo @fwd\\n", "info registers rip rsp",
            "lab-goto 2", "echo @goto2\\n", "info registers rip rsp rax",
            "lab-shell info", "lab-goto 9", "echo @done\\n"]
    args = ["debug", "--replay", str(recording), "--batch"]
    for c in cmds:
        args += ["-ex", c]
    r = lab_cli(*args, timeout=180)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out
    blocks = dict(zip(marks, re.split(r"^@(?:end|goto1|back|fwd|goto2|done)$", r.stdout, flags=re.M)[1:]))

    end = _regs(blocks["@end"])                                  # positioned at the end: the fault's instruction
    assert (end["rip"], end["rsp"]) == (pf.rip, pf.rsp)
    assert recurse.address <= pf.rip < recurse.end               # an instruction of lab_recurse

    at = _regs(blocks["@goto1"])                                 # the registers QEMU logged for the #PF
    assert (at["rip"], at["rsp"], at["cs"], at["ss"]) == (pf.rip, pf.rsp, pf.cs, pf.ss)
    back = _regs(blocks["@back"])                                # reverse-stepi: the instruction before
    assert back["rip"] != pf.rip and recurse.address <= back["rip"] < recurse.end
    assert _regs(blocks["@fwd"])["rip"] == pf.rip                # and forward again
    at2 = _regs(blocks["@goto2"])                                # the #DF's line adds RAX
    assert (at2["rip"], at2["rsp"], at2["rax"]) == (df.rip, df.rsp, df.rax)

    rows = re.findall(r"│ (\d) │ (#\w+)\s+│ ([^│]+?)\s+│", out)
    assert rows == [("1", "#PF", "the instruction"), ("2", "#PF", "delivering #PF"), ("3", "#PF", "delivering #DF")]
    assert "triple fault: the CPU shut down" in out
    assert "the CPU could not push the #PF frame" in out and "which is not mapped" in out
    assert "lab-shell: a replay's kernel input is the recording's" in out
    assert "lab-goto: the chain has exceptions 1-3, not 9" in out
    assert len(fatal_chain(parse((recording / "qemu.log").read_text()))) == 3


def test_replay_of_nothing(tmp_path):
    r = lab_cli("debug", "--replay", str(tmp_path))
    assert r.returncode == 2 and "is not a recording" in r.stderr


def test_record_refuses_kvm_and_disks(kernel, tmp_path):
    r = lab_cli("probe", "df-no-ist", "--kernel", str(kernel), "--boot", "bios", "--record", str(tmp_path), timeout=60)
    assert r.returncode == 2 and "--record needs the TCG accelerator and a kernel booted without a disk" in r.stderr


def test_record_refuses_a_probe_that_does_not_reset(kernel, tmp_path):
    r = lab_cli("probe", "double-fault", "--kernel", str(kernel), "--record", str(tmp_path), timeout=60)
    assert r.returncode == 2 and "--record records the triple-fault probes" in r.stderr
    assert not (tmp_path / "double-fault").exists()
