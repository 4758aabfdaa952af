"""`lab bisect`: its options and its command (thin: lab/runs/bisect.py does the work)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab.errors import UserError

HELP = ("in a kernel's git repository, the first commit whose state drifted from a baseline (or "
        "that fails a lab command): git bisect run with the lab as the judge")


def options(sp) -> None:
    sp.add_argument("--good", required=True, metavar="REV", help="a commit that passes")
    sp.add_argument("--bad", required=True, metavar="REV", help="a later commit that fails")
    sp.add_argument("--baseline", metavar="FILE",
                    help="the default judge: `lab inspect --baseline FILE` at each commit (drift is bad)")
    sp.add_argument("--config", metavar="FILE",
                    help="the lab.toml whose [kernel] build command builds each commit (default: the "
                         "nearest from here upwards; each commit's own copy of it is read)")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp.add_argument("lab_command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                    help="the lab command that judges each commit instead (exit 0 good, 1 bad; a "
                         "kernel that does not build is skipped; a lab error stops the bisect)")


def cmd_bisect(args) -> int:
    from lab.host import config
    from lab.runs.bisect import bisect

    command = args.lab_command[1:] if args.lab_command[:1] == ["--"] else args.lab_command
    baseline = Path(args.baseline) if args.baseline else None
    path = Path(args.config) if args.config else None
    if path is not None and not path.is_file():
        raise UserError(f"--config {path}: " + ("a directory, not a lab.toml" if path.is_dir() else "no such file"))
    result = bisect(Path.cwd(), config.load(path or config.find()), args.good, args.bad, command, baseline)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        print()
    else:
        print("\n".join(result.lines()))
    return 1 if result.failed else 0
