"""The catalog of experiments, as data: what fires each one, and what the manuals say must
be observed."""

from __future__ import annotations

from typing import Iterable, TypeVar

from lab.errors import UserError

T = TypeVar("T")


def by_name(table: dict[str, T], name: str, what: str, listing: str) -> T:
    """`table[name]`, or a one-line UserError naming `what` and listing the names."""
    try:
        return table[name]
    except KeyError:
        raise UserError(f"unknown {what} {name!r}; {listing}: {', '.join(table)}") from None


def kvm_excluded(item, accel: str, host: dict[str, str] | None = None,
                 observer: str = "gdb") -> str | None:
    """Why `item` (a scenario or a probe, or a (scenario, style) pair) is not run under
    `accel`, None when it runs: on KVM, `host` (scenario or probe name -> reason, measured on
    this host without gdb by lab/experiments/kvm_probe.py) first, then, under the gdb observer,
    what is recorded for a scenario with gdb attached (`kvm_gdb_unsupported`)."""
    if accel != "kvm":
        return None
    scenario = item[0] if isinstance(item, tuple) else item
    if host and scenario.name in host:
        return host[scenario.name]
    if observer == "gdb":
        return getattr(scenario, "kvm_gdb_unsupported", None)
    return None


def runnable(items: Iterable[T], accel: str, host: dict[str, str] | None = None,
             observer: str = "gdb") -> list[T]:
    """`items` without those this accelerator cannot run here (`kvm_excluded`)."""
    return [i for i in items if not kvm_excluded(i, accel, host, observer)]
