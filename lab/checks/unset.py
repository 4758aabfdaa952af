"""Tables the kernel has not set yet, judged (lab/target/unset.py reads them without an error).

- idt.loaded: the IDTR names an IDT. One that names none (limit 0, or the real-mode IVT a loader
  left) is WARN with interrupts disabled: a kernel stopped before `lidt`, which is wrong only if it
  enables interrupts before loading one (an NMI or exception now would triple-fault, as on every
  kernel before its `lidt`). With RFLAGS.IF=1 it is FAIL: the next external interrupt finds no
  gate (#GP, then #DF, then a triple fault).
- state.readable: every table a register names was read. One gdb cannot read (its address is
  not mapped) is FAIL when an event now makes the CPU read it (the IDT once loaded; the GDT and
  TSS once an IDT is loaded), else WARN naming when the CPU first reads it.
- gdt.owner: with no IDT loaded yet and the kernel's symbols, a GDT inside no symbol is a table
  the loader left (INFO).
When the IDT is not loaded or cannot be read, the checks that read it, and the TSS (which only
interrupt delivery reads), are SKIP naming why: one fact, one finding."""

from __future__ import annotations

from dataclasses import replace

from lab.checks.base import Check, Checks, Verdict
from lab.checks.view import View
from lab.target.unset import idt_unloaded, interrupts_enabled

TIER = "generic"
C = Checks(TIER)
#: checks that read each structure (ids, or id prefixes ending in "."), skipped without it
NEEDS = {"IDT": ("idt.", "tss.", "lab-kernel:"), "GDT": ("gdt.null", "idt.selector", "tss.tr-descriptor"),
         "TSS": ("tss.", "idt.df-ist")}


def no_idt(v: View) -> str | None:
    idtr = v.state.cpu.idtr
    return idt_unloaded(idtr.base, idtr.limit)


def idt_loaded(v: View) -> Check:
    title = "the IDTR names an IDT the kernel loaded"
    why = no_idt(v)
    if why is None:
        idtr = v.state.cpu.idtr
        return C.make("idt.loaded", title, Verdict.PASS, (f"IDTR base {idtr.base:#x} limit {idtr.limit:#x}",))
    rip = v.state.cpu.values.get("RIP")
    at = f" at RIP {rip:#x}" if rip is not None else ""
    if interrupts_enabled(v.state.cpu.values):
        return C.fail("idt.loaded", title, (
            f"{why}, and RFLAGS.IF=1{at}: the next external interrupt finds no gate (#GP, then #DF, then a "
            f"triple fault); a kernel that enables interrupts must load an IDT first",))
    return C.warn("idt.loaded", title, (
        f"{why}; RFLAGS.IF=0{at}, so no external interrupt is taken now: stopped before lidt, the state of "
        f"every kernel early in boot; wrong if the kernel enables interrupts (sti) before it loads an IDT, "
        f"and an NMI or exception before then triple-faults",))


def _reads_now(v: View, name: str) -> str | None:
    """Why an event now makes the CPU read structure `name`, or None."""
    if name == "IDT":
        return "every interrupt, NMI or exception reads its gate there"
    if no_idt(v) is None and "IDT" not in v.state.unread:
        return "an IDT is loaded, so every interrupt or exception reads it"
    return None


def readable(v: View) -> Check:
    title = "every table the CPU's registers name can be read (IDT, GDT, TSS)"
    fail, warn = [], []
    for name, why in v.state.unread.items():
        now = _reads_now(v, name)
        if now:
            fail.append(f"{why}: {now}")
        else:
            warn.append(f"{why}: no IDT is loaded yet, so no event reads it now; wrong once the kernel "
                        f"loads an IDT with this {name} still in place")
    return C.findings("state.readable", title, "IDT, GDT and TSS read at the addresses the registers name",
                      fail=fail, warn=warn)


def gdt_owner(v: View) -> Check | None:
    if no_idt(v) is None or not len(v.symbols) or "GDT" in v.state.unread:
        return None
    base = v.state.cpu.gdtr.base
    where = v.symbols.resolve(base)
    if where is not None:
        return None  # the kernel's own
    return C.info("gdt.owner", "whose GDT is loaded", (
        f"GDT at {base:#x} (GDTR limit {v.state.cpu.gdtr.limit:#x}) is inside no kernel symbol: the table a "
        f"loader left, as expected before the kernel loads its own",))


def _needs(check: Check, name: str) -> bool:
    return any(check.id == n or (n.endswith(".") and check.id.startswith(n)) or n == f"{check.tier}:"
               for n in NEEDS[name])


def _skipped(check: Check, missing: dict[str, str]) -> Check:
    for name, why in missing.items():
        if _needs(check, name):
            return replace(check, verdict=Verdict.SKIP, evidence=(why,))
    return check


def judge(v: View, checks: list[Check]) -> list[Check]:
    """The findings above first, then `checks` with those that read a table the CPU does not
    have (or the lab could not read) SKIP, naming why."""
    missing = {}
    why = no_idt(v)
    if why is not None:
        missing["IDT"] = "no IDT loaded yet (idt.loaded): nothing reads the IDT or the TSS until one is"
    for name, text in v.state.unread.items():
        missing.setdefault(name, f"the {name} cannot be read (state.readable)")
    own = [idt_loaded(v), readable(v)] + [c for c in (gdt_owner(v),) if c is not None]
    return own + [_skipped(c, missing) for c in checks]
