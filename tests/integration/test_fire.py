"""`lab fire`: every catalogued exception, both handler styles, on the real kernel.

On TCG every scenario must PASS, or show exactly the deviation recorded for QEMU in the
catalog (DEVIATION). On KVM (when usable) the scenarios this host's KVM can run must PASS
outright: there the manual is the only reference.
"""

from __future__ import annotations

import json

import pytest

from lab.host import profiles
from lab.checks.base import Verdict
from lab.runs.fire import fire_in_session, runnable
from lab.machine.session import Session
from lab.scenarios.exceptions import CATALOG, STYLES
from lab.scenarios.deviations import applicable
from lab.host.qemus import parse_version_text

from labtest import SharedVM, kvm_usable, lab_cli

PLAN = [(s, st) for s in CATALOG for st in STYLES]


@pytest.fixture(scope="module")
def shared_tcg(kernel, tmp_path_factory):
    vm = SharedVM(kernel, profiles.load("tcg"), tmp_path_factory.mktemp("fire-tcg"), debug_log="int")
    yield vm
    vm.discard()


@pytest.fixture
def tcg_session(shared_tcg):
    try:
        yield shared_tcg.get()
    except BaseException:
        shared_tcg.discard()
        raise


def fire_shared(vm, plan, **options):
    results = fire_in_session(vm.get(), plan, **options)
    if any(r.observation.timeout for r in results):
        vm.discard()
    return results


@pytest.mark.parametrize("observer", ["gdb", "guest"])
@pytest.mark.parametrize("scenario, style", PLAN, ids=[f"{s.name}-{st}" for s, st in PLAN])
def test_fire_on_tcg(shared_tcg, scenario, style, observer):
    [r] = fire_shared(shared_tcg, [(scenario, style)], observer=observer)
    assert r.observation.observer == observer
    failed = {c.id: c.evidence for c in r.checks if c.verdict is Verdict.FAIL}
    recorded = applicable(scenario.name, "tcg", parse_version_text(r.observation.qemu))
    if not recorded:
        assert r.outcome == "PASS", failed
    else:
        assert r.outcome in ("PASS", "DEVIATION"), failed
    if r.outcome == "PASS":
        assert r.observation.delivered["vector"] == r.observation.vector
        assert r.observation.delivered["style"] == style


def test_int_with_a_chosen_vector(shared_tcg):
    [scenario] = [s for s in CATALOG if s.name == "int"]
    [r] = fire_shared(shared_tcg, [(scenario, "stub")], vector=3)
    assert r.outcome == "PASS" and r.observation.delivered["vector"] == 3


def test_int_refuses_a_vector_whose_handler_expects_an_error_code(tcg_session):
    from lab.errors import UserError

    [scenario] = [s for s in CATALOG if s.name == "int"]
    with pytest.raises(UserError, match="error code"):
        fire_in_session(tcg_session, [(scenario, "x86-interrupt")], vector=14)


def test_a_handler_never_reached_fails_within_the_bound(kernel, tmp_path):
    [nmi] = [s for s in CATALOG if s.name == "nmi"]
    [de] = [s for s in CATALOG if s.name == "de"]
    with Session(kernel, profiles.load("tcg"), debug_log="int", log_dir=tmp_path) as s:
        s.boot_to_ready()
        results = fire_in_session(s, [(nmi, "stub"), (de, "stub")], inject_nmi=False,
                                  handler_timeout=0.5)
    assert len(results) == 1, "the session must not be reused after a timeout"
    [r] = results
    assert r.outcome == "FAIL"
    vector = next(c for c in r.checks if c.id == "fire.vector")
    assert "timed out after 0.5 s" in vector.evidence[0] and "serial tail" in vector.evidence[0]


def test_cli_fire_all_both_styles(kernel):
    r = lab_cli("fire", "all", "--style", "both", "--json", "--kernel", str(kernel))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out) == 2 * len(CATALOG)
    assert {o["outcome"] for o in out} <= {"PASS", "DEVIATION"}
    pf = next(o for o in out if o["scenario"] == "pf-write" and o["style"] == "stub")
    assert [row["slot"] for row in pf["stack"]] == ["error code", "RIP", "CS", "RFLAGS", "RSP", "SS"]


@pytest.mark.parametrize("args, needle", [
    (["fire", "warp"], "unknown exception scenario 'warp'; the catalog: de, db-int1"),
    (["fire", "de", "--style", "fancy"], "unknown handler style 'fancy'; styles: x86-interrupt, stub"),
    (["fire", "de", "--vector", "5"], "--vector applies to the 'int' scenario only"),
])
def test_cli_fire_bad_input(args, needle):
    r = lab_cli(*args)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


KVM_OK, KVM_WHY = kvm_usable()
needs_kvm = pytest.mark.skipif(not KVM_OK, reason=f"KVM not usable here: {KVM_WHY}")


@needs_kvm
def test_every_scenario_this_hosts_kvm_runs_is_judged_on_kvm_and_matches_the_manual(kernel, tmp_path):
    """On KVM the manual is the only reference: PASS, never DEVIATION. The in-guest observer
    (no breakpoint) judges every scenario the host's KVM runs, measured by the probe."""
    from lab.experiments import kvm_probe
    from lab.runs.fire import fire

    kvm = profiles.load("kvm")
    probe = kvm_probe.probe(kernel, kvm)
    results, _ = fire(kernel, kvm, PLAN, log_dir=tmp_path, ready_timeout=30, observer="guest")
    judged = {r.scenario.name for r in results}
    assert judged == set(probe.runs) and judged.isdisjoint(probe.fails)
    assert len(results) == 2 * len(probe.runs)
    bad = {(r.scenario.name, r.observation.style): [c.evidence for c in r.checks if c.verdict is Verdict.FAIL]
           for r in results if r.outcome != "PASS"}
    assert not bad, bad
    assert all(r.observation.observer == "guest" and r.observation.accel == "kvm" for r in results)


@needs_kvm
def test_the_kvm_probe_still_measures_what_its_cache_says(kernel):
    """The exclusions are re-measured here, without gdb and without the cache: one scenario
    the cached result says fails and one it says runs, each must do so again."""
    from lab.experiments import kvm_probe
    from lab.scenarios.exceptions import get

    kvm = profiles.load("kvm")
    cached = kvm_probe.probe(kernel, kvm)
    picks = [get(n) for n in (sorted(cached.fails)[:1] + sorted(cached.runs)[:1])]
    fresh = kvm_probe.measure(kernel, kvm, scenarios=picks, probes=())
    for s in picks:
        assert (s.name in fresh.fails) == (s.name in cached.fails), (s.name, fresh.fails)
        if s.name in fresh.fails:
            assert fresh.fails[s.name].split(":")[0] == cached.fails[s.name].split(":")[0]
    assert fresh.cpu == cached.cpu and fresh.cpu["model"]


@needs_kvm
@pytest.mark.parametrize("observer", ["gdb", "guest"])
def test_a_scenario_this_hosts_kvm_cannot_run_is_reported_as_such(kernel, tmp_path, observer):
    """Forced past the probe, a scenario it measured failing stops the VM, and the lab says
    QEMU's state (internal-error), under either observer, instead of a bare timeout."""
    from lab.errors import GuestError
    from lab.experiments import kvm_probe
    from lab.scenarios.exceptions import get

    kvm = profiles.load("kvm")
    failing = [n for n, why in kvm_probe.probe(kernel, kvm).fails.items()
               if why.startswith(kvm_probe.EMULATION_FAILURE)]
    if not failing:
        pytest.skip("this host's KVM runs every scenario")
    with Session(kernel, kvm, ready_timeout=30, log_dir=tmp_path) as s:
        s.boot_to_ready()
        plan = [(get(failing[0]), "stub")]
        if observer == "gdb":
            with pytest.raises(GuestError, match="internal-error"):
                fire_in_session(s, plan, observer="gdb")
        else:
            [r] = fire_in_session(s, plan, observer="guest", handler_timeout=2.0)
            assert r.outcome == "FAIL" and "QEMU status: internal-error" in r.observation.timeout
