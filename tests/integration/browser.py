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


class _Bytes:
    """Byte-wise addition modulo 256 of whole rows at once, on Python integers (SWAR): the
    PNG filters Sub and Up without a loop over bytes."""

    def __init__(self, n: int) -> None:
        self.n, self.mask = n, (1 << 8 * n) - 1
        self.high = int.from_bytes(b"\x80" * n, "little")
        self.low = int.from_bytes(b"\x7f" * n, "little")

    def add(self, a: int, b: int) -> int:
        return ((a & self.low) + (b & self.low)) ^ ((a ^ b) & self.high)

    def prefix(self, x: int, step: int) -> int:
        """Each byte plus every byte `step`, 2*`step`, ... before it (the Sub filter)."""
        shift = step
        while shift < self.n:
            x = self.add(x, (x << 8 * shift) & self.mask)
            shift *= 2
        return x


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
    ops = _Bytes(stride)
    rows, prev = [], bytes(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        if f == 0:
            out = bytes(line)
        elif f in (1, 2):
            x = int.from_bytes(line, "little")
            x = ops.prefix(x, channels) if f == 1 else ops.add(x, int.from_bytes(prev, "little"))
            out = x.to_bytes(stride, "little")
        else:  # Average, Paeth: each byte needs the one just decoded
            buf = bytearray(line)
            for i in range(stride):
                a = buf[i - channels] if i >= channels else 0
                b, c = prev[i], prev[i - channels] if i >= channels else 0
                buf[i] = (buf[i] + ((a + b) >> 1 if f == 3 else _paeth(a, b, c))) & 0xFF
            out = bytes(buf)
        rows.append(out)
        prev = out
    return width, height, channels, rows


def pixel_stats(path: Path) -> dict:
    """How much of the page is not its background: the share of pixels that differ from the
    top-left one, the number of distinct colours, and the grey level's variance."""
    width, height, channels, rows = decode_png(path)
    background = rows[0][:channels]
    differ, colours, total, s, s2 = 0, set(), 0, 0, 0
    for row in rows[::4]:  # a sample: every 4th pixel of every 4th row
        for x in range(0, width * channels, channels * 4):
            px = row[x:x + channels]
            colours.add(px)
            differ += px[:3] != background[:3]
            grey = sum(px[:3]) // max(1, min(3, channels))
            total, s, s2 = total + 1, s + grey, s2 + grey * grey
    mean = s / total
    return {"width": width, "height": height, "drawn": differ / total, "colours": len(colours),
            "variance": s2 / total - mean * mean}
