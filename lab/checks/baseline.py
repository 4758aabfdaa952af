"""Baselines of the architectural state: what `lab inspect --update-baseline FILE` writes and
`--baseline FILE` compares (docs/baselines.md).

The state is what decides what the CPU does on an interrupt, each address named by the
symbol that holds it, so a rebuild that only moves code is no drift:

- `idt`: per present gate (by vector), its type, DPL, IST, selector and handler symbol;
- `gdt`: per selector, the descriptor's role ("kernel code 64-bit", "user data", "tss-available
  at tss") and whether it is present;
- `tss`: per used stack slot (RSP0-2, IST1-7), the symbol it tops (else its address or
  symbol+offset), that stack object's size, and the pointer's alignment up to 16 (SDM §6.14.2: the CPU aligns RSP down to 16 before pushing);
- `ist_map`: per IST slot a gate uses, the vectors on it and the stack it tops.

Pure functions over the rows `lab inspect --json` prints (lab/present/rows.py idt_rows,
gdt_rows, tss_rows): `state` builds it, `drift` compares two, `drift_check` is the check.
"""

from __future__ import annotations

import json
from typing import Callable

from lab.checks.base import Check, Checks

TIER = "baseline"
C = Checks(TIER)
#: the first line of every baseline file's format; another value is refused
FORMAT = "lab-baseline 1"
SECTIONS = ("idt", "gdt", "tss", "ist_map")
#: on a machine with several CPUs: each other CPU's TSS stacks, and its gates and descriptors
#: where they differ from the boot CPU's (keys "cpu1 ist1", "cpu1 8", "cpu1 0x0028")
CPU_SECTIONS = ("cpu_tss", "cpu_idt", "cpu_gdt")
TSS_SLOTS = ("rsp0", "rsp1", "rsp2", "ist1", "ist2", "ist3", "ist4", "ist5", "ist6", "ist7")  # TSS order
STACK_ALIGN = 16  # alignment beyond 16 does not change what the CPU pushes (SDM §6.14.2)


def _where(address: int, symbol: str) -> str:
    """The symbol (`name` or `name+0x10`) when one holds `address`, else the address."""
    return symbol or f"{address:#x}"


def alignment(pointer: int) -> int:
    """The largest power of two dividing `pointer`, at most STACK_ALIGN."""
    return min(pointer & -pointer, STACK_ALIGN) if pointer else STACK_ALIGN


def gdt_role(row: dict) -> str:
    """What a descriptor is for: "null", "kernel code 64-bit", "ring-3 data", "tss-available
    at tss"... (the GDT row's kind, DPL, L and D/B bits, a system descriptor's base symbol)."""
    kind, dpl = row["kind"], row["dpl"]
    ring = {0: "kernel", 3: "user"}.get(dpl, f"ring-{dpl}")
    if kind == "code":
        return f"{ring} code " + ("64-bit" if row["l"] and not row["db"] else "32-bit" if row["db"] else "16-bit")
    if kind == "data":
        return f"{ring} data"
    if "symbol" in row:
        return f"{kind} at {_where(row['base'], row['symbol'])}"
    return kind


def state(idt_rows: list[dict], gdt_rows: list[dict], tss_rows: list[dict]) -> dict:
    """The baseline state of one CPU's tables, from the inspect JSON's rows."""
    idt = {}
    for r in sorted(idt_rows, key=lambda r: r["vector"]):
        if r["present"]:
            idt[str(r["vector"])] = {"mnemonic": r["mnemonic"], "type": r["type"], "dpl": r["dpl"],
                                     "ist": r["ist"], "selector": f"{r['selector']:#06x}",
                                     "handler": _where(r["handler"], r["symbol"])}
    gdt = {}
    for r in gdt_rows:
        entry = {"role": gdt_role(r), "present": r["present"]}
        if "count" in r:
            entry["count"] = r["count"]
        gdt[f"{r['selector']:#06x}"] = entry
    tss = {}
    for r in tss_rows:
        if r["field"] == "iomap_base" or not r["value"]:
            continue
        entry = {"top": r.get("stack") or _where(r["value"], r["points_into"]), "align": alignment(r["value"])}
        if r.get("stack"):
            entry["size"] = r["stack_size"]  # the stack object's; none where no object ends there
        tss[r["field"]] = entry
    ist_map: dict[str, dict] = {}
    for vector, gate in idt.items():
        if gate["ist"]:
            slot = f"ist{gate['ist']}"
            entry = ist_map.setdefault(slot, {"stack": tss.get(slot, {}).get("top", "none (0)"), "vectors": []})
            entry["vectors"].append(int(vector))
    return {"format": FORMAT, "idt": idt, "gdt": gdt, "tss": tss,
            "ist_map": dict(sorted(ist_map.items()))}


def with_cpus(boot: dict, others: dict[int, dict]) -> dict:
    """The boot CPU's state (`state`) with the other CPUs' (`others`: {CPU index: its state}):
    every TSS stack of each, and its gates and descriptors that differ from the boot CPU's."""
    out = {**boot, **{name: {} for name in CPU_SECTIONS}}
    for index, st in sorted(others.items()):
        for slot, entry in st["tss"].items():
            out["cpu_tss"][f"cpu{index} {slot}"] = entry
        for section in ("idt", "gdt"):
            for key in sorted(boot[section].keys() | st[section].keys(), key=_order):
                theirs = st[section].get(key)
                if theirs != boot[section].get(key):
                    out[f"cpu_{section}"][f"cpu{index} {key}"] = theirs or {"absent": True}
    return {name: section for name, section in out.items() if name not in CPU_SECTIONS or section}


def dumps(st: dict) -> str:
    """The baseline file's text: JSON, one line per entry, entries in table order (vectors and
    selectors ascending), fields sorted: a change shows as one changed line in a diff."""
    lines = ["{", f'  "format": {json.dumps(st["format"])},']
    names = SECTIONS + tuple(n for n in CPU_SECTIONS if st.get(n))
    for i, name in enumerate(names):
        section = st[name]
        lines.append(f'  "{name}": {{' + ("" if section else "}" + ("," if i < len(names) - 1 else "")))
        items = list(section.items())
        for j, (key, entry) in enumerate(items):
            comma = "," if j < len(items) - 1 else ""
            lines.append(f"    {json.dumps(key)}: {json.dumps(entry, sort_keys=True)}{comma}")
        if section:
            lines.append("  }" + ("," if i < len(names) - 1 else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def loads(text: str) -> dict:
    """A baseline file's state; ValueError saying what is wrong with it."""
    try:
        st = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ValueError("not a lab baseline (nested too deeply)") from None
    if not isinstance(st, dict) or st.get("format") != FORMAT:
        raise ValueError(f'not a lab baseline (no "format": "{FORMAT}"; write one with --update-baseline)')
    for name in SECTIONS + CPU_SECTIONS:
        section = st.get(name, {}) if name in CPU_SECTIONS else st.get(name)
        if not isinstance(section, dict) or not all(isinstance(e, dict) for e in section.values()):
            raise ValueError(f'not a lab baseline: "{name}" must be an object of objects')
    return st


# -- drift --------------------------------------------------------------------------------------

def _fields(old: dict, new: dict, names: dict[str, str]) -> list[str]:
    """"IST 1 -> 0" for each field that differs, in a fixed order (`names`: key -> label)."""
    keys = [k for k in names if k in old or k in new] + sorted((old.keys() | new.keys()) - names.keys())
    return [f"{_label(names, k)}{_show(old.get(k))} -> {_show(new.get(k))}"
            for k in keys if old.get(k) != new.get(k)]


def _label(names: dict[str, str], key: str) -> str:
    """A field's label and a space ("IST "), or nothing for an unlabelled one (a GDT role)."""
    label = names.get(key, key)
    return f"{label} " if label else ""


def _all(entry: dict, names: dict[str, str]) -> str:
    return ", ".join(f"{_label(names, k)}{_show(entry[k])}" for k in [k for k in names if k in entry]
                     + sorted(entry.keys() - names.keys()))


def _show(value) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(none)"
    return str(value)


def _vector_line(key: str, old: dict | None, new: dict | None) -> str:
    g = new or old
    head = f"vector {key} {g.get('mnemonic', '')}".rstrip()
    if old is None:
        return f"{head}: gate added ({g['type']}, DPL {g['dpl']}, IST {g['ist']}, {g['handler']})"
    if new is None:
        return f"{head}: gate removed (was {g['type']}, DPL {g['dpl']}, IST {g['ist']}, {g['handler']})"
    changes = _fields(old, new, {"type": "type", "dpl": "DPL", "ist": "IST", "selector": "selector",
                                 "handler": "handler"})
    tail = "" if old.get("handler") != new.get("handler") else f" ({new.get('handler')})"
    return f"{head}: {', '.join(changes)}{tail}" if changes else ""


def _entry_line(label: str, names: dict[str, str], upper: bool = False) -> Callable[[str, dict | None, dict | None], str]:
    def line(key: str, old: dict | None, new: dict | None) -> str:
        head = label.format(key=key.upper() if upper else key)
        if old is None:
            return f"{head}: added ({_all(new, names)})"
        if new is None:
            return f"{head}: removed (was {_all(old, names)})"
        changes = _fields(old, new, names)
        return f"{head}: {', '.join(changes)}" if changes else ""
    return line


_LINES = {
    "idt": _vector_line,
    "gdt": _entry_line("GDT {key}", {"role": "", "present": "present", "count": "slots"}),
    "tss": _entry_line("TSS {key}", {"top": "top of", "size": "stack size", "align": "align"}, upper=True),
    "ist_map": _entry_line("IST map {key}", {"vectors": "vectors", "stack": "stack"}, upper=True),
}


def _order(key: str):
    """Vectors and selectors numerically, names as they are; "cpuN rest" by N, then rest."""
    cpu, _, rest = key.partition(" ")
    if rest and cpu.startswith("cpu") and cpu[3:].isdigit():
        return (2, int(cpu[3:]), _order(rest))
    if key in TSS_SLOTS:
        return (1, TSS_SLOTS.index(key), key)
    try:
        return (0, int(key, 0), key)
    except ValueError:
        return (1, len(TSS_SLOTS), key)


def _per_cpu(line: Callable[[str, dict | None, dict | None], str]) -> Callable[[str, dict | None, dict | None], str]:
    """A section's line maker for "cpuN key" entries: "CPU N " and the line of `key`; an entry
    {"absent": true} is the boot CPU's that this CPU does not have."""
    def per_cpu(key: str, old: dict | None, new: dict | None) -> str:
        cpu, _, rest = key.partition(" ")
        old, new = (None if e == {"absent": True} else e for e in (old, new))
        if old is None and new is None:
            return ""
        text = line(rest, old, new)
        return f"CPU {cpu[3:]} {text}" if text else ""
    return per_cpu


_LINES.update({f"cpu_{name}": _per_cpu(_LINES[name]) for name in ("tss", "idt", "gdt")})


def _own(st: dict, name: str, key: str) -> dict | None:
    """The entry `key` of section `name`; a CPU's gate or descriptor not recorded there is the
    boot CPU's (with_cpus records only those that differ)."""
    entry = st.get(name, {}).get(key)
    if entry is None and name in ("cpu_idt", "cpu_gdt"):
        entry = st[name.removeprefix("cpu_")].get(key.partition(" ")[2])
    return entry


def drift(baseline: dict, current: dict) -> list[str]:
    """One readable line per difference between two states (`state`, `loads`), section by
    section, each in table order: "vector 8 #DF: IST 1 -> 0 (double_fault_handler)". Empty:
    no drift."""
    out = []
    for name in SECTIONS + CPU_SECTIONS:
        old, new = baseline.get(name, {}), current.get(name, {})
        for key in sorted(old.keys() | new.keys(), key=_order):
            line = _LINES[name](key, _own(baseline, name, key), _own(current, name, key))
            if line:
                out.append(line)
    return out


def drift_check(baseline: dict, current: dict, source: str) -> Check:
    """baseline.drift: FAIL with the diff when the tables differ from the baseline `source`
    (a file name) records; PASS otherwise."""
    lines = drift(baseline, current)
    evidence = ([f"the tables differ from {source} (accept with --update-baseline {source}, or a waiver):", *lines]
                if lines else [f"the IDT, GDT, TSS stacks and IST map match {source}"])
    return C.result("baseline.drift", "the architectural state matches the reviewed baseline", not lines, evidence)
