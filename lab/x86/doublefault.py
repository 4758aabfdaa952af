"""Which pairs of exceptions make a double fault: Intel SDM vol. 3A §6.15, "Interrupt 8—Double
Fault Exception (#DF)", Table 6-4 (the classes) and Table 6-5 (the rule); AMD APM vol. 2
§8.2.9 says the same. Declared once, as data, for the nested-delivery trial
(kernel/src/trial/pairs.rs) and its judge."""

from __future__ import annotations

from lab.x86.vectors import DE, DF, GP, NP, PF, SS, TS

BENIGN, CONTRIBUTORY, PAGE_FAULT = "benign", "contributory", "page fault"

#: Table 6-4. Every vector not named is benign (#DB, NMI, #BP, #OF, #BR, #UD, #NM, #MF, #MC,
#: #XM, #VE and all external interrupts).
CLASS_OF: dict[int, str] = {DE: CONTRIBUTORY, TS: CONTRIBUTORY, NP: CONTRIBUTORY, SS: CONTRIBUTORY,
                            GP: CONTRIBUTORY, PF: PAGE_FAULT}
#: Contributory vectors in Table 6-4 (#DE, #TS, #NP, #SS, #GP) and the one page-fault vector.
assert sorted(CLASS_OF) == [DE, TS, NP, SS, GP, PF]


def exception_class(vector: int) -> str:
    return CLASS_OF.get(vector, BENIGN)


def makes_double_fault(first: int, second: int) -> bool:
    """Table 6-5: a second exception raised while delivering the first becomes #DF when both
    are contributory, or the first is a page fault and the second is not benign; otherwise the
    two are handled serially (the second is delivered)."""
    a, b = exception_class(first), exception_class(second)
    return (a == CONTRIBUTORY and b == CONTRIBUTORY) or (a == PAGE_FAULT and b != BENIGN)


#: The trial's four ways of breaking a delivery and the exception each raises by the manual
#: (SDM vol. 3A §6.12.1.1 and §6.14: a gate with P=0 gives #NP; a non-canonical handler address
#: #GP(0); a stack push to a not-present page #PF; a non-canonical stack from an IST slot
#: #SS(0) per the INT/interrupt pseudocode of vol. 2A "INT n").
CAUSES: dict[str, tuple[int, str]] = {
    "not-present": (NP, "the first vector's gate has P=0"),
    "noncanonical-handler": (GP, "the gate names a non-canonical handler address"),
    "pf-stack": (PF, "the gate's IST stack is an unmapped page"),
    "noncanonical-stack": (SS, "the gate's IST slot holds a non-canonical RSP"),
}


def expected_vector(first: int, cause: str) -> int:
    """The vector whose handler the CPU reaches first, by the manual."""
    second = CAUSES[cause][0]
    return DF if makes_double_fault(first, second) else second
