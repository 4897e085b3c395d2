"""The four file operations a cgroup filesystem understands.

Everything the kernel offers through cgroups is a directory (a cgroup) or a
small text file in it (an interface file such as ``cgroup.procs`` or
``memory.limit_in_bytes``).  Creating a cgroup is ``mkdir``, removing it is
``rmdir``, and every setting is one ``write`` of a short string.  Each
function here is one such kernel operation: writes, mkdirs and rmdirs are
traced, and a failure raises ``OSError(errno, "<op> on <path>: <strerror>")``.
"""

from __future__ import annotations

import os

from ..tracing import error, trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import TypeAlias

    #: a "key value" file: numbers as ints, anything else ("max") as text
    Keyed: TypeAlias = dict[str, int | str]
    #: what the stats_* functions of v1 and v2 return (None: "max", no limit)
    Stats: TypeAlias = dict[str, int | str | None]

_O_READ = os.O_RDONLY | os.O_CLOEXEC
_O_WRITE = os.O_WRONLY | os.O_CLOEXEC


def read(path: str) -> str:
    """The text of an interface file, without its trailing newline."""
    try:
        fd = os.open(path, _O_READ)
    except OSError as exc:
        raise error(exc.errno, f"read on {path}") from None
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise error(exc.errno, f"read on {path}") from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode().rstrip("\n")


def read_keyed(path: str) -> Keyed:
    """A "key value" file (cpu.stat, memory.stat, cgroup.events) as a dict
    of ints (values that are not numbers, such as "max", stay strings)."""
    out: Keyed = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        value = value.strip()
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def write(path: str, value: object) -> None:
    """Write one value to an interface file (one write(2), as the kernel
    parses each write as a whole)."""
    text = str(value)
    trace("cgroup.write", path=path, value=text)
    try:
        fd = os.open(path, _O_WRITE)
    except OSError as exc:
        raise error(exc.errno, f"write {text!r} on {path}") from None
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        raise error(exc.errno, f"write {text!r} on {path}") from None
    finally:
        os.close(fd)


def mkdir(path: str) -> bool:
    """Create one cgroup directory; True if made, False if it existed.

    The kernel fills the new directory with the interface files of every
    controller attached to the hierarchy."""
    trace("cgroup.mkdir", path=path)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return False
    except OSError as exc:
        raise error(exc.errno, f"mkdir on {path}") from None
    return True


def rmdir(path: str) -> None:
    """Remove one cgroup directory.  The kernel refuses (EBUSY) while it
    still holds processes or child cgroups; the interface files inside do
    not count and vanish with it."""
    trace("cgroup.rmdir", path=path)
    try:
        os.rmdir(path)
    except OSError as exc:
        raise error(exc.errno, f"rmdir on {path}") from None
