"""execve through a sealed copy of barerun's exec stub (native/execstub.c).

CVE-2019-5736 class.  A forked Python child that execs the container's
program directly has the host interpreter as /proc/self/exe at that
moment: a container entry point "#!/proc/self/exe" (or a fake ld-linux in
the image) is then run with the host interpreter mapped, and can keep an
fd to it to reopen for writing later.  Instead the child execs the stub
from a memfd sealed against writing, growing and shrinking
(``execveat(fd, "", AT_EMPTY_PATH)``), and the stub execs the program:
whatever the container does, /proc/self/exe at its execve is that sealed
anonymous file, which no one can write.

``stub_fd()`` makes the memfd once per process (the parent makes it
before forking; the child inherits it, close-on-exec); ``execve()``
replaces the calling process.
"""

from __future__ import annotations

import fcntl
import os

from ._ffi import ffi, lib
from .tracing import trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import NoReturn

SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE

_fd: int | None = None
_fd_pid: int | None = None


def stub_fd() -> int:
    """The sealed memfd holding the stub, made once per process."""
    global _fd, _fd_pid
    if _fd is not None and _fd_pid == os.getpid():
        return _fd
    fd = os.memfd_create("barerun-exec-stub", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        data = ffi.buffer(lib.BARERUN_EXEC_STUB, lib.BARERUN_EXEC_STUB_LEN)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, 0o555)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    trace("memfd_create", name="barerun-exec-stub", size=lib.BARERUN_EXEC_STUB_LEN,
          seals="F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE", fd=fd)
    _fd, _fd_pid = fd, os.getpid()
    return fd


def execve(fd: int, path: str, args: Sequence[str], env: Mapping[str, str],
           report_fd: int = -1) -> NoReturn:
    """Exec ``path`` with ``args`` and ``env`` through the stub in ``fd``.

    ``report_fd`` (inheritable here; the stub makes it close-on-exec)
    receives ``{"exec_errno": N}`` if the program's execve fails; without
    one the stub writes the errno to stderr.  Returns only if the stub
    itself cannot be executed (OSError)."""
    if report_fd >= 0:
        os.set_inheritable(report_fd, True)
    trace("execveat", fd=fd, flags="AT_EMPTY_PATH", then="execve", path=path, argv=list(args))
    os.execve(fd, ["barerun-exec", str(report_fd), path, *args], env)
