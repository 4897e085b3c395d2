"""One logger for every kernel operation barerun performs.

Each lowlevel function reports its call to the ``barerun.trace`` logger at
DEBUG level (``trace("mount", source=..., target=...)``), so that
``barerun --trace`` can show a learner every syscall in the order it was
made.  When the logger is not enabled for DEBUG the cost is one cached
level check.
"""

import errno
import logging
import os

log = logging.getLogger("barerun.trace")
_DEBUG = logging.DEBUG


def trace(op, /, **args):
    """Report one kernel operation ``op`` with its arguments.

    ``op`` is positional-only, so an argument may itself be called "op"
    (``trace("prctl", op="PR_SET_KEEPCAPS")``).
    """
    if log.isEnabledFor(_DEBUG):
        text = " ".join(f"{k}={v!r}" for k, v in args.items())
        log.debug("%s %s", op, text)


def error(err, what):
    """An OSError carrying ``err`` and a message naming what failed.

    ``what`` names the operation and its object, e.g. "mount proc on
    /rootfs/proc"; the message reads "mount proc on /rootfs/proc: Operation
    not permitted".  The result is the matching OSError subclass
    (FileNotFoundError for ENOENT, ...).
    """
    return OSError(err, f"{what}: {os.strerror(err)}")


def proc_error(err, pid, what):
    """Like ``error`` for a failure on /proc/<pid>/...: when the process is
    gone (its /proc directory no longer exists) the error is ESRCH naming
    the pid, not a puzzling ENOENT on some file below it."""
    if (err == errno.ENOENT and str(pid) not in ("self", "thread-self")
            and not os.path.exists(f"/proc/{pid}")):
        return OSError(errno.ESRCH, f"{what}: no process with pid {pid}")
    return error(err, what)


def check(ret, what):
    """Raise from errno when a libc/syscall wrapper returned -1."""
    if ret == -1:
        from ._ffi import ffi
        raise error(ffi.errno, what)
    return ret
