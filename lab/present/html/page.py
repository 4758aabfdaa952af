"""The report document: one self-contained HTML file (inline CSS and SVG, no script, nothing
fetched), one section per run. A run is the JSON its command prints with --json (its result's
`to_json()`), recognised by its shape (`kind_of`), or an envelope `{"kind": K, "result": R}`.

Kinds: inspect, fire, fire-agnostic, probe, timer, tasks, frame, translate, claims, matrix; any other
JSON with `checks` is shown as its checks."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from html import escape
from pathlib import Path

from lab.errors import UserError
from lab.present.html.charts import fatal_timeline, interval_histogram, matrix, page_walk
from lab.present.html.stack import frame_picture, stack_picture
from lab.present.html.tables import gdt_tss_picture, idt_map

CSS = """
body { font-family: system-ui, 'DejaVu Sans', sans-serif; margin: 1.5em; color: #111; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
svg { max-width: 100%; height: auto; display: block; margin: .4em 0 1em; }
table { border-collapse: collapse; font-size: .85em; margin: .4em 0 1em; }
td, th { border: 1px solid #ccc; padding: .2em .5em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; } code, .mono { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; }
.PASS { background: #c7e9c0; } .FAIL { background: #fcbba1; } .WARN { background: #fdd0a2; }
.changed { background: #fff3b0; }
.INFO { background: #deebf7; } .SKIP, .WAIVED { background: #eee; } .DEVIATION { background: #fdd0a2; }
.summary { font-size: 1.05em; margin: .3em 0; } .note { color: #555; }
details > summary { cursor: pointer; color: #333; }
"""

CLAIM_CLASS = {"holds": "PASS", "holds only under a condition": "WARN", "refuted": "FAIL"}


def kind_of(data) -> str:
    """What produced `data`, from its shape (see the module docstring)."""
    if isinstance(data, dict):
        if "kind" in data and "result" in data:
            return data["kind"]
        if {"columns", "rows", "cells"} <= data.keys():
            return "matrix"
        if "format" in data and "backends" in data:
            return "lab-matrix"
        if "idt" in data and "gdt" in data:
            return "inspect"
        if "results" in data and "stop" in data:
            return "fire-agnostic"
        if "slots" in data and "vectors" in data:
            return "frame"
        obs = data.get("observation")
        obs = obs if isinstance(obs, dict) else {}
        if "rates" in obs and "gates" in obs:
            return "timer"
        if "tasks" in obs and "traces" in obs:
            return "tasks"
        if "steps" in obs and "cpu" in obs:
            return "cpu-switch"
        return "checks" if "checks" in data else "unknown"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        first = data[0]
        for key, kind in (("scenario", "fire"), ("probe", "probe"), ("statement", "claims")):
            if key in first:
                return kind
        if "va" in first and "steps" in first:
            return "translate"
    return "unknown"


def payload(data):
    return data["result"] if isinstance(data, dict) and "kind" in data and "result" in data else data


def checks_table(checks: list[dict]) -> str:
    rows = "".join(
        f'<tr class="{escape(c["verdict"])}"><td>{escape(c["verdict"])}</td><td>{escape(c.get("tier", ""))}</td>'
        f'<td><code>{escape(c["id"])}</code><br>{escape(c.get("title", ""))}</td>'
        f'<td>{"<br>".join(escape(e) for e in c.get("evidence", []))}</td></tr>' for c in checks)
    return f"<table class=checks><tr><th>verdict</th><th>tier</th><th>check</th><th>evidence</th></tr>{rows}</table>"


def counts(verdicts: list[str]) -> str:
    tally: dict[str, int] = {}
    for v in verdicts:
        tally[v] = tally.get(v, 0) + 1
    return ", ".join(f'<span class="{escape(v)}">{n} {escape(v)}</span>' for v, n in tally.items())


BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
PNG_BASE64_PREFIX = "iVBORw0KGgo"  # base64 of the PNG signature's first 8 bytes


def screen(d: dict) -> str:
    """The guest's screen at the stop (lab inspect --display), as an inline PNG; nothing when
    the run had no display. Only base64 of a PNG is put in the page."""
    shot = d.get("screen")
    data = shot.get("png_base64") if isinstance(shot, dict) else None
    if not isinstance(data, str):
        return ""
    if not (data.startswith(PNG_BASE64_PREFIX) and BASE64.fullmatch(data)):
        return '<p class="note">guest screen: not a PNG; not shown</p>'
    return ('<h3>guest screen</h3><img class="screen" alt="the guest\'s screen at the stop" '
            f'src="data:image/png;base64,{data}">')


def _inspect(d: dict) -> str:
    r = d["registers"]
    head = (f'<p class="mono">{escape(d.get("kernel", ""))} · profile {escape(d.get("profile", ""))}<br>'
            f'IDTR {r["idtr"]["base"]:#x}/{r["idtr"]["limit"]:#x} · GDTR {r["gdtr"]["base"]:#x}/{r["gdtr"]["limit"]:#x}'
            f' · TR {r["tr"]["selector"]:#06x} base {r["tr"]["base"]:#x}</p>')
    return (head + f'<p class="summary">{counts([c["verdict"] for c in d["checks"]])}</p>' + screen(d)
            + "<h3>IDT</h3>" + idt_map(d["idt"]) + "<h3>GDT and TSS</h3>" + gdt_tss_picture(d)
            + "<h3>checks</h3>" + checks_table(d["checks"]))


def _fire(results: list[dict]) -> str:
    out = [f'<p class="summary">{counts([r["outcome"] for r in results])}</p>',
           "<table><tr><th>scenario</th><th>vector</th><th>style</th><th>outcome</th><th>ms</th></tr>"
           + "".join(f'<tr class="{escape(r["outcome"])}"><td>{escape(r["scenario"])}</td><td>{r["vector"]}</td>'
                     f'<td>{escape(r["style"])}</td><td>{escape(r["outcome"])}</td><td>{r["seconds"] * 1000:.0f}</td></tr>'
                     for r in results) + "</table>"]
    for r in results:
        out.append(f'<h3 id="fire-{escape(r["scenario"])}-{escape(r["style"])}">{escape(r["scenario"])} '
                   f'({escape(r["style"])}): {escape(r["outcome"])}</h3>')
        out.append(stack_picture(r))
        if r.get("note"):
            out.append(f'<p class="note">documented deviation: {escape(r["note"])}</p>')
        out.append(f"<details><summary>checks ({counts([c['verdict'] for c in r['checks']])})</summary>"
                   f"{checks_table(r['checks'])}</details>")
    return "".join(out)


def _probe(results: list[dict]) -> str:
    out = [f'<p class="summary">{counts([r["verdict"] for r in results])}</p>']
    for r in results:
        out.append(f'<h3>{escape(r["probe"])}</h3>' + fatal_timeline(r) + checks_table(r["checks"]))
    return "".join(out)


def _timer(d: dict) -> str:
    obs = d["observation"]
    out = []
    for r in obs["rates"]:
        label = f"{r['source']} at {r['configured_hz']} Hz ({r['requested_hz']} requested), {r['ticks']} ticks in {r['window_ms']} ms"
        out.append(interval_histogram(label, r.get("intervals_us", []), 1e6 / r["configured_hz"] if r["configured_hz"] else None))
    for pitfall, intervals in obs.get("intervals_us", {}).items():
        out.append(interval_histogram(f"pitfall {pitfall}: {obs['counts'].get(pitfall)} tick(s) at 100 Hz", intervals, 1e4))
    if not any(r.get("intervals_us") for r in obs["rates"]):
        out.append('<p class="note">this run recorded tick counts only (a kernel without LAB_TICK_LOG)</p>')
    return "".join(out) + "<h3>checks</h3>" + checks_table(d["checks"])


def _tasks(d: dict) -> str:
    rows = "".join(f'<tr><td>{t["fields"]["id"]}</td><td class=mono>{t["fields"]["rsp"]:#x}</td>'
                   f'<td class=mono>{t["fields"]["kstack_top"]:#x}</td><td class=mono>{t["fields"]["cr3"]:#x}</td>'
                   f'<td>{t["fields"]["switches"]}</td><td>{escape(t.get("ret_symbol", ""))}</td></tr>'
                   for t in d["observation"]["tasks"])
    return ("<table><tr><th>id</th><th>rsp</th><th>kstack_top</th><th>cr3</th><th>switches</th><th>returns to</th></tr>"
            f"{rows}</table><h3>checks</h3>" + checks_table(d["checks"]))


def _cpu_switch(d: dict) -> str:
    """`lab tasks --cpu K`: per switch, every CPU's GS base, TSS.RSP0 and current, before -> after."""
    def cell(b, a) -> str:
        return (f"<td class=mono>{escape(b)}</td>" if a == b else f'<td class="mono changed">{escape(b)} &rarr; {escape(a)}</td>')

    out = []
    for i, step in enumerate(d["observation"]["steps"]):
        after = {c["index"]: c for c in step["after"]}
        rows = "".join(f'<tr><td>{b["index"]}{" *" if b["index"] == step["cpu"] else ""}</td>'
                       + cell(f'{b["gs_base"]:#x}', f'{after.get(b["index"], b)["gs_base"]:#x}')
                       + cell(f'{b["rsp0"]:#x}', f'{after.get(b["index"], b)["rsp0"]:#x}')
                       + cell(f'{b["task"]} {b["current"]:#x}',
                              f'{after.get(b["index"], b)["task"]} {after.get(b["index"], b)["current"]:#x}') + "</tr>"
                       for b in step["before"])
        line = step.get("line", {})
        out.append(f'<h3>switch {i + 1}: on {step["cpu"]} switch ({escape(line.get("from", "?"))} &rarr; '
                   f'{escape(line.get("to", "?"))})</h3><table><tr><th>CPU</th><th>GS base</th><th>TSS.RSP0</th>'
                   f"<th>current</th></tr>{rows}</table>")
    return "".join(out) + "<h3>checks</h3>" + checks_table(d["checks"])


def _claims(claims: list[dict]) -> str:
    rows = "".join(f'<tr class="{CLAIM_CLASS.get(c["verdict"], "SKIP")}"><td><code>{escape(c["id"])}</code> '
                   f'({escape(c.get("topic", ""))})<br>{escape(c["statement"])}</td><td>{escape(c["verdict"])}</td>'
                   f'<td>{"<br>".join(escape(e) for e in c.get("evidence", []))}</td></tr>' for c in claims)
    return (f'<p class="summary">{counts([c["verdict"] for c in claims])}</p>'
            f"<table><tr><th>claim</th><th>verdict</th><th>evidence</th></tr>{rows}</table>")


def matrix_cells(data: dict) -> dict:
    """`lab matrix --json` (lab/runs/matrix.py MatrixResult.to_json) in the matrix picture's
    shape: a column per backend, a row per fire, probe or claim."""
    columns = [b["backend"] for b in data["backends"]]
    rows, cells = [], []
    for b in data["backends"]:
        for r in b["rows"]:
            name = f"{r['kind']} {r['id']}"
            if name not in rows:
                rows.append(name)
            cells.append({"row": name, "column": b["backend"], "verdict": r["outcome"],
                          "detail": "; ".join(x for x in (r.get("note"), r.get("observed")) if x)})
    return {"title": f"lab matrix: {len(rows)} rows on {len(columns)} backends", "columns": columns,
            "rows": rows, "cells": cells}


SECTIONS = {
    "inspect": ("lab inspect: descriptor tables", _inspect),
    "fire": ("lab fire: the stack at each handler's entry", _fire),
    "fire-agnostic": ("lab fire --agnostic", lambda d: "".join(
        f'<h3>{escape(r["injection"])}: {escape(r["outcome"])}</h3>' + checks_table(r["checks"]) for r in d["results"])),
    "probe": ("lab probe: fatal paths", _probe),
    "timer": ("lab timer: tick intervals", _timer),
    "tasks": ("lab tasks", _tasks),
    "cpu-switch": ("lab tasks --cpu: a context switch on one CPU, seen from every CPU", _cpu_switch),
    "frame": ("lab frame: the frame at a handler's entry", frame_picture),
    "translate": ("lab translate: page walks", lambda ts: "".join(page_walk(t) for t in ts)),
    "claims": ("lab claims", _claims),
    "matrix": ("matrix", matrix),
    "lab-matrix": ("lab matrix: every backend", lambda d: matrix(matrix_cells(d))),
    "checks": ("checks", lambda d: checks_table(d["checks"])),
}


def section(data, name: str = "") -> str:
    kind = kind_of(data)
    if kind not in SECTIONS:
        body = f"<pre>{escape(json.dumps(data, indent=1, default=str)[:20000])}</pre>"
        heading = "run (unrecognised JSON)"
    else:
        heading, draw = SECTIONS[kind]
        try:
            body = draw(payload(data))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # A document that looks like a run but is not one the lab wrote (fields missing,
            # of another type): bad input, said in one line with the field that broke.
            raise UserError(f"{name or 'run'}: not the JSON of a lab {kind} run "
                            f"({type(exc).__name__}: {str(exc)[:120]}); pass what a command printed "
                            "with --json") from None
    source = f' <small class="note">{escape(name)}</small>' if name else ""
    return f'<section class="run" data-kind="{escape(kind)}"><h2>{escape(heading)}{source}</h2>{body}</section>'


def render(runs: list[tuple[str, object]], title: str = "lab report") -> str:
    """The HTML for `runs`: (name, JSON) pairs, in order."""
    body = "".join(section(data, name) for name, data in runs)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body><h1>{escape(title)}</h1>{body}</body></html>\n')


def check_target(path: Path) -> None:
    """OSError (with its reason) unless `path` can take a report: a new file, or an existing
    regular file, never a directory, a device, a fifo or a symlink (which the rename would
    replace)."""
    if path.name in ("", ".", ".."):
        raise IsADirectoryError(errno.EISDIR, "a directory, not a file name", str(path))
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such directory", str(path.parent)) from None
        return
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode) else \
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a fifo" if stat.S_ISFIFO(mode) else "not a regular file"
        raise FileExistsError(errno.EEXIST, f"{kind}: refused (only a regular file is replaced)", str(path))


def write(path: Path, runs: list[tuple[str, object]], title: str = "lab report") -> None:
    """Writes the report of `runs` to `path`, whole or not at all: a temporary file in the same
    directory, renamed over it; the temporary is removed on any failure."""
    check_target(path)
    text = render(runs, title)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
