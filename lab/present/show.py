"""What each command prints for its result (the CLI's output without --json), built from the
tables in render.py."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.checks.claims import REFUTED, UNMEASURED
from lab.present.render import (checks_table, frame_table, pcpu_table, print_fire, print_fire_summary,
                                print_injections, print_probes, print_report, print_tasks,
                                print_translation)

CLAIM_STYLE = {"holds": "green", "holds only under a condition": "yellow", REFUTED: "bold red",
               UNMEASURED: "dim"}
#: `lab claims` piped: its evidence column is wide.
CLAIMS_PIPED_WIDTH = 170


def inspect(report, console: Console) -> None:
    print_report(report, console)


def timer(r, console: Console) -> None:
    console.print(checks_table(r.checks, title=f"lab timer ({r.profile})"))


def tasks(r, console: Console) -> None:
    print_tasks(r.observation, console)
    console.print(checks_table(r.checks, title="checks"))


def ring3(r, console: Console) -> None:
    outcomes = r.extra["outcomes"]
    console.print(checks_table(r.checks, title=f"lab ring3: syscall path, ring-3 interrupt and faults ({r.profile})"))
    console.print("user faults: " + ", ".join(f"{p} {o}" for p, o in outcomes.items()) +
                  f"; syscall check sequence {r.observation.seconds['syscall_sequence'] * 1000:.0f} ms")


def pcpu(r, console: Console) -> None:
    o = r.observation
    console.print(pcpu_table(o.percpu_symbol if o.percpu_symbol is not None else o.gs_base, o.fields, o.gs_base))
    console.print(checks_table(r.checks))


def frame(r, console: Console) -> None:
    console.print(frame_table(r.frame))


def translate(r, console: Console) -> None:
    for t in r.translations:
        print_translation(t, console)


def probes(r, console: Console) -> None:
    print_probes([(x.probe, x.observation, x.checks, x.verdict) for x in r.results], console)


def fires(r, console: Console, *, panels: bool = False) -> None:
    results = r.results
    for x in results:
        if len(results) == 1 or panels or x.outcome == "FAIL":
            print_fire(x, r.symbols, console)
    if len(results) > 1:
        print_fire_summary(results, console)
    by_reason: dict[str, list[str]] = {}
    for name, why in getattr(r, "not_run", {}).items():
        by_reason.setdefault(why, []).append(name)
    for why, names in by_reason.items():
        console.print(f"not run: {', '.join(names)}: {escape(why)}")


def injections(r, console: Console) -> None:
    print_injections(r.results, console, r.stop)


def claims_table(results: list[dict], profile: str) -> Table:
    t = Table(title=f"lab claims: measured on {profile}", title_justify="left", show_lines=True)
    for col in ("claim", "verdict", "evidence"):
        t.add_column(col, overflow="fold")
    for c in results:
        t.add_row(f"[bold]{c['id']}[/] ({c['topic']})\n{escape(c['statement'])}",
                  f"[{CLAIM_STYLE[c['verdict']]}]{c['verdict']}[/]", escape("\n".join(c["evidence"])))
    return t


def claims(r, console: Console) -> None:
    console.print(claims_table(r.claims, getattr(r, "measured_on", "") or r.profile))
    counts = {v: sum(1 for c in r.claims if c["verdict"] == v) for v in CLAIM_STYLE}
    console.print(", ".join(f"{n} {v}" for v, n in counts.items()))


def scenarios_listing(catalog) -> list[str]:
    return [f"{s.name:16} {s.vector:>3}  {s.summary}" + (f"  [TCG: {s.tcg.note}]" if s.tcg else "")
            for s in catalog]


def probes_listing(catalog) -> list[str]:
    return [f"{p.name:18} {p.expected:22} {p.summary}" for p in catalog]


def profiles_listing(profiles) -> list[str]:
    return [f"{p.name:8} {p.description}" for p in profiles]
