"""`lab matrix` as a CI job matrix uses it: two shards on TCG (one QEMU each where two are
installed), joined by --merge into one table, its Markdown, and its exit status."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal

import pexpect
import pytest

from lab.host import qemus

from labtest import lab_cli, wait_gone

pytestmark = pytest.mark.integration


def test_shards_merge_into_the_whole_matrix(tmp_path):
    found = qemus.found()
    parts = []
    for k in (1, 2):
        logs = tmp_path / f"logs{k}"
        r = lab_cli("matrix", "--no-kvm", "--shard", f"{k}/2", "--json", "--log-dir", str(logs), timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        for b in json.loads(r.stdout)["backends"]:  # each backend's logs in DIR/<backend>
            assert list((logs / b["backend"].replace("/", "-")).rglob("serial.log")), b["backend"]
        path = tmp_path / f"shard{k}.json"
        path.write_text(r.stdout)
        parts.append(json.loads(r.stdout))
    assert sum(len(p["backends"]) for p in parts) == len(found)
    assert parts[0]["all_backends"] == [f"tcg/{q.version_str}" for q in found]
    merged = lab_cli("matrix", "--merge", str(tmp_path / "shard1.json"), str(tmp_path / "shard2.json"), "--json")
    assert merged.returncode == 0, merged.stderr
    m = json.loads(merged.stdout)
    assert [b["backend"] for b in m["backends"]] == m["all_backends"]
    for b in m["backends"]:
        kinds = {r["kind"] for r in b["rows"]}
        assert kinds == {"fire", "probe", "claim"}, (b["backend"], b["errors"])
        assert not b["errors"], b["errors"]
        assert not [r for r in b["rows"] if r["outcome"] in ("FAIL", "STALE")]
        assert len([r for r in b["rows"] if r["kind"] == "fire"]) == 42  # 21 scenarios, two styles
        gp = next(r for r in b["rows"] if r["id"] == "gp-noncanonical x86-interrupt")
        if (10, 0, 0) <= qemus.parse_version_text(b["qemu"]) < (10, 0, 6):
            assert gp["outcome"] == "DEVIATION" and "CR2=0x8000000000000000" in gp["observed"]
    table = lab_cli("matrix", "--merge", str(tmp_path / "shard1.json"), str(tmp_path / "shard2.json"))
    assert table.returncode == 0 and "lab matrix: exceptions" in table.stdout
    md = lab_cli("matrix", "--merge", str(tmp_path / "shard1.json"), str(tmp_path / "shard2.json"), "--markdown")
    assert md.returncode == 0
    assert md.stdout.splitlines()[0] == "| scenario | " + " | ".join(f"TCG QEMU {q.version_str}" for q in found) + " |"


def test_merge_of_one_shard_names_the_missing_one(tmp_path):
    r = lab_cli("matrix", "--no-kvm", "--shard", "3/3", "--json", timeout=600)  # empty with <= 2 QEMUs
    assert r.returncode == 0, r.stderr
    path = tmp_path / "s.json"
    path.write_text(r.stdout)
    shown = lab_cli("matrix", "--merge", str(path))
    if len(qemus.found()) < 3:
        assert "missing (a shard not merged)" in shown.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopped_matrix_leaves_nothing(sig):
    """`lab matrix` stopped while every backend fires: its one line and status, and every QEMU
    and gdb its backends' processes started is gone."""
    child = pexpect.spawn(shutil.which("lab"), ["-v", "matrix", "--no-kvm", "--json"], encoding="utf-8", timeout=60)
    child.logfile_read = transcript = io.StringIO()
    for _ in range(3):
        child.expect(r"lab \[tcg/[0-9.]+\]: fire \S+ \S+")
    os.kill(child.pid, sig)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == {signal.SIGTERM: 143, signal.SIGINT: 130}[sig], transcript.getvalue()[-2000:]
    started = re.findall(r"started qemu pid (\d+), gdb pid (\d+); run dir (\S+);", transcript.getvalue())
    assert started
    for qemu, gdb, run_dir in started:
        assert wait_gone(int(qemu), 10) and wait_gone(int(gdb), 10), f"{sig.name} left a process"
        shutil.rmtree(run_dir, ignore_errors=True)
