"""The saved-state store and its key (lab/machine/snapshot.py), on plain files: no QEMU."""

import json
import os

import pytest

from lab.errors import LabError
from lab.machine import snapshot
from lab.machine.snapshot import FORMAT, StateStore, state_key


@pytest.fixture
def files(tmp_path):
    qemu = tmp_path / "qemu-system-x86_64"
    kernel = tmp_path / "labkernel"
    qemu.write_bytes(b"qemu")
    kernel.write_bytes(b"kernel")
    return qemu, kernel


def key(qemu, kernel, *extra):
    return state_key([str(qemu), "-kernel", str(kernel), *extra], [kernel])


def test_same_boot_same_key(files):
    assert key(*files) == key(*files)


@pytest.mark.parametrize("change", ["append", "profile", "kernel-rewritten", "kernel-touched", "qemu-replaced"])
def test_anything_that_changes_the_boot_changes_the_key(files, change):
    qemu, kernel = files
    before = key(qemu, kernel)
    extra = ()
    if change == "append":
        extra = ("-append", "lab.timer=100")
    elif change == "profile":
        extra = ("-machine", "q35")
    elif change == "kernel-rewritten":
        kernel.write_bytes(b"kernel, rebuilt")
    elif change == "kernel-touched":
        st = kernel.stat()
        os.utime(kernel, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    elif change == "qemu-replaced":
        qemu.write_bytes(b"qemu, upgraded")
    assert key(qemu, kernel, *extra) != before


def publish(store, key, stream=b"QEVM...", ready="LAB-READY version=1"):
    tmp = store.temp_stream(key)
    tmp.write_bytes(stream)
    return store.publish(key, tmp, {"ready_line": ready, "ready_address": 0x1000, "serial": "boot"})


def test_publish_then_find(tmp_path):
    store = StateStore(tmp_path)
    assert store.find("k") is None
    publish(store, "k")
    found = store.find("k")
    assert found is not None and found.ready_line == "LAB-READY version=1"
    assert found.ready_address == 0x1000 and found.stream.read_bytes() == b"QEVM..."
    assert not list(tmp_path.glob("*.tmp")), "the temporary stream was moved into place"


def test_a_state_of_another_format_is_not_used(tmp_path):
    store = StateStore(tmp_path)
    publish(store, "k")
    meta = tmp_path / "k.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": FORMAT + 1}))
    assert store.find("k") is None


def test_metadata_without_its_stream_is_not_used(tmp_path):
    store = StateStore(tmp_path)
    publish(store, "k")
    (tmp_path / "k.state").unlink()
    assert store.find("k") is None


def test_unreadable_metadata_is_an_error_naming_the_file(tmp_path):
    store = StateStore(tmp_path)
    publish(store, "k")
    (tmp_path / "k.json").write_text("{not json")
    with pytest.raises(LabError, match=r"k\.json is unreadable.*--fresh"):
        store.find("k")


def test_the_oldest_states_beyond_keep_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "KEEP", 3)
    store = StateStore(tmp_path)
    for i in range(5):
        publish(store, f"k{i}")
        os.utime(tmp_path / f"k{i}.json", (1000 + i, 1000 + i))
    publish(store, "k5")
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == ["k3", "k4", "k5"]
    assert sorted(p.stem for p in tmp_path.glob("*.state")) == ["k3", "k4", "k5"]


def test_state_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LAB_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert snapshot.state_dir() == tmp_path / "x86-kernel-lab" / "states"
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "mine"))
    assert snapshot.state_dir() == tmp_path / "mine"
