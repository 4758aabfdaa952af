"""SVG primitives for the report: every shape is a string, every text escaped, every number
the caller measured. A shape's hover text is an SVG `<title>` child (no script needed)."""

from __future__ import annotations

import itertools
from html import escape

FONT = "ui-monospace, 'DejaVu Sans Mono', monospace"
#: Fills by meaning, shared by every picture and the legend.
COLORS = {
    "cpu": "#9ecae1", "gap": "#eeeeee", "stub": "#a1d99b", "old": "#fdd0a2", "handler": "#dadaeb",
    "interrupt": "#6baed6", "trap": "#fd8d3c", "absent": "#f0f0f0", "other": "#bcbddc",
    "pass": "#74c476", "fail": "#fb6a4a", "warn": "#fdae6b", "info": "#9ecae1", "skip": "#d9d9d9",
    "reset": "#cb181d", "exception": "#fdae6b", "df": "#fb6a4a", "ok": "#74c476",
    "deviation": "#fdd0a2", "stale": "#dadaeb", "waived": "#d9d9d9", "holds": "#74c476",
    "refuted": "#fb6a4a", "holds only under a condition": "#fdae6b", "not measured": "#d9d9d9",
}


def hexa(value: int | None, width: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:#0{width + 2}x}" if width else f"{value:#x}"


def attrs(**kw) -> str:
    """`key="value"` pairs; a trailing underscore is dropped (class_), `_` in a name is `-`."""
    out = []
    for k, v in kw.items():
        if v is None:
            continue
        k = k.rstrip("_").replace("_", "-")
        out.append(f'{k}="{escape(str(v), quote=True)}"')
    return " ".join(out)


def title(text: str | None) -> str:
    return f"<title>{escape(text)}</title>" if text else ""


def rect(x, y, w, h, fill, *, hover: str | None = None, stroke="#555", **kw) -> str:
    a = attrs(x=f"{x:g}", y=f"{y:g}", width=f"{w:g}", height=f"{h:g}", fill=fill, stroke=stroke, **kw)
    inner = title(hover)
    return f"<rect {a}>{inner}</rect>" if inner else f"<rect {a}/>"


def text(x, y, s: str, *, size: int = 12, anchor: str = "start", weight: str | None = None,
         fill: str = "#111", **kw) -> str:
    a = attrs(x=f"{x:g}", y=f"{y:g}", font_size=size, text_anchor=anchor, font_weight=weight,
              fill=fill, **kw)
    return f"<text {a}>{escape(s)}</text>"


def line(x1, y1, x2, y2, *, stroke="#333", width: float = 1, dash: str | None = None,
         arrow: bool = False) -> str:
    a = attrs(x1=f"{x1:g}", y1=f"{y1:g}", x2=f"{x2:g}", y2=f"{y2:g}", stroke=stroke,
              stroke_width=width, stroke_dasharray=dash, marker_end="url(#arrow)" if arrow else None)
    return f"<line {a}/>"


def path(d: str, *, stroke="#333", width: float = 1.2, arrow: bool = True, fill="none") -> str:
    a = attrs(d=d, stroke=stroke, stroke_width=width, fill=fill,
              marker_end="url(#arrow)" if arrow else None)
    return f"<path {a}/>"


def group(parts: list[str], *, hover: str | None = None, **kw) -> str:
    return f"<g {attrs(**kw)}>{title(hover)}{''.join(parts)}</g>"


ARROW_DEF = ('<defs><marker id="{id}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
             'fill="#333"/></marker></defs>')
#: Numbers the pictures of one process, so each picture's arrow marker has an id of its own
#: (ids are unique per HTML document; a report holds many pictures).
_PICTURES = itertools.count(1)


def svg(width: float, height: float, parts: list[str], *, label: str, **kw) -> str:
    """A picture `width` x `height` user units wide that scales down to its container."""
    a = attrs(xmlns="http://www.w3.org/2000/svg", viewBox=f"0 0 {width:g} {height:g}",
              width=f"{width:g}", role="img", aria_label=label, font_family=FONT, **kw)
    marker = f"arrow-{next(_PICTURES)}"
    body = "".join(parts).replace('marker-end="url(#arrow)"', f'marker-end="url(#{marker})"')
    return f"<svg {a}>{title(label)}{ARROW_DEF.format(id=marker)}{body}</svg>"


def legend(x, y, items: list[tuple[str, str]], *, size: int = 11) -> list[str]:
    """Colour swatches with their meaning, in one row from (x, y)."""
    out = []
    for fill, label in items:
        out.append(rect(x, y - size + 2, size, size, fill))
        out.append(text(x + size + 4, y, label, size=size))
        x += size + 12 + 7 * len(label)
    return out
