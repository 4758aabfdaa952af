"""`--display`: a framebuffer for kernels that want one, headless on the host either way, and the
guest's screen (QMP screendump, PNG) in the inspect JSON and the HTML report. Control: with no
display (the default) the guest has no VGA and the report no screen."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest

from labtest import lab_cli
from tinykernels import STOP, TinySpec, tiny_kernel


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    return tiny_kernel(tmp_path_factory.mktemp("display"), "tiny", TinySpec())


def png_facts(png: bytes) -> tuple[int, int, int]:
    """(width, height, how many distinct byte values the image data holds)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, size = 8, b"", None
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        body = png[at + 8:at + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    assert size is not None
    return size[0], size[1], len(set(zlib.decompress(idat)))


@pytest.mark.parametrize("display, size", [("std", (720, 400)), ("bochs", None)])
def test_a_display_puts_the_guest_screen_in_the_report(kernel, tmp_path, display, size):
    out, page = tmp_path / "i.json", tmp_path / "i.html"
    r = lab_cli("inspect", "--kernel", str(kernel), "--at", STOP, "--display", display,
                "--json", "--html", str(page))
    assert r.returncode == 0, r.stderr
    out.write_text(r.stdout)
    png = base64.b64decode(json.loads(r.stdout)["screen"]["png_base64"])
    width, height, values = png_facts(png)
    if size is not None:  # VGA text mode: 80x25 cells of 9x16 pixels, SeaBIOS's banner on it
        assert (width, height) == size and values > 2
    else:
        assert width >= 640 and height >= 480
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page.read_text()


def test_headless_by_default(kernel, tmp_path):
    page = tmp_path / "i.html"
    r = lab_cli("inspect", "--kernel", str(kernel), "--at", STOP, "--json", "--html", str(page))
    assert r.returncode == 0, r.stderr
    assert "screen" not in json.loads(r.stdout)
    assert "guest screen" not in page.read_text()


def test_an_unknown_display_is_one_line(kernel):
    r = lab_cli("inspect", "--kernel", str(kernel), "--at", STOP, "--display", "svga")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "invalid choice: 'svga'" in r.stderr
