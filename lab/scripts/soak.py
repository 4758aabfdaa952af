"""`just soak`: consecutive scenarios across the catalog, counting unexpected results, and
(where KVM is usable) TCG and KVM compared check by check. Not part of the test suite.

Unexpected = a fire whose outcome is FAIL (PASS and a recorded DEVIATION are expected), or a
probe whose verdict is FAIL. TCG/KVM comparison: for every scenario both can run, each frame
check's verdicts on both; every divergence is listed (scenario, style, check, both verdicts,
TCG's QEMU version), marked `recorded` where TCG's recorded deviation for its version explains
it (TCG DEVIATION, KVM PASS). An unexplained divergence fails the soak.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from itertools import cycle, islice
from pathlib import Path

from lab.host import profiles
from lab.present.console import progress
from lab.host.build import build_kernel
from lab.checks.base import Verdict
from lab.runs.fire import fire, runnable
from lab.runs.probe import run_probes
from lab.runs.vm import VmSpec
from lab.scenarios import probes
from lab.scenarios.exceptions import CATALOG, STYLES


def compare(tcg_res, kvm_res) -> tuple[int, list[dict], int]:
    """(checks agreeing, every divergence, checks not comparable) of the same plan fired on
    TCG and on KVM. A divergence TCG's recorded deviation for its version explains (TCG
    DEVIATION, KVM PASS) is listed too, marked `recorded`; none is counted as agreement."""
    agree, divergences, not_comparable = 0, [], 0
    for a, b in zip(tcg_res, kvm_res):
        for ca, cb in zip(a.checks, b.checks):
            if Verdict.SKIP in (ca.verdict, cb.verdict):
                not_comparable += 1  # e.g. the QEMU log check: TCG only
            elif ca.verdict is cb.verdict:
                agree += 1
            else:
                explained = a.outcome == "DEVIATION" and cb.verdict is Verdict.PASS
                divergences.append({
                    "scenario": a.scenario.name, "style": a.observation.style, "check": ca.id,
                    "tcg": ca.verdict.value, "kvm": cb.verdict.value,
                    "tcg_backend": f"tcg/{a.observation.qemu}", "recorded": explained,
                    "note": a.note if explained else "not explained by a recorded deviation"})
    return agree, divergences, not_comparable


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lab.scripts.soak", description=__doc__)
    ap.add_argument("--count", type=int, default=200, help="fires in one VM (default: %(default)s)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--no-kvm", action="store_true", help="skip the TCG/KVM comparison")
    args = ap.parse_args(argv)

    kernel = build_kernel(quiet=True)
    tcg = profiles.load("tcg")
    plan = list(islice(cycle([(s, st) for s in CATALOG for st in STYLES]), args.count))
    t0 = time.monotonic()
    with progress(f"soak: {len(plan)} fires in one VM"):
        results, _ = fire(kernel, tcg, plan)
    fire_s = time.monotonic() - t0
    unexpected = [f"{r.scenario.name}/{r.observation.style}: {[c.id for c in r.checks if c.verdict is Verdict.FAIL]}"
                  for r in results if r.outcome == "FAIL"]
    t1 = time.monotonic()
    probe_verdicts = {}
    with progress(f"soak: {len(probes.CATALOG)} probes, a VM each"):
        probed = run_probes(VmSpec(kernel, tcg), list(probes.CATALOG)).results
    for r in probed:
        bad = [c.id for c in r.checks if c.verdict is Verdict.FAIL]
        probe_verdicts[r.probe.name] = "PASS" if not bad else f"FAIL {bad}"
        if bad:
            unexpected.append(f"probe {r.probe.name}: {bad}")
    probe_s = time.monotonic() - t1
    summary = {
        "fires": len(results), "probes": len(probes.CATALOG), "scenarios": len(results) + len(probes.CATALOG),
        "unexpected": unexpected,
        "outcomes": {o: sum(1 for r in results if r.outcome == o) for o in ("PASS", "STALE", "DEVIATION", "FAIL")},
        "fire_seconds": fire_s, "fire_median_ms": statistics.median(r.seconds for r in results) * 1000,
        "probe_seconds": probe_s, "probe_verdicts": probe_verdicts,
    }

    kvm = profiles.load("kvm")
    try:
        kvm.check_usable()
        kvm_ok = not args.no_kvm
    except Exception as exc:  # UserError: not usable here
        kvm_ok, summary["kvm"] = False, f"not compared: {exc}"
    if kvm_ok:
        # what this host's KVM runs (measured by the probe) under the default observer, on both
        both = runnable([(s, st) for s in CATALOG for st in STYLES], kvm, kernel)
        with progress("soak: the catalog on TCG, then on KVM"):
            tcg_res, _ = fire(kernel, tcg, both)
            kvm_res, _ = fire(kernel, kvm, both, ready_timeout=30)
        agree, divergences, not_comparable = compare(tcg_res, kvm_res)
        summary["kvm"] = {"scenarios": len(both), "checks_agreeing": agree, "divergences": divergences,
                          "unexplained": [d for d in divergences if not d["recorded"]],
                          "checks_not_comparable": not_comparable,
                          "kvm_outcomes": {o: sum(1 for r in kvm_res if r.outcome == o) for o in ("PASS", "DEVIATION", "FAIL")}}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    kvm_bad = isinstance(summary.get("kvm"), dict) and summary["kvm"]["unexplained"]
    return 1 if unexpected or kvm_bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
