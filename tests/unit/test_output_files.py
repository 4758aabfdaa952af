"""Report files (`lab report -o`, `--html`) are written whole or not at all, and only a new
path or an existing regular file is ever replaced: never a device, a fifo, a directory or a
symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.present.html.page import check_target, write


def make(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / "out.html"
    if kind == "regular":
        p.write_text("old")
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "dir":
        p.mkdir()
    elif kind == "symlink":
        (tmp_path / "target").write_text("keep me")
        p.symlink_to(tmp_path / "target")
    return p


@pytest.mark.parametrize("kind", ["new", "regular"])
def test_a_new_path_or_a_regular_file_takes_the_report(tmp_path, kind):
    p = make(tmp_path, kind)
    write(p, [("run", {})], "t")
    assert p.read_text().startswith("<!DOCTYPE html>")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.html"]


@pytest.mark.parametrize("kind, reason", [("fifo", "a fifo"), ("dir", "a directory"),
                                          ("symlink", "a symlink")])
def test_anything_else_is_refused_and_left_alone(tmp_path, kind, reason):
    p = make(tmp_path, kind)
    before = sorted(x.name for x in tmp_path.iterdir())
    with pytest.raises(OSError) as exc:
        write(p, [("run", {})], "t")
    assert reason in exc.value.strerror
    assert sorted(x.name for x in tmp_path.iterdir()) == before
    if kind == "symlink":
        assert p.is_symlink() and (tmp_path / "target").read_text() == "keep me"


@pytest.mark.parametrize("path, reason", [("/dev/null", "a device"), ("/", "a directory"),
                                          ("/no/such/dir/r.html", "no such directory")])
def test_system_paths_are_refused(path, reason):
    with pytest.raises(OSError) as exc:
        check_target(Path(path))
    assert reason in exc.value.strerror


def test_a_failed_write_leaves_no_temporary(tmp_path, monkeypatch):
    """The file write fails after the temporary exists (the page is not text): nothing stays."""
    import lab.present.html.page as page

    monkeypatch.setattr(page, "render", lambda runs, title: 12345)
    p = tmp_path / "out.html"
    with pytest.raises(TypeError):
        write(p, [("run", {})], "t")
    assert list(tmp_path.iterdir()) == []
