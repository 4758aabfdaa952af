"""The stack at a handler's entry, to scale, from one `lab fire` result's JSON
(lab/runs/fire.py FireResult.to_json): one qword is one row, higher addresses at the top.

From the top: where the CPU's frame starts (the interrupted RSP, or the IST slot's value when
the gate switches stacks, SDM vol. 3A §6.14.5), the gap the CPU's 16-byte alignment leaves
(§6.14.2), the words the CPU pushed (SS, RSP, RFLAGS, CS, RIP, and the error code for the
vectors that have one), then for the stub style the rest of the TrapFrame the stub pushed
(kernel/src/arch/x86_64/stubs.rs, lab/x86/frames.py TRAP_FRAME). Every slot carries its
address and value as data attributes (`data-address`, `data-value`, `data-slot`), so a test
reads the picture's numbers back."""

from __future__ import annotations

from lab.present.html.svg import COLORS, group, legend, line, path, rect, svg, text
from lab.x86.frames import QWORD, TRAP_FRAME, explain_error_code

ROW = 22  # px per qword
ADDR_X, SLOT_X, SLOT_W = 10, 170, 300
WIDTH = 860
NOTE_CHARS = 52  # a note beside a slot, cut to this many characters
#: The legend's words for each kind of row, in the order drawn.
KINDS = {"gap": "alignment gap", "cpu": "pushed by the CPU", "stub": "pushed by the stub",
         "old": "interrupted stack"}
#: Gaps larger than this (bytes) are drawn broken, not to scale: a stack switch, not alignment.
MAX_DRAWN_GAP = 8 * QWORD


def _slot(y: float, address: int, value: int, name: str, kind: str, note: str = "") -> str:
    hover = f"{name} at {address:#x} = {value:#018x}" + (f" ({note})" if note else "")
    return group([
        rect(SLOT_X, y, SLOT_W, ROW, COLORS[kind], hover=hover),
        text(ADDR_X, y + ROW - 7, f"{address:#x}", size=12),
        text(SLOT_X + 8, y + ROW - 7, name, size=12, weight="bold"),
        text(SLOT_X + SLOT_W - 8, y + ROW - 7, f"{value:#x}", size=12, anchor="end"),
        text(SLOT_X + SLOT_W + 10, y + ROW - 7, note[:NOTE_CHARS], size=11, fill="#444", class_="note")
        if note else "",
    ], class_=f"slot {kind}", data_address=f"{address:#x}", data_value=f"{value:#x}", data_slot=name)


def stub_slots(trap: dict, entry_rsp: int) -> list[tuple[int, int, str]]:
    """(address, value, field) of the TrapFrame words below the CPU's frame: what the stub
    pushed (its error-code slot too, when the CPU pushed none), highest address first."""
    base = trap["address"]
    out = []
    for f in TRAP_FRAME.fields:
        address = base + f.offset
        if address < entry_rsp:
            out.append((address, trap[f.name], f.name))
    return sorted(out, reverse=True)


def frame_origin(obs: dict) -> tuple[int, str, bool]:
    """Where the CPU started pushing from, why, and whether that is a stack switch: the IST
    slot's value, else the interrupted RSP (the same stack)."""
    gate = obs["gate"]
    if gate.get("ist") and obs.get("ist_top") is not None:
        return obs["ist_top"], f"IST{gate['ist']}: RSP := TSS.IST{gate['ist']}", True
    return obs["before"]["rsp"], "interrupted RSP (no stack switch)", False


def stack_picture(result: dict) -> str:
    """The SVG for one fire result; a one-line note when the handler was never entered."""
    obs = result["observation"]
    rows = result.get("stack") or []
    if obs.get("entry") is None or not rows:
        delivered = (obs.get("delivered") or {}).get("vector", "nothing")
        return f'<p class="note">no entry into {obs["gate"]["symbol"]} (delivered: {delivered})</p>'
    origin, why, switched = frame_origin(obs)
    heading = (f"{result['scenario']} · vector {result['vector']} · {result['style']} · handler "
               f"{obs['gate']['symbol']} · {result['outcome']}")
    return draw(heading, rows, obs["entry"]["rsp"], origin, why, obs["before"]["rsp"] if switched else None,
                obs.get("trap_frame"), label=f"stack at {obs['gate']['symbol']} entry",
                vector=result["vector"], interrupted_rsp=obs["before"]["rsp"])


def frame_picture(frame: dict) -> str:
    """The SVG for `lab frame`'s JSON (lab/experiments/frame.py decode_at_stop): the frame at
    a handler's first instruction, from the interrupted stack or the one the TSS names."""
    rows = frame["slots"]
    saved_rsp = next(r["value"] for r in rows if r["slot"] == "RSP")
    switch = frame.get("stack_switch")
    if switch:
        name = switch["field"].upper()
        why = f"{name}: RSP := TSS.{name}" + (" (from ring 3)" if name == "RSP0" else "")
        origin, old = switch["rsp"], saved_rsp
    else:
        why, origin, old = "interrupted RSP (no stack switch)", saved_rsp, None
    heading = f"{frame['mnemonic']} frame at {frame['symbol']} (vector {frame['vectors'][0]})"
    return draw(heading, rows, frame["rsp"], origin, why, old, None, label=heading,
                vector=frame["vectors"][0], interrupted_rsp=saved_rsp)


def draw(heading: str, rows: list[dict], entry_rsp: int, origin: int, why: str, interrupted: int | None,
         trap: dict | None, *, label: str, vector: int | None = None,
         interrupted_rsp: int | None = None) -> str:
    """The picture: `rows` the CPU's words (lowest address first), pushed from `origin`
    (`why`), the interrupted stack's RSP beside it when the CPU switched stacks, the stub's
    TrapFrame below. The error code is decoded by `vector`'s layout; the saved RSP slot says
    when it holds `interrupted_rsp`."""
    cpu_top = rows[-1]["address"] + QWORD  # just above SS
    aligned = origin & ~0xF
    gap = origin - cpu_top
    parts: list[str] = []
    y = 40
    parts.append(text(ADDR_X, 16, heading, size=13, weight="bold"))
    # The top: the stack the frame was pushed on, and where it came from.
    parts.append(line(SLOT_X - 20, y, SLOT_X + SLOT_W + 20, y, stroke="#d62728", width=2))
    parts.append(text(SLOT_X + SLOT_W + 24, y - 5, f"{why} = {origin:#x}", size=11, fill="#d62728",
                      class_="origin", data_address=f"{origin:#x}"))
    if interrupted is not None:
        parts.append(group([
            rect(SLOT_X + SLOT_W + 24, y + 28, 270, ROW, COLORS["old"],
                 hover=f"the interrupted stack: RSP was {interrupted:#x}; the CPU pushed it as the frame's RSP"),
            text(SLOT_X + SLOT_W + 32, y + 28 + ROW - 7, f"interrupted RSP = {interrupted:#x}", size=11),
        ], class_="interrupted", data_address=f"{interrupted:#x}"))
    drawn_gap = min(gap, MAX_DRAWN_GAP) if gap > 0 else 0
    kinds = ["cpu"]
    if gap > 0:
        h = ROW * drawn_gap / QWORD
        note = f"aligned down to 16: {aligned:#x}" if gap < 16 else "not to scale"
        parts.append(group([rect(SLOT_X, y, SLOT_W, h, COLORS["gap"], hover=f"{gap} bytes, {note}",
                                 stroke_dasharray="4 3"),
                            text(ADDR_X, y + h / 2 + 4, f"{cpu_top:#x}", size=12),
                            text(SLOT_X + 8, y + h / 2 + 4, f"gap: {gap} bytes", size=11, fill="#555"),
                            text(SLOT_X + SLOT_W + 10, y + h / 2 + 4, note, size=11, fill="#555", class_="note")],
                           class_="gap", data_bytes=gap, data_address=f"{cpu_top:#x}"))
        kinds.insert(0, "gap")
        y += h
    elif gap == 0:
        parts.append(text(SLOT_X + SLOT_W + 24, y + 18, "no gap: already 16-byte aligned", size=11, fill="#555"))
    if interrupted is not None:
        kinds.append("old")
    # The CPU's words, SS first (highest address).
    for r in reversed(rows):
        note = r.get("note", "")
        if r["slot"] == "error code" and vector is not None:
            note = explain_error_code(vector, r["value"]) or note
        elif r["slot"] == "RSP" and interrupted_rsp is not None and r["value"] == interrupted_rsp:
            note = "= the interrupted RSP" + (" (the red line)" if interrupted is None else "")
        parts.append(_slot(y, r["address"], r["value"], r["slot"], "cpu", note))
        y += ROW
    right = SLOT_X + SLOT_W
    # The entry RSP: an arrow from below the last note, so it crosses no text.
    parts.append(path(f"M{right + 56},{y + 16} L{right + 4},{y}", stroke="#1f77b4", width=2))
    parts.append(text(right + 60, y + 20, f"RSP at the handler's entry = {entry_rsp:#x}", size=11,
                      fill="#1f77b4", class_="entry-rsp", data_address=f"{entry_rsp:#x}"))
    if trap:
        stub = stub_slots(trap, entry_rsp)
        kinds += ["stub"] if stub else []
        for address, value, name in stub:
            parts.append(_slot(y, address, value, name, "stub"))
            y += ROW
        parts.append(text(SLOT_X, y + 14, f"TrapFrame at {trap['address']:#x} ({TRAP_FRAME.size} bytes): "
                          "the stub pushed the rows in green", size=11, fill="#555"))
        y += 20
    y += 30
    parts.append(text(ADDR_X, 36, "↑ higher addresses", size=11, fill="#555", class_="direction"))
    parts.append(text(ADDR_X, y - 8, "the stack grows down ↓", size=11, fill="#555", class_="direction"))
    parts += legend(ADDR_X, y + 8, [(COLORS[k], KINDS[k]) for k in KINDS if k in kinds])
    return svg(WIDTH, y + 20, parts, label=label, class_="stack")
