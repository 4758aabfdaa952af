"""Process owners: one class per process (QEMU, gdb), each a context manager that reaps its
process whatever happens, and `Session`, which composes them for one guest."""
