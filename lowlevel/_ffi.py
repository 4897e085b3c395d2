"""The compiled module, loaded once, with a version check.

native/build.py compiles ``lowlevel._native`` at install time; a module
left over from an older checkout would silently lack bindings, so its
version must match the one this package was written against.
"""

NATIVE_VERSION = "8"

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "barerun's compiled module lowlevel._native is missing; "
        "run `make setup` (pip install -e .) to build it") from exc

_built = ffi.string(lib.BARERUN_NATIVE_VERSION).decode()
if _built != NATIVE_VERSION:  # pragma: no cover
    raise ImportError(
        f"lowlevel._native was built as version {_built}, this source needs "
        f"{NATIVE_VERSION}; rebuild it with `make setup`")

__all__ = ["ffi", "lib"]
