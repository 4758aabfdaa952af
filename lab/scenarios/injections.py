"""The kernel-agnostic injections (lab/experiments/inject.py), as data: the one instruction
written at the stop, the registers it needs, and what the CPU must push (SDM vol. 3A §6.13,
§6.14.2)."""

from __future__ import annotations

from dataclasses import dataclass

from lab.scenarios import by_name
from lab.x86.vectors import BP, DE, GP, NMI, PF, UD, pushes_error_code


@dataclass(frozen=True)
class Injection:
    name: str
    vector: int
    code: bytes  # written at RIP
    regs: dict  # registers the instruction needs; "unmapped" / "non-canonical" are filled in
    rip_offset: int  # saved RIP - RIP at the stop: 0 for a fault, the length for a trap
    error_code: int | None  # what the CPU must push; None: the vector pushes none
    description: str


INJECTIONS = (
    Injection("de", DE, bytes.fromhex("f7f1"), {"rax": 1, "rdx": 0, "rcx": 0}, 0, None,
              "div ecx with ECX = 0: #DE, a fault"),
    Injection("bp", BP, bytes.fromhex("cc"), {}, 1, None,
              "int3: #BP, a trap: the saved RIP is the next instruction"),
    Injection("nmi", NMI, bytes.fromhex("cd02"), {}, 2, None,
              "int 2: the NMI gate through software, a trap-like entry: on the gate's IST stack if it names one"),
    Injection("ud", UD, bytes.fromhex("0f0b"), {}, 0, None, "ud2: #UD, a fault"),
    Injection("gp", GP, bytes.fromhex("488b00"), {"rax": "non-canonical"}, 0, 0,
              "mov rax, [rax] with a non-canonical RAX: #GP(0)"),
    Injection("pf", PF, bytes.fromhex("488b00"), {"rax": "unmapped"}, 0, 0,
              "mov rax, [rax] on a page no entry maps: #PF, error code 0 (read, not present, "
              "supervisor), CR2 = RAX"),
)
_BY_NAME = {i.name: i for i in INJECTIONS}


def get(name: str) -> Injection:
    return by_name(_BY_NAME, name, "injection", "choose from")


def selected(names: list[str]) -> list[Injection]:
    return list(INJECTIONS) if names == ["all"] else [get(n) for n in names]


def expected_error_code(injection: Injection) -> int | None:
    """`int n` never pushes an error code (SDM §6.13), whatever the vector."""
    software = injection.code[:1] == b"\xcd"
    return injection.error_code if pushes_error_code(injection.vector) and not software else None
