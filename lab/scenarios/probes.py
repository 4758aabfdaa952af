"""Fatal-path experiments: the double fault on its IST stack, the control that must survive,
and the triple-fault probes. Each runs in a fresh VM with -no-reboot (`lab probe`).

Expected chains are in QEMU's `check_exception` terms (lab/target/qemu_log.py `chain`): an
exception raised while another is being delivered, Table 6-5 turning the pair into #DF, and a
fault during #DF delivery ending in a triple fault (SDM vol. 3A §6.15, Interrupt 8).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.scenarios import by_name

TRIPLE_FAULT, DOUBLE_FAULT_HALT, SURVIVES = "triple fault", "double fault, halted", "survives"


@dataclass(frozen=True)
class Probe:
    name: str
    command: str  # the kernel shell line that breaks something and triggers it
    expected: str  # TRIPLE_FAULT | DOUBLE_FAULT_HALT | SURVIVES
    chain: tuple[str, ...]
    summary: str
    # Whether this host's KVM can run a triple-fault probe is measured per host, without gdb
    # (lab/experiments/kvm_probe.py), not written here.


CATALOG: tuple[Probe, ...] = (
    Probe("double-fault", "overflow halt", DOUBLE_FAULT_HALT, ("#PF", "#PF", "#DF"),
          "recursion runs into the guard page; the #PF cannot be pushed; #DF on IST1"),
    Probe("control", "overflow recover", SURVIVES, ("#PF", "#PF", "#DF"),
          "the same overflow with #DF on IST1: handled, the shell restarts and answers"),
    Probe("df-no-ist", "probe df-no-ist", TRIPLE_FAULT, ("#PF", "#PF", "#DF", "#PF", "triple fault"),
          "#DF gate without IST, then the stack overflow"),
    Probe("idt-limit0", "probe idt-limit0", TRIPLE_FAULT, ("#GP", "#GP", "#DF", "#GP", "triple fault"),
          "IDTR limit 0, then int3"),
    Probe("df-not-present", "probe df-not-present", TRIPLE_FAULT,
          ("#GP", "#NP", "#DF", "#NP", "triple fault"),
          "#DF and #GP gates not present, then a #GP"),
    Probe("ist-unmapped", "probe ist-unmapped", TRIPLE_FAULT, ("#PF", "#PF", "#DF", "#PF", "triple fault"),
          "IST1 points into unmapped memory, then the overflow that needs it"),
    Probe("gate-bad-selector", "probe gate-bad-selector", TRIPLE_FAULT,
          ("#GP", "#GP", "#DF", "#GP", "triple fault"),
          "every gate's selector names the data segment (a wrong CS in the IDT), then int3"),
)

BY_NAME = {p.name: p for p in CATALOG}


def get(name: str) -> Probe:
    return by_name(BY_NAME, name, "probe", "probes")
