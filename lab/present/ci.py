"""CI output: on GitHub Actions (`$GITHUB_STEP_SUMMARY` names a file), a command's result as a
Markdown job summary: the verdict counts, the checks that FAILed or WARNed, a baseline's
drift diff, and where the HTML report is."""

from __future__ import annotations


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def step_summary(title: str, data: dict, html: str | None = None) -> str:
    """The Markdown for one result's JSON (what --json prints) with `checks` and `summary`;
    "" for a result without checks."""
    checks, counts = data.get("checks"), data.get("summary")
    if not isinstance(checks, list) or not isinstance(counts, dict):
        return ""
    out = [f"### {title}", ""]
    if data.get("kernel"):
        out += [f"`{data['kernel']}`: {data.get('ready', '')}".rstrip(": "), ""]
    out += ["| " + " | ".join(counts) + " |", "|" + " --- |" * len(counts),
            "| " + " | ".join(str(n) for n in counts.values()) + " |", ""]
    findings = [c for c in checks if c["verdict"] in ("FAIL", "WARN")]
    if findings:
        out += ["| verdict | check | evidence |", "| --- | --- | --- |"]
        out += [f"| {c['verdict']} | `{c['id']}` | {_cell(c['evidence'][0] if c['evidence'] else c['title'])} |"
                for c in findings]
        out.append("")
    for c in checks:
        if c["id"] == "baseline.drift" and c["verdict"] in ("FAIL", "WAIVED"):
            out += [f"**Drift from the baseline** ({c['verdict']}):", "", "```", *c["evidence"][1:], "```", ""]
    if html:
        out += [f"HTML report: `{html}`", ""]
    return "\n".join(out) + "\n"
