"""The saved-state store and its key (lab/machine/snapshot.py), on plain files: no QEMU."""

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest

from lab.errors import UserError
from lab.host.locks import owner_tag
from lab.machine import snapshot
from lab.machine.snapshot import FORMAT, BadState, StateDirUnusable, StateStore, state_key


@pytest.fixture
def files(tmp_path):
    qemu = tmp_path / "qemu-system-x86_64"
    kernel = tmp_path / "labkernel"
    qemu.write_bytes(b"qemu")
    kernel.write_bytes(b"kernel")
    return qemu, kernel


def key(qemu, kernel, *extra, files=None):
    return state_key([str(qemu), "-kernel", str(kernel), *extra], files or [kernel])


def test_same_boot_same_key(files):
    assert key(*files) == key(*files)


@pytest.mark.parametrize("change", ["append", "profile", "kernel-rewritten", "kernel-same-size-and-mtime",
                                    "qemu-replaced"])
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
    elif change == "kernel-same-size-and-mtime":
        # Another build, same size, its mtime set back: only the content tells them apart.
        st = kernel.stat()
        kernel.write_bytes(b"KERNEL")
        os.utime(kernel, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert [st.st_size, st.st_mtime_ns, st.st_ino] == [kernel.stat().st_size, kernel.stat().st_mtime_ns,
                                                            kernel.stat().st_ino]
    elif change == "qemu-replaced":
        qemu.write_bytes(b"qemu, upgraded")
    assert key(qemu, kernel, *extra) != before


def test_a_touched_kernel_keeps_its_key(files):
    """The key is the content's: a touch (same bytes) is the same boot."""
    qemu, kernel = files
    before = key(qemu, kernel)
    st = kernel.stat()
    os.utime(kernel, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert key(qemu, kernel) == before


def test_the_bios_image_content_is_in_the_key(files, tmp_path):
    qemu, kernel = files
    image = tmp_path / "bootimage-labkernel.bin"
    image.write_bytes(b"disk")
    before = key(qemu, kernel, files=[kernel, image])
    st = image.stat()
    image.write_bytes(b"DISK")
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert key(qemu, kernel, files=[kernel, image]) != before


def test_file_digests_are_cached_until_the_file_changes(tmp_path, monkeypatch):
    f = tmp_path / "kernel"
    f.write_bytes(b"one")
    calls = []
    real = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda *a: calls.append(1) or real(*a))
    assert snapshot.file_digest(f) == snapshot.file_digest(f) == hashlib.sha256(b"one").hexdigest()
    assert len(calls) == 1
    st = f.stat()
    f.write_bytes(b"two")  # same size; the mtime put back: the ctime still moves
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert snapshot.file_digest(f) == hashlib.sha256(b"two").hexdigest()


def publish(store, key, stream=b"QEVM...", ready="LAB-READY version=1"):
    tmp = store.temp_stream(key)
    tmp.write_bytes(stream)
    return store.publish(key, tmp, {"ready_line": ready, "ready_address": 0x1000, "serial": "boot",
                                    "qemu_version": "7.2.0"})


def test_publish_then_find(tmp_path):
    store = StateStore(tmp_path)
    assert store.find("k") is None
    publish(store, "k")
    found = store.find("k")
    assert found is not None and found.ready_line == "LAB-READY version=1"
    assert found.ready_address == 0x1000 and found.stream.read_bytes() == b"QEVM..."
    assert not list(tmp_path.glob("*.tmp")), "the temporary stream was moved into place"
    meta = json.loads((tmp_path / "k.json").read_text())
    assert meta["key"] == "k" and meta["stream_size"] == 7
    assert meta["stream_sha256"] == hashlib.sha256(b"QEVM...").hexdigest()
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {0o600}


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


@pytest.mark.parametrize("garbage", [b"{not json", b"", b"\xff\xfe\x00", b"[]", b'{"format": 2}',
                                     b'{"format": 2, "key": "k", "ready_line": 1}'])
def test_unreadable_metadata_is_a_bad_state_naming_the_file(tmp_path, garbage):
    store = StateStore(tmp_path)
    publish(store, "k")
    (tmp_path / "k.json").write_bytes(garbage)
    with pytest.raises(BadState, match=r"k\.json is unreadable"):
        store.find("k")


@pytest.mark.parametrize("damage", ["truncated", "emptied", "bit-flipped"])
def test_a_damaged_stream_is_a_bad_state(tmp_path, damage):
    """Checked against the size and SHA-256 in its metadata, before QEMU sees it: a flipped
    bit in guest RAM would load without complaint."""
    store = StateStore(tmp_path)
    publish(store, "k", stream=bytes(range(256)) * 64)
    stream = tmp_path / "k.state"
    data = bytearray(stream.read_bytes())
    if damage == "truncated":
        data = data[:4096]
    elif damage == "emptied":
        data = b""
    else:
        data[5000] ^= 0x10
    stream.write_bytes(data)
    with pytest.raises(BadState, match=r"k\.state (is \d+ bytes, not the 16384 saved|does not match its SHA-256)"):
        store.find("k")


def test_metadata_of_another_key_is_a_bad_state(tmp_path):
    """A state copied (or renamed) to another key's name is not that key's."""
    store = StateStore(tmp_path)
    publish(store, "k")
    for suffix in ("state", "json"):
        os.rename(tmp_path / f"k.{suffix}", tmp_path / f"other.{suffix}")
    with pytest.raises(BadState, match="of another build"):
        store.find("other")


@pytest.mark.parametrize("name", ["k.json", "k.state"])
def test_a_linked_state_file_is_not_followed(tmp_path, name):
    store = StateStore(tmp_path / "states")
    publish(store, "k")
    target = tmp_path / "elsewhere"
    target.write_bytes((tmp_path / "states" / name).read_bytes())
    (tmp_path / "states" / name).unlink()
    (tmp_path / "states" / name).symlink_to(target)
    with pytest.raises(BadState, match="symbolic link"):
        store.find("k")
    store.discard("k")
    assert target.exists() and not (tmp_path / "states" / name).is_symlink()


def test_discard_only_the_state_that_failed(tmp_path):
    """A run that saw a state fail removes it, not one another run has made since."""
    store = StateStore(tmp_path)
    failed = publish(store, "k")
    publish(store, "k", stream=b"QEVM, made again")
    store.discard("k", only=failed)
    assert store.find("k").stream.read_bytes() == b"QEVM, made again"
    store.discard("k", only=store.find("k"))
    assert store.find("k") is None


def test_a_planted_lock_link_is_removed_not_truncated(tmp_path, capsys):
    store = StateStore(tmp_path / "states")
    store.prepare()
    target = tmp_path / "precious"
    target.write_text("keep me")
    (tmp_path / "states" / "k.lock").symlink_to(target)
    with store.lock("k", 5):
        pass
    assert target.read_text() == "keep me"
    assert not (tmp_path / "states" / "k.lock").is_symlink()
    assert capsys.readouterr().err.count("lab: warning: removed") == 1


def test_planted_temporary_links_are_not_written_through(tmp_path):
    """The temporaries' old fixed names (KEY.state.PID.tmp, KEY.json.tmp) as links: the new
    ones are created exclusively, under random names, and the links' targets stay as they were."""
    store = StateStore(tmp_path / "states")
    store.prepare()
    target = tmp_path / "precious"
    target.write_text("keep me")
    for name in (f"k.state.{os.getpid()}.tmp", "k.json.tmp", f"k.state.{owner_tag()}.tmp"):
        (tmp_path / "states" / name).symlink_to(target)
    a, b = store.temp_stream("k"), store.temp_stream("k")
    assert a != b and not a.is_symlink() and stat.S_IMODE(a.stat().st_mode) == 0o600
    b.unlink()
    a.write_bytes(b"QEVM")
    store.publish("k", a, {"ready_line": "r", "ready_address": 1, "serial": "", "qemu_version": "7"})
    assert target.read_text() == "keep me"
    assert store.find("k").stream.read_bytes() == b"QEVM"


def test_the_state_dir_is_made_private(tmp_path):
    root = tmp_path / "cache" / "states"
    StateStore(root).prepare()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode, who", [(0o777, "its group and others"), (0o770, "its group"), (0o703, "others")])
def test_a_state_dir_others_can_write_is_refused(tmp_path, mode, who):
    root = tmp_path / "states"
    root.mkdir()
    root.chmod(mode)
    with pytest.raises(UserError, match=rf"writable by {who} \(mode 0{mode:o}\).*chmod 700"):
        StateStore(root).prepare()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_state_dir_of_another_user_is_refused(tmp_path):
    root = tmp_path / "states"
    root.mkdir(mode=0o700)
    os.chown(root, 4242, 4242)
    with pytest.raises(UserError, match="belongs to uid 4242, not to you"):
        StateStore(root).prepare()


def test_a_state_dir_that_cannot_be_made_is_unusable(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StateDirUnusable, match="Not a directory"):
        StateStore(tmp_path / "file" / "states").prepare()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", ""])
    p.wait()
    return p.pid


def test_leftover_temporaries_of_ended_runs_are_swept(tmp_path):
    root = tmp_path / "states"
    root.mkdir(mode=0o700)
    dead = _dead_pid()
    me, my_start = owner_tag().split("-")
    gone = [f"k.state.{dead}-123.abc_12.tmp", f"k.json.{dead}-123.xyz.tmp", f"k.state.{dead}.tmp",
            f"k.state.{me}-1.reused.tmp"]  # the same pid, another start time: pid reuse
    kept = [f"k.state.{me}-{my_start}.mine.tmp", f"k.state.{os.getpid()}.tmp", "k.state", "k.json",
            "notes.txt", f"k.state.{dead}-123.tmp.bak"]
    for name in gone + kept:
        (root / name).write_text("x")
    (root / f"link.state.{dead}.tmp").symlink_to(root / "notes.txt")
    StateStore(root).prepare()
    assert sorted(p.name for p in root.iterdir()) == sorted(kept + [f"link.state.{dead}.tmp"])


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
