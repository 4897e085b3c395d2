"""Binding files for barerun's compiled module, one per kernel concern.

Each module defines INCLUDES (C headers), TYPES and FUNCTIONS (declarations
handed to cffi's cdef) and CUSTOMIZATIONS (C code compiled into the module:
raw syscall wrappers and HAS_* feature flags), and optionally LIBRARIES:
the shared libraries it links (only seccomp: libseccomp).
"""

MODULES = ["sched", "mount", "pidfd", "tty", "prctl", "misc", "bpf", "seccomp"]
