"""Each check's rule, for the check catalog (docs/gen.py reads `RULES` from every
lab/checks module with `ast`): when it FAILs and when it WARNs.

The rule behind them all (docs/checks.md "Severities"): FAIL says that an event which can
happen in the CPU's state at the stop (an interrupt, an NMI, an exception arriving now) goes
wrong; what goes wrong only after the kernel does something it has not done yet (runs code
in ring 3, turns a feature on) is a WARN naming that condition."""

from __future__ import annotations

RULES = {
    "idt.loaded": "FAIL: the IDTR names no IDT (limit below one gate, or the real-mode IVT) with RFLAGS.IF=1: the "
                  "next external interrupt finds no gate. WARN: the same with IF=0, a kernel stopped before "
                  "lidt (wrong once it enables interrupts first)",
    "state.readable": "FAIL: a table the registers name cannot be read and an event now reads it (the IDT; the GDT "
                      "or TSS once an IDT is loaded). WARN: the GDT or TSS unreadable while no IDT is loaded",
    "gdt.owner": "INFO: no IDT loaded yet and the GDT inside no kernel symbol: the loader's table",
    "idt.limit": "FAIL: IDTR does not cover vectors 0-31 in whole 16-byte gates: an exception now can find no gate",
    "idt.offset-canonical": "FAIL: a present gate's handler offset is not canonical: delivery through it faults (#GP)",
    "idt.gate-type": "FAIL: a present gate is not a 64-bit interrupt or trap gate, or has reserved bits set (#GP "
                     "on delivery)",
    "idt.selector": "FAIL: a present gate's selector names no present 64-bit ring-0 code descriptor (#GP or #NP "
                    "on delivery)",
    "gdt.null": "FAIL: GDT entry 0 is not the null descriptor",
    "smp.started": "INFO: a CPU not in long mode (never started) is listed and left out of the comparisons",
    "smp.idt-shared": "WARN: a CPU's IDT holds other gates than CPU 0's (legal per-CPU IDTs: waive it). PASS: one "
                      "IDT, or copies with the same gates",
    "tss.tr-descriptor": "FAIL: TR selects no present busy TSS64 of 104 bytes, or TR is null while an IST gate "
                         "or the CPU at CPL > 0 needs one. WARN: TR null, needed only once ring 3 runs "
                         "(user code descriptor, LDT or EFER.SCE, CPU in ring 0). INFO: TR null, nothing needs it",
    "tss.stack-alignment": "FAIL: an IST slot in use is 0 or not canonical; RSP0 is, with the CPU at CPL > 0 at the "
                           "stop. WARN: RSP0 0 or not canonical with ring 3 possible but the CPU in ring 0 (the "
                           "first event in ring 3 would break); a pointer not 16-byte aligned. INFO: RSP0 never "
                           "loaded (nothing runs outside ring 0)",
    "tss.stacks-mapped": "FAIL: the first push below an IST slot in use is not mapped writable; below RSP0, with the "
                         "CPU at CPL > 0. WARN: RSP0's with ring 3 possible but the CPU in ring 0; an IST used only "
                         "by #VC while SEV-ES is not active. INFO: RSP0 never loaded. SKIP: no stack to walk",
    "idt.df-ist": "FAIL: #DF has no present gate, or its IST slot is 0, or equals (shares a symbol with) RSP0 while "
                  "the CPU is at CPL > 0. WARN: #DF on IST 0; its IST equal to RSP0 with the CPU in ring 0",
    "tss.stacks-distinct": "FAIL: two IST slots in use point to one stack (or overlap); one of them and RSP0, with "
                           "the CPU at CPL > 0. WARN: RSP0 shared with the CPU in ring 0. SKIP: no stack in use",
    "smp.stacks-mapped": "As tss.stacks-mapped, on each AP from its own CR3 (CPU 0 is tss.stacks-mapped's). An AP's "
                         "WARN or INFO that repeats CPU 0's (same slot, problem, severity): one INFO line naming "
                         "the CPUs. A FAIL is never folded",
    "smp.stacks-distinct": "FAIL: a stack pointer shared by two CPUs that can both take an event on it now (an IST; "
                           "RSP0 of a CPU at CPL > 0). WARN: shared only through RSP0 of a CPU in ring 0",
    "smp.tr-own-tss": "FAIL: a CPU's TR fails tss.tr-descriptor, or two CPUs load one TSS. WARN and INFO: as "
                      "tss.tr-descriptor, per CPU",
    "smp.gs-distinct": "FAIL: two CPUs share a non-zero kernel GS base. WARN: 0 on some CPUs while others have one "
                       "(legal until that CPU reads GS). INFO: 0 on all",
    "idt.handler-mapped": "FAIL: a present gate's handler cannot be fetched at CPL 0 (not mapped, XD, user page "
                          "under SMEP): delivery faults now. SKIP: page tables not read",
    "idt.handler-symbol": "FAIL: a handler outside every symbol where no code can be fetched. WARN: outside every "
                          "symbol, page tables not read. INFO: outside every symbol in mapped executable memory",
}
