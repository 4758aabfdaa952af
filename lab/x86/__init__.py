"""Architecture-as-data for x86-64 descriptor tables (IDT, GDT, TSS).

This package is the only place in the lab where offsets and bit positions
live.  Every layout is declared once, as data (``bits.Layout`` /
``bits.Struct``), next to the Intel SDM vol. 3A / AMD APM vol. 2 section it
comes from, with a size assert.  Everything here is pure Python: it decodes
and encodes bytes and never talks to a guest.

Modules: ``bits`` (layout helpers), ``vectors`` (exception vectors 0-31),
``idt`` (64-bit gates), ``gdt`` (segment/system descriptors, selectors),
``tss`` (64-bit TSS), ``addr`` (canonical addresses).
"""
