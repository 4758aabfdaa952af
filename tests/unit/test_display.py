"""The display option without QEMU: a profile's `display` key, the QEMU arguments of each
display, and the report's screen, which puts only base64 of a PNG in the page."""

from __future__ import annotations

import base64

import pytest

from lab.errors import UserError
from lab.host import profiles
from lab.present.html.page import screen

PNG = b"\x89PNG\r\n\x1a\n" + bytes(20)


@pytest.mark.parametrize("display, args", [
    ("none", ["-vga", "none"]),
    ("std", ["-vga", "std"]),
    ("bochs", ["-vga", "none", "-device", "bochs-display"]),
])
def test_each_display_is_its_qemu_arguments(display, args):
    assert profiles.load("tcg").with_display(display).display_args == args


def test_headless_is_the_default_and_none_keeps_the_profiles():
    p = profiles.load("tcg")
    assert p.display == "none" and p.with_display(None) is p


def test_a_profile_key(tmp_path):
    f = tmp_path / "fb.toml"
    f.write_text('description = "x"\nmachine = "pc"\naccel = "tcg"\ncpu = "qemu64"\nmemory = "128M"\n'
                 'display = "std"\n')
    assert profiles.load(str(f)).display == "std"
    f.write_text(f.read_text().replace('"std"', '"cga"'))
    with pytest.raises(UserError, match="unknown display 'cga'; choose one of: none, std, bochs"):
        profiles.load(str(f))


def test_the_screen_is_an_inline_png():
    data = base64.b64encode(PNG).decode()
    html = screen({"screen": {"png_base64": data}})
    assert f'src="data:image/png;base64,{data}"' in html and "guest screen" in html


@pytest.mark.parametrize("value", [
    base64.b64encode(b"GIF89a" + bytes(10)).decode(),       # not a PNG
    base64.b64encode(PNG).decode() + '"><script>x</script>',  # not base64
])
def test_anything_else_is_not_shown(value):
    html = screen({"screen": {"png_base64": value}})
    assert "not a PNG" in html and "<img" not in html and "<script>" not in html


@pytest.mark.parametrize("doc", [{}, {"screen": None}, {"screen": "x"}, {"screen": {"png_base64": 5}}])
def test_no_screen_no_section(doc):
    assert screen(doc) == ""
