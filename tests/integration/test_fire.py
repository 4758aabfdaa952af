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


@pytest.mark.parametrize("scenario, style", PLAN, ids=[f"{s.name}-{st}" for s, st in PLAN])
def test_fire_on_tcg(shared_tcg, scenario, style):
    [r] = fire_shared(shared_tcg, [(scenario, style)])
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
KVM_PLAN = runnable(PLAN, profiles.load("kvm"))


@pytest.fixture(scope="module")
def shared_kvm(kernel, tmp_path_factory):
    vm = SharedVM(kernel, profiles.load("kvm"), tmp_path_factory.mktemp("fire-kvm"), ready_timeout=30)
    yield vm
    vm.discard()


@needs_kvm
@pytest.mark.parametrize("scenario, style", KVM_PLAN, ids=[f"{s.name}-{st}" for s, st in KVM_PLAN])
def test_fire_on_kvm_matches_the_manual(shared_kvm, scenario, style):
    """On KVM the manual is the only reference: PASS, never DEVIATION."""
    [r] = fire_shared(shared_kvm, [(scenario, style)])
    assert r.outcome == "PASS", {c.id: c.evidence for c in r.checks if c.verdict is Verdict.FAIL}


@needs_kvm
def test_kvm_exclusion_still_holds(kernel, tmp_path):
    """The catalog excludes software-interrupt scenarios on this host's KVM because the VM
    dies with a KVM internal error. Lift the exclusion for `bp` and check that this is still
    what happens, and that the lab says so; when it stops holding, the exclusion must go."""
    import dataclasses

    from lab.errors import GuestError

    [bp] = [s for s in CATALOG if s.name == "bp"]
    assert bp.kvm_unsupported
    with Session(kernel, profiles.load("kvm"), ready_timeout=30, log_dir=tmp_path) as s:
        s.boot_to_ready()
        with pytest.raises(GuestError, match="internal-error"):
            fire_in_session(s, [(dataclasses.replace(bp, kvm_unsupported=None), "stub")])
