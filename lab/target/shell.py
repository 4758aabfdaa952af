"""The lab kernel's shell replies: one line of `key=value` fields after a fixed prefix
(kernel/CONTRACT.md, "Shell"), e.g. `measure ms=300 ticks=30 tsc_cycles=... tsc_hz=...`.
One parser serves every experiment that talks to the shell."""

from __future__ import annotations

import re

from lab.errors import GuestError

_FIELD = re.compile(r"(\w+)=(\S+)")
_NUMBER = re.compile(r"-?(?:0x[0-9a-fA-F]+|\d+)")


def fields(line: str, prefix: str | None = None) -> dict[str, str]:
    """Every `key=value` of a reply, as text; with `prefix`, the line must start with it."""
    if prefix is not None and not line.startswith(prefix):
        raise GuestError(f"expected a '{prefix}' line from the kernel, got {line!r}")
    return dict(_FIELD.findall(line))


def numbers(line: str, prefix: str | None = None) -> dict[str, int]:
    """The fields of a reply whose values are numbers (decimal or 0x hex), as integers."""
    return {k: int(v, 0) for k, v in fields(line, prefix).items() if _NUMBER.fullmatch(v)}


def cpus_reply(text: str) -> dict[int, dict[str, int]]:
    """The `cpus` reply (kernel/src/smp/ipi.rs `list`): each CPU's line of numbers, by index."""
    rows = (numbers(line, "cpu") for line in text.splitlines() if line.startswith("cpu index="))
    return {r["index"]: r for r in rows}
