"""The matrix's printing: the QEMUs found (`lab qemus`) and the fidelity table (`lab matrix`):
one row per scenario, one column per backend, each cell a verdict, with what a deviating
backend delivered, its upstream cause and fix below the table. Markdown for the README."""

from __future__ import annotations


def qemus_listing(qemus) -> list[str]:
    rows = [("NAME", "VERSION", "MIGRATION", "BINARY")]
    for q in qemus:
        rows.append((q.name, q.version_str + (f" ({q.package})" if q.package else ""),
                     "file:" if q.file_migration else "fd:", str(q.binary)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [f"{r[0]:{widths[0]}}  {r[1]:{widths[1]}}  {r[2]:{widths[2]}}  {r[3]}" for r in rows]
