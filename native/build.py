"""cffi build script (API mode): one compiled module, lowlevel._native.

Run by setuptools through `cffi_modules` in pyproject.toml at install time.
"""

import importlib.util
import os
import shlex
import subprocess
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
# must match lowlevel/_ffi.py; bump when a binding changes
NATIVE_VERSION = "8"


def _load(name):
    path = os.path.join(HERE, "bindings", name + ".py")
    spec = importlib.util.spec_from_file_location("barerun_binding_" + name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# the exec stub (native/execstub.c): a freestanding static program, a few KB
STUB_CFLAGS = ["-static", "-nostdlib", "-ffreestanding", "-fno-builtin",
               "-fno-tree-loop-distribute-patterns", "-Os", "-fno-stack-protector",
               "-fno-asynchronous-unwind-tables", "-fno-pie", "-no-pie",
               "-Wl,--build-id=none", "-s", "-Wall", "-Werror"]


def build_exec_stub():
    """Compile native/execstub.c; returns the C source of a byte array
    holding the program, compiled into the module (no file to install)."""
    cc = shlex.split(os.environ.get("CC", "cc"))
    with tempfile.TemporaryDirectory(prefix="barerun-stub-") as tmp:
        out = os.path.join(tmp, "stub")
        subprocess.run([*cc, *STUB_CFLAGS, "-o", out, os.path.join(HERE, "execstub.c")],
                       check=True)
        with open(out, "rb") as f:
            data = f.read()
    body = ",".join(str(b) for b in data)
    return ("static const unsigned char BARERUN_EXEC_STUB[] = {%s};\n"
            "static const size_t BARERUN_EXEC_STUB_LEN = %d;\n" % (body, len(data)))


def build_ffi():
    index = _load("__init__")
    mods = [_load(name) for name in index.MODULES]
    ffi = FFI()
    ffi.cdef("static const char *const BARERUN_NATIVE_VERSION;")
    ffi.cdef("static const unsigned char BARERUN_EXEC_STUB[];\n"
             "static const size_t BARERUN_EXEC_STUB_LEN;")
    for mod in mods:
        ffi.cdef(mod.TYPES)
        ffi.cdef(mod.FUNCTIONS)
    source = "#define _GNU_SOURCE 1\n"
    source += "".join(mod.INCLUDES for mod in mods)
    source += 'static const char *const BARERUN_NATIVE_VERSION = "%s";\n' % NATIVE_VERSION
    source += "".join(mod.CUSTOMIZATIONS for mod in mods)
    source += build_exec_stub()
    # libraries a binding links (libseccomp), in the order bindings list them
    libraries = []
    for mod in mods:
        libraries += [lib for lib in getattr(mod, "LIBRARIES", []) if lib not in libraries]
    ffi.set_source("lowlevel._native", source, libraries=libraries,
                   extra_compile_args=["-O2", "-Wall"])
    return ffi


ffibuilder = build_ffi()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
