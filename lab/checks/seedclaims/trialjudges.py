"""Judges of one backend's kernel trials (lab/experiments/trial.py, kernel/src/trial): each a
function of a TrialObservation alone, returning a verdict and evidence lines. Folded over
the backends by backends.on_trials."""

from __future__ import annotations

from lab.checks.claim_evidence import HOLDS, HOLDS_IF, REFUTED, UNMEASURED
from lab.x86.doublefault import CAUSES, expected_vector, exception_class
from lab.x86.frames import INTERRUPT_FRAME
from lab.x86.vectors import DF, mnemonic

#: Bytes the CPU pushes in 64-bit mode without an error code: SS, RSP, RFLAGS, CS, RIP.
FRAME = INTERRUPT_FRAME.size
STACK_ALIGN = 16


def _vectors(v) -> list[int]:
    return v if isinstance(v, list) else [v]


def _hexes(vs) -> str:
    return ",".join(f"{v:#x}" for v in _vectors(vs)) or "none"


# -- exceptions raised while delivering another (trial pairs) ---------------------------------

def _pair_name(p) -> str:
    return f"#{mnemonic(p['first_vector']).lstrip('#')}/{p['cause']}"


#: The trial's non-canonical address (kernel/src/trial/pairs.rs NONCANONICAL).
NONCANONICAL = 1 << 63


def _during_delivery(p) -> bool:
    """The second exception came while the first was being delivered: not a #GP at the
    handler's first fetch after a complete delivery (the frame pushed, RIP the non-canonical
    handler address: TCG checks a gate's address only when it fetches there)."""
    return not (p["cause"] == "noncanonical-handler" and p["vector"] != DF and p["rip"] == NONCANONICAL)


def pairs_table(obs):
    """Each pair against SDM Table 6-5."""
    if len(obs.pairs) < len(CAUSES):
        return UNMEASURED, ["the pairs trial gave too few lines"]
    same = [p for p in obs.pairs if p["vector"] == expected_vector(p["first_vector"], p["cause"])]
    late = [p for p in obs.pairs if p not in same and not _during_delivery(p)]
    wrong = [p for p in obs.pairs if p not in same and p not in late]
    e = [f"{len(same)} of {len(obs.pairs)} pairs as Table 6-5 (e.g. "
         + ", ".join(f"{_pair_name(p)} -> {mnemonic(p['vector'])}" for p in same[:3]) + ")"]
    if late:
        e.append("handler address checked only at the fetch, after the frame was pushed: "
                 + ", ".join(f"{_pair_name(p)} -> #GP at RIP {p['rip']:#x}" for p in late))
    if wrong:
        e.append("against the table: " + ", ".join(
            f"{_pair_name(p)} -> {mnemonic(p['vector'])} (table: {mnemonic(expected_vector(p['first_vector'], p['cause']))})"
            for p in wrong))
        return REFUTED, e
    return (HOLDS_IF if late else HOLDS), e + (["condition: the fault happens during the delivery"] if late else [])


def any_fault_in_delivery_is_df(obs):
    """The tutorial's rule: every exception raised while delivering another becomes #DF."""
    during = [p for p in obs.pairs if _during_delivery(p)]
    if not during:
        return UNMEASURED, ["no pair faulted during its delivery"]
    serial = [p for p in during if p["vector"] != DF]
    if serial:
        return REFUTED, [f"{len(serial)} of {len(during)} pairs were handled one after the other: "
                         + ", ".join(f"{_pair_name(p)} -> {mnemonic(p['vector'])}" for p in serial[:4])]
    return HOLDS, [f"all {len(during)} pairs that faulted during delivery gave #DF"]


def benign_first_serial(obs):
    """A benign first exception never makes a #DF: the second is delivered."""
    benign = [p for p in obs.pairs if exception_class(p["first_vector"]) == "benign" and _during_delivery(p)]
    if not benign:
        return UNMEASURED, ["no benign first exception measured"]
    df = [p for p in benign if p["vector"] == DF]
    e = [f"{len(benign) - len(df)} of {len(benign)} pairs after #UD/#NM delivered the second exception"]
    if df:
        return REFUTED, e + ["#DF instead: " + ", ".join(_pair_name(p) for p in df)]
    return HOLDS, e + [", ".join(f"{_pair_name(p)} -> {mnemonic(p['vector'])}({p['error']:#x})"
                                 for p in benign if p["cause"] == "not-present")]


# -- CR3 and the TLB (trial tlb) ---------------------------------------------------------------

def _tlb_usable(obs):
    t = obs.tlb
    if not t:
        return "the tlb trial did not run"
    if t["no_event"] != "stale":
        return ("a changed PTE was used at once with no flush at all (the hypervisor traps page-table "
                "writes: shadow paging), so no flush can be seen")
    if t["invlpg_global"] != "fresh":
        return "INVLPG did not drop the translation"
    return None


def cr3_flushes_tlb(obs):
    """The tutorial: writing CR3 flushes the TLB."""
    why = _tlb_usable(obs)
    if why:
        return UNMEASURED, [why]
    t = obs.tlb
    e = [f"after mov cr3: non-global {t['cr3_nonglobal']}, global (CR4.PGE=1) {t['cr3_global']}"
         + (f"; PCIDE with CR3 bit 63: {t['pcid_noflush_nonglobal']}" if t["pcid"] else "; CPUID offers no PCID")]
    if t["cr3_nonglobal"] == "stale":
        return REFUTED, e
    if t["cr3_global"] == "stale" or t.get("pcid_noflush_nonglobal") == "stale":
        return HOLDS_IF, e + ["condition: only for non-global translations and without the no-flush bit"]
    return HOLDS_IF, e + ["condition: on a CPU only for non-global translations (the SDM, §4.10.4.1, keeps global "
                          "ones; this backend flushed them too)"]


def global_survives_cr3(obs):
    """A global translation (CR4.PGE=1) survives a CR3 write."""
    why = _tlb_usable(obs)
    if why:
        return UNMEASURED, [why]
    g = obs.tlb["cr3_global"]
    return (HOLDS if g == "stale" else REFUTED), [f"global entry after mov cr3 (same value): {g}; "
                                                  f"the kernel had CR4.PGE={obs.tlb['pge_was']} (set for the trial)"]


# -- a missing EOI (trial eoi) -----------------------------------------------------------------

LOW, MID, SAME, HIGH = 0x48, 0x52, 0x58, 0x62


def _eoi_usable(obs):
    e = obs.eoi
    if not e or "first" not in e or _vectors(e["first"]) != [MID]:
        return "the first self-IPI did not arrive"
    return None


def _eoi_line(obs) -> str:
    e = obs.eoi
    return (f"0x52 in service (no EOI); then 0x48, 0x58, 0x62 sent: arrived {_hexes(e['then_low_same_high'])}; "
            f"ISR {_hexes(e['in_service'])}, IRR {_hexes(e['pending'])}; after each EOI: "
            + ", ".join(_hexes(e[f"eoi{i}"]) for i in range(1, 5)))


def never_again_without_eoi(obs):
    """The tutorial: without an EOI the local APIC never interrupts the core again."""
    why = _eoi_usable(obs)
    if why:
        return UNMEASURED, [why]
    more = _vectors(obs.eoi["then_low_same_high"])
    return (REFUTED if more else HOLDS), [_eoi_line(obs)]


def only_higher_class_without_eoi(obs):
    """Without an EOI only a higher priority class than the one in service arrives."""
    why = _eoi_usable(obs)
    if why:
        return UNMEASURED, [why]
    e = obs.eoi
    ok = (_vectors(e["then_low_same_high"]) == [HIGH] and not _vectors(e["eoi1"])
          and _vectors(e["eoi2"]) == [SAME] and _vectors(e["eoi3"]) == [LOW])
    return (HOLDS if ok else REFUTED), [_eoi_line(obs)]


# -- stacks and swapgs (trials stacks, swapgs) -----------------------------------------------

def _stack(obs, cpl, ist):
    return next((s for s in obs.stacks if s["from"] == cpl and s["ist"] == ist), None)


def _expected_entry(s) -> int:
    if s["ist"]:
        top = s["ist_top"]
    elif s["from"] == 3:
        top = s["rsp0"]
    else:
        top = s["rsp_before"]
    return top // STACK_ALIGN * STACK_ALIGN - FRAME


def _stack_line(s) -> str:
    where = "IST slot" if s["ist"] else ("TSS.RSP0" if s["from"] == 3 else "the interrupted stack")
    return f"ring {s['from']}, IST {s['ist']}: frame at {s['entry_rsp']:#x} ({where})"


def stacks_by_rule(kinds):
    """A judge: the cases `kinds` ((cpl, ist) pairs) start their frame where the manual says."""
    def judge(obs):
        cases = [_stack(obs, c, i) for c, i in kinds]
        if any(s is None for s in cases):
            return UNMEASURED, ["the stacks trial gave too few lines"]
        bad = [s for s in cases if s["entry_rsp"] != _expected_entry(s)]
        return (REFUTED if bad else HOLDS), ["; ".join(_stack_line(s) for s in cases)]
    return judge


def old_rsp_pushed(obs):
    """SS and RSP are pushed in every case, the RSP as it was before the alignment."""
    if len(obs.stacks) < 4:
        return UNMEASURED, ["the stacks trial gave too few lines"]
    bad = [s for s in obs.stacks if s["saved_rsp"] != s["rsp_before"]]
    r0 = _stack(obs, 0, 0)
    return (REFUTED if bad else HOLDS), [
        f"{len(obs.stacks) - len(bad)} of {len(obs.stacks)} frames hold the interrupted RSP; ring 0: saved RSP "
        f"{r0['saved_rsp']:#x} (RSP {r0['rsp_before']:#x}, 8 mod 16), saved SS {r0['saved_ss']:#x}"]


def cpl_in_cs(obs):
    """The privilege level is CS's low two bits."""
    r0, r3 = _stack(obs, 0, 0), _stack(obs, 3, 0)
    if not r0 or not r3:
        return UNMEASURED, []
    ok = r0["saved_cs"] & 3 == 0 and r3["saved_cs"] & 3 == 3
    return (HOLDS if ok else REFUTED), [f"saved CS from ring 0 {r0['saved_cs']:#x}, from ring 3 {r3['saved_cs']:#x}"]


def cpu_swaps_gs(obs):
    """The tutorial: the CPU executes swapgs on an interrupt."""
    g = obs.swapgs
    if not g:
        return UNMEASURED, []
    swapped = [k for k in ("ring0_handler_gs", "ring3_handler_gs") if g[k] != g["gs"]]
    return (HOLDS if swapped else REFUTED), [
        f"GS base {g['gs']:#x}, kernel GS base {g['kernel_gs']:#x}: the handler saw {g['ring0_handler_gs']:#x} "
        f"(from ring 0) and {g['ring3_handler_gs']:#x} (from ring 3): unswapped"]


def swapgs_twice(obs):
    """swapgs exchanges the two bases; a second one exchanges them back."""
    g = obs.swapgs
    if not g:
        return UNMEASURED, []
    one = g["after_one_gs"] == g["kernel_gs"] and g["after_one_kernel_gs"] == g["gs"]
    two = g["after_two_gs"] == g["gs"] and g["after_two_kernel_gs"] == g["kernel_gs"]
    return (HOLDS if one and two else REFUTED), [
        f"one swapgs: GS {g['after_one_gs']:#x}, kernel GS {g['after_one_kernel_gs']:#x}; "
        f"a second: GS {g['after_two_gs']:#x}, kernel GS {g['after_two_kernel_gs']:#x}"]
