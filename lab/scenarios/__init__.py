"""The catalog of experiments, as data: what fires each one, and what the manuals say must
be observed."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def by_name(table: dict[str, T], name: str, what: str, listing: str) -> T:
    """`table[name]`, or a one-line UserError naming `what` and listing the names."""
    from lab.errors import UserError

    try:
        return table[name]
    except KeyError:
        raise UserError(f"unknown {what} {name!r}; {listing}: {', '.join(table)}") from None
