"""`lab matrix` without QEMU: shards partition the backends, --merge joins them (and refuses
what does not fit), the table and the Markdown come from the rows, the exit status follows a
FAIL only; QEMU discovery and what a QEMU can do, from files on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.errors import UserError
from lab.host import qemus
from lab.present import matrix as present
from lab.runs.matrix import MatrixResult, merge, parse_shard, split


@pytest.mark.parametrize("text, shard", [("1/1", (1, 1)), ("2/3", (2, 3)), ("3/3", (3, 3))])
def test_parse_shard(text, shard):
    assert parse_shard(text) == shard


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0", "-1/2", "1/2/3"])
def test_bad_shard(text):
    with pytest.raises(ValueError):
        parse_shard(text)


@pytest.mark.parametrize("items, n", [(list("abc"), 1), (list("abc"), 2), (list("abc"), 3), (list("abc"), 5),
                                      (list(range(7)), 3), ([], 2)])
def test_shards_partition_the_backends(items, n):
    parts = [split(items, k, n) for k in range(1, n + 1)]
    assert sorted(x for p in parts for x in p) == sorted(items)
    assert sum(len(p) for p in parts) == len(items)  # no backend twice


@pytest.mark.parametrize("items, k, n, part", [(list("abc"), 1, 2, ["a", "c"]), (list("abc"), 2, 2, ["b"]),
                                               (list("abc"), 3, 5, ["c"]), (list("abc"), 4, 5, [])])
def test_shard_members(items, k, n, part):
    assert split(items, k, n) == part


def backend(name, *rows, seconds=1.0):
    return {"backend": name, "accel": name.split("/")[0], "qemu": name.split("/")[1], "seconds": seconds,
            "rows": [{"kind": k, "id": i, "outcome": o, "note": note, "observed": obs, "recorded": rec}
                     for k, i, o, note, obs, rec in rows], "errors": []}


REC = [{"summary": "writes CR2", "cause": "target/i386/tcg/sysemu/excp_helper.c: x86_cpu_tlb_fill",
        "range": "QEMU >= 8.0.0, < 10.0.6 / 10.2.0", "fixed_in": "10.0.6 / 10.2.0"}]
A = backend("tcg/7.2.22", ("fire", "gp-noncanonical x86-interrupt", "PASS", "", "", []),
            ("fire", "gp-noncanonical stub", "PASS", "", "", []), ("probe", "double-fault", "PASS", "", "", []))
B = backend("tcg/10.0.2", ("fire", "gp-noncanonical x86-interrupt", "DEVIATION", "QEMU 10.0.2 TCG: writes CR2",
                           "#GP(0x0) CR2=0x8000000000000000", REC),
            ("fire", "gp-noncanonical stub", "DEVIATION", "QEMU 10.0.2 TCG: writes CR2",
             "#GP(0x0) CR2=0x8000000000000000", REC), ("probe", "double-fault", "PASS", "", "", []))
C = backend("kvm/7.2.22", ("fire", "gp-noncanonical x86-interrupt", "PASS", "", "", []),
            ("fire", "gp-noncanonical stub", "FAIL", "unrecorded deviation on KVM QEMU 7.2.22", "#SS(0x0)", []),
            ("probe", "double-fault", "SKIP", "not on KVM", "", []))
EVERY = ["tcg/7.2.22", "tcg/10.0.2", "kvm/7.2.22"]


def shard_json(k, n, backends):
    return MatrixResult(backends, EVERY, [], (k, n), 10.0).to_json()


def test_merge_joins_shards_in_the_matrix_order():
    m = merge([shard_json(2, 2, [B]), shard_json(1, 2, [A, C])])
    assert [b["backend"] for b in m.backends] == EVERY and not m.missing
    assert m.failed  # C's FAIL


def test_merge_names_a_missing_shard():
    m = merge([shard_json(1, 2, [A, C])])
    assert m.missing == ["tcg/10.0.2"]
    assert any("tcg/10.0.2: missing" in line for line in present.footer(m))


@pytest.mark.parametrize("parts, says", [
    ([shard_json(1, 2, [A]), shard_json(2, 2, [A])], "in two parts"),
    ([{"format": 99, "backends": []}], "not a `lab matrix --json` result"),
    ([["not", "a", "matrix"]], "not a `lab matrix --json` result"),
])
def test_merge_refuses(parts, says):
    with pytest.raises(UserError, match=says):
        merge(parts)


def test_exit_status_follows_fail_only():
    assert not MatrixResult([A, B], EVERY).failed  # DEVIATION and STALE are not failures
    stale = backend("tcg/10.0.2", ("fire", "np x86-interrupt", "STALE", "recorded deviation not seen", "", []))
    assert not MatrixResult([stale]).failed
    assert MatrixResult([A, B, C]).failed


def test_table_folds_styles_only_when_they_agree():
    rows = present.table_rows(MatrixResult([A, B, C], EVERY))
    labels = [label for kind, label, _ in rows if kind == "fire"]
    assert labels == ["gp-noncanonical x86-interrupt", "gp-noncanonical stub"]  # C's stub differs
    folded = present.table_rows(MatrixResult([A, B], EVERY))
    assert [label for kind, label, _ in folded if kind == "fire"] == ["gp-noncanonical"]


def test_markdown_has_a_column_per_backend_the_observed_value_and_the_cause():
    md = present.markdown(MatrixResult([A, B], EVERY))
    lines = md.splitlines()
    assert lines[0] == "| scenario | TCG QEMU 7.2.22 | TCG QEMU 10.0.2 |"
    assert "| gp-noncanonical | PASS | DEVIATION #GP(0x0) CR2=0x8000000000000000 |" in lines
    assert any("x86_cpu_tlb_fill" in line and "10.0.6 / 10.2.0" in line for line in lines)


def test_notes_name_backend_and_cause():
    lines = present.notes(MatrixResult([A, B], EVERY))
    assert lines == ["tcg/10.0.2 gp-noncanonical: QEMU 10.0.2 TCG: writes CR2"]


# -- QEMUs on disk --------------------------------------------------------------------------------

def fake_prefix(root: Path, version: str, *, microvm_is_qboot: bool) -> Path:
    """A prefix laid out as dpkg-deb -x leaves Debian's packages; its binary is a script that
    prints a version banner (discovery only reads that; every other test runs the real QEMU)."""
    prefix = root / version
    binary = prefix / qemus.PREFIX_BIN
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\necho 'QEMU emulator version {version} (Debian test)'\n")
    binary.chmod(0o755)
    share, seabios = prefix / "usr/share/qemu", prefix / "usr/share/seabios"
    share.mkdir(parents=True)
    seabios.mkdir(parents=True)
    (share / "qboot.rom").write_bytes(b"\0" * 16)
    if microvm_is_qboot:
        os.symlink("qboot.rom", share / "bios-microvm.bin")
    else:
        (seabios / "bios-microvm.bin").write_bytes(b"\1" * 16)
    (prefix / qemus.PREFIX_MODULES).mkdir(parents=True)
    return binary


def test_private_prefix_runs_with_its_firmware_and_modules(tmp_path):
    q = qemus.from_binary(fake_prefix(tmp_path, "10.0.2", microvm_is_qboot=False))
    assert (q.name, q.version, q.private) == ("10.0", (10, 0, 2), True)
    argv = q.argv()
    assert argv[1:] == ["-L", str(tmp_path / "10.0.2/usr/share/qemu"), "-L", str(tmp_path / "10.0.2/usr/share/seabios")]
    assert q.env()["QEMU_MODULE_DIR"] == str(tmp_path / "10.0.2" / qemus.PREFIX_MODULES)
    assert q.file_migration


@pytest.mark.parametrize("microvm_is_qboot, bios", [(True, []), (False, ["-bios", "qboot.rom"])])
def test_microvm_gets_qboot_only_where_its_default_is_not(tmp_path, microvm_is_qboot, bios):
    q = qemus.from_binary(fake_prefix(tmp_path, "10.0.2", microvm_is_qboot=microvm_is_qboot))
    assert q.microvm_bios() == bios


@pytest.mark.parametrize("version, file_migration", [("7.2.22", False), ("8.1.5", False), ("8.2.0", True), ("10.0.2", True)])
def test_migration_kind_by_version(tmp_path, version, file_migration):
    assert qemus.from_binary(fake_prefix(tmp_path, version, microvm_is_qboot=True)).file_migration is file_migration


def test_found_lists_prefixes_by_version_and_resolve_names_them(tmp_path, monkeypatch):
    for v in ("10.0.2", "9.2.1"):
        fake_prefix(tmp_path, v, microvm_is_qboot=True)
    monkeypatch.setenv("LAB_QEMU_ROOT", str(tmp_path))
    assert [q.version for q in qemus.private()] == [(9, 2, 1), (10, 0, 2)]
    qemus._resolve.cache_clear()
    try:
        assert qemus.resolve("9.2").version == (9, 2, 1)
        assert qemus.resolve("10.0.2").version == (10, 0, 2)
        with pytest.raises(UserError, match="unknown QEMU '8.0'"):
            qemus.resolve("8.0")
        with pytest.raises(UserError, match="no executable QEMU"):
            qemus.resolve(str(tmp_path / "nothing"))
    finally:
        qemus._resolve.cache_clear()


def test_qemus_listing():
    q = qemus.Qemu("10.0", Path("/p/usr/bin/qemu-system-x86_64"), (10, 0, 2), "Debian x")
    lines = present.qemus_listing([q])
    assert lines[0].split() == ["NAME", "VERSION", "MIGRATION", "BINARY"]
    assert lines[1].split()[:3] == ["10.0", "10.0.2", "(Debian"] and "file:" in lines[1]


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_terminal_and_keeps_values_whole(width):
    from rich.console import Console

    con = Console(width=width, record=True, force_terminal=False)
    present.show(MatrixResult([A, B, C], EVERY), con)
    text = con.export_text()
    table = text.split("tcg/10.0.2 gp-noncanonical:")[0]  # the tables, not the notes below them
    assert max(len(line) for line in table.splitlines()) <= width
    assert "CR2=0x8000000000000000" in table  # on a line of its own in the cell, not folded
    assert "lab matrix: fatal-path probes" in text and "kvm/7.2.22: " in text
