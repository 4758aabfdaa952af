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


def kvm_excluded(item, accel: str) -> str | None:
    """Why `item` (a scenario or a probe, or a (scenario, style) pair) is not run under
    `accel`: its recorded reason on KVM, None when it runs."""
    scenario = item[0] if isinstance(item, tuple) else item
    return scenario.kvm_unsupported if accel == "kvm" else None


def runnable(items: Iterable[T], accel: str) -> list[T]:
    """`items` without those this accelerator is known not to run (`kvm_excluded`)."""
    return [i for i in items if not kvm_excluded(i, accel)]
