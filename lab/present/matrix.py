"""The matrix's printing: the QEMUs found (`lab qemus`) and the fidelity table (`lab matrix`):
one row per scenario, one column per backend, each cell a verdict, with what a deviating
backend delivered, its upstream cause and fix below the table. Markdown for docs/reference/matrix.md."""

from __future__ import annotations


def qemus_listing(qemus) -> list[str]:
    rows = [("NAME", "VERSION", "MIGRATION", "BINARY")]
    for q in qemus:
        rows.append((q.name, q.version_str + (f" ({q.package})" if q.package else ""),
                     "file:" if q.file_migration else "fd:", str(q.binary)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [f"{r[0]:{widths[0]}}  {r[1]:{widths[1]}}  {r[2]:{widths[2]}}  {r[3]}" for r in rows]


def show_qemus(result, console) -> None:
    """A table that folds to the console's width (the binaries' paths are long)."""
    from rich.markup import escape
    from rich.table import Table

    if not result.qemus:
        console.print("no QEMU found; run the set-up: bash lab/setup.sh")
        return
    t = Table(title="QEMUs (--qemu NAME)", title_justify="left")
    for col in ("name", "version", "migration", "binary"):
        t.add_column(col, overflow="fold")
    for q in result.qemus:
        t.add_row(escape(q.name), escape(q.version_str + (f" ({q.package})" if q.package else "")),
                  "file:" if q.file_migration else "fd:", escape(str(q.binary)))
    console.print(t)


STYLE = {"PASS": "green", "FAIL": "bold red", "DEVIATION": "yellow", "STALE": "bold magenta",
         "SKIP": "dim", "holds": "green", "holds only under a condition": "cyan", "refuted": "red",
         "not measured": "dim"}
KIND_TITLE = {"fire": "exceptions (lab fire, both styles)", "probe": "fatal-path probes (lab probe)",
              "claim": "claims (lab claims)"}


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    return row["outcome"] + (f" {row['observed']}" if row.get("observed") else "")


def table_rows(result) -> list[tuple[str, str, list[dict | None]]]:
    """(kind, row label, one row per backend or None) in catalog order; a scenario whose two
    styles give the same cell on every backend is one row."""
    names = [b["backend"] for b in result.backends]
    order: dict[tuple[str, str], list] = {}
    for i, b in enumerate(result.backends):
        for r in b["rows"]:
            order.setdefault((r["kind"], r["id"]), [None] * len(names))[i] = r
    out, done = [], set()
    for (kind, ident), cells in order.items():
        if (kind, ident) in done:
            continue
        if kind == "fire" and ident.endswith(" x86-interrupt"):
            name = ident.rsplit(" ", 1)[0]
            twin = order.get((kind, f"{name} stub"))
            if twin is not None and [_cell(c) for c in cells] == [_cell(c) for c in twin]:
                done.add((kind, f"{name} stub"))
                out.append((kind, name, cells))
                continue
        out.append((kind, ident, cells))
    return out


def notes(result) -> list[str]:
    """One line per deviating cell: backend, row, what the note says (cause and fix)."""
    lines = []
    for b in result.backends:
        for r in b["rows"]:
            if r["outcome"] in ("DEVIATION", "STALE", "FAIL") and r["kind"] == "fire" and r.get("note"):
                if r["id"].endswith(" stub") and any(x["id"] == r["id"].replace(" stub", " x86-interrupt")
                                                     and x["note"] == r["note"] for x in b["rows"]):
                    continue  # the same as its x86-interrupt twin
                lines.append(f"{b['backend']} {r['id'].removesuffix(' x86-interrupt')}: {r['note']}")
    return lines


def footer(result) -> list[str]:
    lines = []
    for b in result.backends:
        counts = {}
        for r in b["rows"]:
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        lines.append(f"{b['backend']}: " + ", ".join(f"{n} {o}" for o, n in counts.items()) +
                     f" in {b.get('seconds', 0):.1f} s")
        lines += [f"  error ({e['part']}): {e['message'].splitlines()[0][:200]}" for e in b.get("errors", [])]
    lines += [f"{u['backend']}: not run: {u['why']}" for u in result.unavailable]
    lines += [f"{m}: missing (a shard not merged)" for m in result.missing]
    return lines


def show(result, console) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    names = [b["backend"] for b in result.backends]
    rows = table_rows(result)
    for kind in ("fire", "probe", "claim"):
        t = Table(title=f"lab matrix: {KIND_TITLE[kind]}", title_justify="left")
        t.add_column("", no_wrap=True)
        for n in names:
            t.add_column(n, overflow="fold")
        for k, label, cells in rows:
            if k == kind:
                t.add_row(label.replace(" ", "\n"), *(Text(_cell(c).replace(" #", "\n#").replace(" CR2=", "\nCR2=")
                                        .replace(" no exception", "\nno exception"),
                                        style=STYLE.get(c["outcome"], "")) if c else "-" for c in cells))
        if t.row_count:
            console.print(t)
    for line in notes(result):
        console.print(escape(line), soft_wrap=False)
    for line in footer(result):
        console.print(escape(line))


def markdown(result) -> str:
    """The fire rows as a Markdown table with the notes below (docs/reference/matrix.md)."""
    names = [b["backend"] for b in result.backends]
    out = ["| scenario | " + " | ".join(f"{n.split('/')[0].upper()} QEMU {n.split('/')[1]}" for n in names) + " |",
           "|---|" + "---|" * len(names)]
    for kind, label, cells in table_rows(result):
        if kind == "fire":
            out.append(f"| {label} | " + " | ".join(_cell(c).replace("|", "\\|") for c in cells) + " |")
    recorded = {}
    for b in result.backends:
        for r in b["rows"]:
            for d in r.get("recorded", []):
                recorded.setdefault((d["summary"], d["cause"], d["range"], d["fixed_in"]), set()).add(
                    r["id"].split(" ")[0])
    out += ["", "| scenarios | deviation | upstream cause | recorded for | fixed in |", "|---|---|---|---|---|"]
    for (summary, cause, rng, fixed), scen in recorded.items():
        out.append(f"| {', '.join(sorted(scen))} | {summary} | `{cause}` | {rng} | {fixed} |")
    return "\n".join(out) + "\n"
