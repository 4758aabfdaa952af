"""`lab claims` on the live kernel: every claim is decided by this run's measurements."""

from __future__ import annotations

import json

from labtest import lab_cli


def test_every_claim_is_decided(kernel):
    r = lab_cli("claims", "--kernel", str(kernel), "--json", timeout=180)
    assert r.returncode == 0, r.stderr
    claims = {c["id"]: c for c in json.loads(r.stdout)}
    assert len(claims) >= 25
    assert all(c["verdict"] != "not measured" and c["evidence"] for c in claims.values())
    # What the tutorials get wrong about 64-bit mode, shown by this run's frames:
    for wrong in ("frame-ss-rsp", "iretq-rsp", "gprs-saved", "error-code-always", "triple-fault-one-cpu"):
        assert claims[wrong]["verdict"] == "refuted", claims[wrong]
    for right in ("frame-align", "fault-rip", "trap-rip", "gate-if", "df-no-ist-triple", "one-rsp-change", "swapgs",
                  "percpu-own-gs", "percpu-own-tss", "switch-keeps-gs"):
        assert claims[right]["verdict"] == "holds", claims[right]
    assert claims["np-gate"]["verdict"] == "holds only under a condition"
