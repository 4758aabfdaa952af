"""The in-guest observer (kernel/src/observer.rs) against gdb, on the real kernel.

On TCG both observers see the same fire: the gdb path also reads LAB_OBSERVER and
`fire.observers-agree` compares them; altering one word the kernel recorded makes it FAIL.
On KVM, `lab ring3` and `lab claims` finish and say what they were measured on."""

from __future__ import annotations

import copy
import json

import pytest

from labtest import kvm_usable, lab_cli

from lab.checks.base import Verdict
from lab.checks.frame import check_observers_agree
from lab.host import profiles
from lab.machine.session import Session
from lab.runs.fire import fire_in_session
from lab.scenarios.exceptions import CATALOG, RIP_LOOP, get

pytestmark = pytest.mark.integration
KVM_OK, KVM_WHY = kvm_usable()
needs_kvm = pytest.mark.skipif(not KVM_OK, reason=f"KVM not usable here: {KVM_WHY}")


@pytest.fixture(scope="module")
def gdb_fires(kernel, tmp_path_factory):
    """Every scenario, one style, through gdb on TCG (the kernel records them too)."""
    with Session(kernel, profiles.load("tcg"), debug_log="int",
                 log_dir=tmp_path_factory.mktemp("observer-tcg")) as s:
        s.boot_to_ready()
        return fire_in_session(s, [(sc, "stub") for sc in CATALOG], observer="gdb")


def test_gdb_and_the_kernel_agree_on_every_fire_on_tcg(gdb_fires):
    assert len(gdb_fires) == len(CATALOG)
    for r in gdb_fires:
        c = next(c for c in r.checks if c.id == "fire.observers-agree")
        assert c.verdict is Verdict.PASS, (r.scenario.name, c.evidence)
        assert r.observation.guest is not None


@pytest.mark.parametrize("scenario, alter, needle", [
    ("pf-write", lambda g: g[0]["words"].__setitem__(1, g[0]["words"][1] ^ 0x10), "[rsp+0x08]"),
    ("pf-write", lambda g: g[0].__setitem__("cr2", g[0]["cr2"] + 0x1000), "CR2"),
    ("de", lambda g: g[0].__setitem__("entry_rsp", g[0]["entry_rsp"] - 8), "entry RSP"),
    ("ud", lambda g: g[0].__setitem__("vector", 13), "delivered"),
    ("gp-noncanonical", lambda g: g[0]["plant"].__setitem__("rsp", 0), "interrupted rsp"),
    ("nmi", lambda g: g.clear(), "recorded nothing"),
])
def test_the_agreement_check_fails_when_one_observed_word_differs(gdb_fires, scenario, alter, needle):
    r = next(r for r in gdb_fires if r.scenario.name == scenario)
    obs = copy.deepcopy(r.observation)
    assert check_observers_agree(obs, get(scenario)).verdict is Verdict.PASS
    alter(obs.guest)
    c = check_observers_agree(obs, get(scenario))
    assert c.verdict is Verdict.FAIL and any(needle in e for e in c.evidence), c.evidence


def test_the_guest_observer_judges_like_gdb_on_tcg(kernel, gdb_fires, tmp_path):
    with Session(kernel, profiles.load("tcg"), debug_log="int", log_dir=tmp_path) as s:
        s.boot_to_ready()
        guest = fire_in_session(s, [(sc, "stub") for sc in CATALOG], observer="guest")
    assert [(r.scenario.name, r.outcome) for r in guest] == [(r.scenario.name, r.outcome) for r in gdb_fires]
    for g, d in zip(guest, gdb_fires):  # two VMs of one kernel: the same addresses and frames
        ge, de = g.observation.entry, d.observation.entry
        assert (ge is None) == (de is None), g.scenario.name
        if ge is not None:
            words = slice(2, 5) if g.scenario.rip == RIP_LOOP else slice(0, 5)  # an NMI lands anywhere in its loop
            assert (ge["rsp"], ge["stack"][words]) == (de["rsp"], de["stack"][words]), g.scenario.name


def test_cli_observer_choice(kernel):
    r = lab_cli("fire", "de", "ud", "--observer", "gdb", "--json", "--kernel", str(kernel))
    assert r.returncode == 0, r.stderr
    assert {o["observation"]["observer"] for o in json.loads(r.stdout)} == {"gdb"}
    r = lab_cli("fire", "de", "--json", "--kernel", str(kernel))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["observation"]["observer"] == "guest"


@needs_kvm
def test_ring3_on_kvm_finishes_and_says_what_happened(kernel):
    r = lab_cli("ring3", "--profile", "kvm", "--ready-timeout", "60", "--json", "--kernel", str(kernel), timeout=180)
    assert r.returncode in (0, 1) and "timed out" not in r.stderr, r.stderr
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    if "syscall.reached" in checks:  # this host's KVM leaves SYSCALL at CPL 3
        assert checks["syscall.reached"]["verdict"] == "FAIL"
        assert "user fault name=hello" in " ".join(checks["syscall.reached"]["evidence"])
    else:
        assert checks["syscall.rcx-r11"]["verdict"] == "PASS"


@needs_kvm
def test_claims_on_kvm_run_and_name_their_backend(kernel):
    r = lab_cli("claims", "--profile", "kvm", "--json", "--kernel", str(kernel), timeout=600)
    assert r.returncode == 0, r.stderr
    claims = json.loads(r.stdout)
    assert claims and all("accel kvm" in c["measured_on"] and "QEMU" in c["measured_on"] for c in claims)
    assert all(c["evidence"] for c in claims)


def test_the_shells_dump_and_the_memory_read_give_the_same_records(kernel, tmp_path):
    """`observed` over serial (no debugger needed) and a gdb read of LAB_OBSERVER decode alike."""
    from lab.labkernel.layouts import OBSERVER_SIZE, OBSERVER_SYMBOL
    from lab.labkernel.observer import decode_buffer, parse_dump

    with Session(kernel, profiles.load("tcg"), log_dir=tmp_path) as s:
        s.boot_to_ready()
        s.gdb.cont()
        s.serial.command("observed")  # drop what came before
        for line in ("fire de stub", "fire pf-read", "fire db-tf"):
            s.serial.command(line)
        dump = parse_dump(s.serial.command("observed"))
        s.gdb.interrupt()
        raw = s.gdb.read_memory(s.symbols.lookup(OBSERVER_SYMBOL).address, OBSERVER_SIZE)
    assert [r.vector for r in dump.records] == [0, 14, 1] and dump.lost == 0
    assert decode_buffer(raw, after=dump.count - 3).records == dump.records
    assert [r.plant["fire"] for r in dump.records] == sorted({r.plant["fire"] for r in dump.records})
