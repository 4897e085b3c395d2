"""One logger for every kernel operation barerun performs.

Each lowlevel function reports its call to the ``barerun.trace`` logger at
DEBUG level (``trace("mount", source=..., target=...)``), so that
``barerun --trace`` can show a learner every syscall in the order it was
made.  When the logger is not enabled for DEBUG the cost is one cached
level check.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    import logging

_log: logging.Logger | None = None  # logging.getLogger("barerun.trace"), once imported
_quiet = False  # see quiet()
_container = ""  # see Container


def _logger() -> logging.Logger:
    global _log
    if _log is None:
        import logging
        _log = logging.getLogger("barerun.trace")
    return _log


def quiet() -> None:
    """Turn tracing off for this process without importing logging.

    For the `barerun` command without --trace/--debug: it starts a fresh
    interpreter for every call, and importing logging is a measurable part
    of that.  The library never calls this; there the logger decides.
    """
    global _quiet
    _quiet = True


class Container:
    """``with tracing.Container(cid):`` every trace record made inside
    (also by a child forked meanwhile) carries ``container=cid``, so a
    learner sees which container each kernel step was for."""

    def __init__(self, cid: str) -> None:
        self.cid = cid
        self.before = ""

    def __enter__(self) -> Container:
        global _container
        self.before, _container = _container, self.cid
        return self

    def __exit__(self, *exc: object) -> None:
        global _container
        _container = self.before


def current_container() -> str:
    """The container id of the enclosing ``Container`` block, or ""."""
    return _container


def trace(op: str, /, **args: object) -> None:
    """Report one kernel operation ``op`` with its arguments.

    ``op`` is positional-only, so an argument may itself be called "op"
    (``trace("prctl", op="PR_SET_KEEPCAPS")``).
    """
    if _quiet:
        return
    log = _log or _logger()
    if log.isEnabledFor(10):  # logging.DEBUG
        text = " ".join(f"{k}={v!r}" for k, v in args.items())
        log.debug("%s %s", op, text, extra={"container": _container})


def error(err: int | None, what: str) -> OSError:
    """An OSError carrying ``err`` and a message naming what failed.

    ``what`` names the operation and its object, e.g. "mount proc on
    /rootfs/proc"; the message reads "mount proc on /rootfs/proc: Operation
    not permitted".  The result is the matching OSError subclass
    (FileNotFoundError for ENOENT, ...).  ``err`` is usually a caught
    exception's ``errno``, which may be None: the message then says so.
    """
    return OSError(err, f"{what}: {'unknown error' if err is None else os.strerror(err)}")


def proc_error(err: int | None, pid: int | str, what: str) -> OSError:
    """Like ``error`` for a failure on /proc/<pid>/...: when the process is
    gone (its /proc directory no longer exists) the error is ESRCH naming
    the pid, not a puzzling ENOENT on some file below it."""
    if (err == errno.ENOENT and str(pid) not in ("self", "thread-self")
            and not os.path.exists(f"/proc/{pid}")):
        return OSError(errno.ESRCH, f"{what}: no process with pid {pid}")
    return error(err, what)


def check(ret: int, what: str) -> int:
    """Raise from errno when a libc/syscall wrapper returned -1."""
    if ret == -1:
        from ._ffi import ffi
        raise error(ffi.errno, what)
    return ret
