"""What each command prints for its result (the CLI's output without --json), built from the
tables in render.py."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.checks.base import Verdict
from lab.checks.claim_evidence import REFUTED, UNMEASURED  # the verdicts alone: not the judges
from lab.present.compact import probe_rows, profile_rows, scenario_rows  # noqa: F401 (the CLI's)
from lab.present.render import (OUTCOME_STYLE, checks_table, frame_table, pcpu_table, print_fire,
                                print_injections, print_probes, print_report, print_tasks,
                                print_translation)

CLAIM_STYLE = {"holds": "green", "holds only under a condition": "yellow", REFUTED: "bold red",
               UNMEASURED: "dim"}
CONDITIONAL = "holds only under a condition"


def inspect(report, console: Console, *, vectors: set[int] | None = None) -> None:
    print_report(report, console, vectors=vectors)


def timer(r, console: Console) -> None:
    windows = getattr(r.observation, "windows", None)
    if windows:
        t = Table(title=f"each CPU's own local APIC timer ({r.profile})")
        for col in ("window", "CPU", "rate Hz", "ticks", "by the TSC /s", "ms"):
            t.add_column(col, justify="right")
        for i, w in enumerate(windows, 1):
            for a in w.rates:
                t.add_row(str(i), str(a.cpu), str(a.configured_hz), str(a.ticks), f"{a.guest_rate:.1f}",
                          f"{a.tsc_cycles * 1000 / a.tsc_hz:.1f}")
        console.print(t)
    console.print(checks_table(r.checks, title=f"lab timer ({r.profile})"))


def tasks(r, console: Console) -> None:
    print_tasks(r.observation, console)
    console.print(checks_table(r.checks, title="checks"))


def cpu_switch(r, console: Console) -> None:
    from lab.present.cpu_switch import print_cpu_switch

    print_cpu_switch(r.observation, console)
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


def fire_line(x) -> str:
    """One scenario in one line: outcome, name, vector, style, time, what failed."""
    o = x.observation
    failed = [c.id for c in x.checks if c.verdict is Verdict.FAIL]
    gate = f"IST{o.gate['ist']}" if o.gate.get("ist") else ""
    return (f"[{OUTCOME_STYLE[x.outcome]}]{x.outcome:9}[/] {escape(x.scenario.name):16} {o.vector:>3} "
            f"{o.style:13} {x.seconds * 1000:5.0f} ms {gate:4} "
            + (f"failed: {escape(', '.join(failed))}" if failed else escape(x.scenario.summary)))


#: The header of fire_line's columns, at the same widths.
FIRE_HEADER = f"[bold]{'outcome':9} {'scenario':16} {'vec':>3} {'style':13} {'time':>8} {'gate':4} what[/]"


def fires(r, console: Console, *, panels: bool = False) -> None:
    """One line per scenario (--panels: every stack and checks panel; a failure's panel
    always), then the counts."""
    results = r.results
    for x in results:
        if panels or x.outcome == "FAIL":
            print_fire(x, r.symbols, console)
    if results:
        console.print(FIRE_HEADER, no_wrap=True, overflow="ellipsis")
    for x in results:
        console.print(fire_line(x), no_wrap=True, overflow="ellipsis")
    counts = {k: sum(1 for x in results if x.outcome == k) for k in ("PASS", "FAIL", "DEVIATION", "STALE")}
    console.print(" ".join(f"[{OUTCOME_STYLE[k]}]{n} {k}[/]" for k, n in counts.items()))
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


def claims(r, console: Console, *, every: bool = False) -> None:
    """The counts, then the refuted, conditional and unmeasured claims (`every`: all of them)."""
    on = getattr(r, "measured_on", "") or r.profile
    shown = r.claims if every else [c for c in r.claims if c["verdict"] in (REFUTED, CONDITIONAL, UNMEASURED)]
    if shown:
        console.print(claims_table(shown, on))
    counts = {v: sum(1 for c in r.claims if c["verdict"] == v) for v in CLAIM_STYLE}
    console.print(f"lab claims on {on}: " + ", ".join(f"[{CLAIM_STYLE[v]}]{n} {v}[/]" for v, n in counts.items()))
    if not every:
        console.print("[dim](--all prints every claim with its evidence)[/]")


def _cell(value, key: str) -> str:
    if isinstance(value, list):
        return (" -> " if key == "chain" else "\n").join(value)
    return "" if value is None else str(value)


def listing_table(rows: list[dict], title: str) -> Table:
    """A catalog's rows (compact.py) as a table that folds to the console's width."""
    t = Table(title=title, title_justify="left")
    keys = [k for k in rows[0] if any(r[k] not in (None, "", []) for r in rows)] if rows else []
    for k in keys:
        t.add_column(k, overflow="fold")
    for r in rows:
        t.add_row(*(escape(_cell(r[k], k)) for k in keys))
    return t
