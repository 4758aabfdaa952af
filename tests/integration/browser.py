"""Debian's chromium, headless, as the tests' browser: a page rendered to a PNG screenshot,
and that PNG decoded (zlib and the PNG filters, RFC 2083 / PNG spec §9) to tell a blank page
from a drawn one. Imported by name (tests/ has no packages)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

#: Everything that could reach the network or a profile is off; a fresh profile per run.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        raise AssertionError("no chromium: run lab/setup.sh (Debian package chromium)")
    return exe


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 1600, timeout: float = 60) -> None:
    with tempfile.TemporaryDirectory(prefix="lab-chromium-") as profile:
        r = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                            f"--screenshot={png}", f"--window-size={width},{height}", html.resolve().as_uri()],
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and png.is_file(), r.stderr[-2000:]


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def decode_png(path: Path) -> tuple[int, int, int, list[bytes]]:
    """(width, height, channels, rows of unfiltered bytes) of an 8-bit, non-interlaced
    greyscale/RGB/RGBA PNG (what chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0, f"{path}: depth {depth}, interlace {interlace}"
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytes(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            line[i] = (line[i] + (0, a, b, (a + b) // 2, _paeth(a, b, c))[f]) & 0xFF
        rows.append(bytes(line))
        prev = rows[-1]
    return width, height, channels, rows


def pixel_stats(path: Path) -> dict:
    """How much of the page is not its background: the share of pixels that differ from the
    top-left one, the number of distinct colours, and the grey level's variance."""
    width, height, channels, rows = decode_png(path)
    background = rows[0][:channels]
    differ, colours, total, s, s2 = 0, set(), 0, 0, 0
    for row in rows[::2]:
        for x in range(0, width * channels, channels * 2):
            px = row[x:x + channels]
            colours.add(px)
            differ += px[:3] != background[:3]
            grey = sum(px[:3]) // max(1, min(3, channels))
            total, s, s2 = total + 1, s + grey, s2 + grey * grey
    mean = s / total
    return {"width": width, "height": height, "drawn": differ / total, "colours": len(colours),
            "variance": s2 / total - mean * mean}
