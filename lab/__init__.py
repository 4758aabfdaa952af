"""The x86-64 kernel test lab: boot a kernel under QEMU, drive it over gdb and its serial
console, decode its descriptor tables and check them against the Intel SDM / AMD APM.

Data flows one way (see docs/how-it-works.md):
machine/ (processes) -> target (raw state) -> x86/ (decoders) -> checks/ -> render / cli.
"""

__version__ = "0.1.0"
