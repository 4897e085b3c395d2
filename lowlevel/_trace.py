"""One logger for every kernel operation barerun performs.

Each lowlevel function reports its call to the ``barerun.trace`` logger at
DEBUG level (``trace("mount", source=..., target=...)``), so that
``barerun --trace`` can show a learner every syscall in the order it was
made.  When the logger is not enabled for DEBUG the cost is one cached
level check.
"""

import errno
import os

_log = None     # logging.getLogger("barerun.trace"), once logging is imported
_quiet = False  # see quiet()


def _logger():
    global _log
    if _log is None:
        import logging
        _log = logging.getLogger("barerun.trace")
    return _log


def quiet():
    """Turn tracing off for this process without importing logging.

    For the `barerun` command without --trace/--debug: it starts a fresh
    interpreter for every call, and importing logging is a measurable part
    of that.  The library never calls this; there the logger decides.
    """
    global _quiet
    _quiet = True


def trace(op, /, **args):
    """Report one kernel operation ``op`` with its arguments.

    ``op`` is positional-only, so an argument may itself be called "op"
    (``trace("prctl", op="PR_SET_KEEPCAPS")``).
    """
    if _quiet:
        return
    log = _log or _logger()
    if log.isEnabledFor(10):  # logging.DEBUG
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
