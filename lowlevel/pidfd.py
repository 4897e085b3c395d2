"""pidfds: a file descriptor that names one process, immune to pid reuse."""

from __future__ import annotations

import errno
import os
import select
from collections import namedtuple

from ._ffi import lib
from .tracing import check, error, proc_error, trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import NamedTuple, Self

    class _ProcessId(NamedTuple):
        pid: int
        start_time: int
else:
    _ProcessId = namedtuple("ProcessId", "pid start_time")

HAS_PIDFD = bool(lib.HAS_PIDFD)


def pidfd_open(pid: int) -> int:
    """pidfd_open(2): an fd referring to process ``pid`` (O_CLOEXEC)."""
    trace("pidfd_open", pid=pid)
    return check(lib.barerun_pidfd_open(pid, 0), f"pidfd_open pid {pid}")


def send_signal(pidfd: int, sig: int, pid: int | None = None) -> None:
    """pidfd_send_signal(2): signal exactly the process the pidfd names."""
    trace("pidfd_send_signal", pidfd=pidfd, signal=int(sig), pid=pid)
    what = f"pidfd_send_signal {int(sig)} to {f'pid {pid}' if pid else f'pidfd {pidfd}'}"
    check(lib.barerun_pidfd_send_signal(pidfd, int(sig), 0), what)


def get_fd(pidfd: int, target_fd: int) -> int:
    """pidfd_getfd(2): a copy of another process's fd ``target_fd``."""
    trace("pidfd_getfd", pidfd=pidfd, fd=target_fd)
    return check(lib.barerun_pidfd_getfd(pidfd, target_fd, 0),
                 f"pidfd_getfd fd {target_fd} from pidfd {pidfd}")


def wait_exit(pidfd: int, timeout: float | None = None) -> bool:
    """Wait until the process exits: a pidfd polls readable then.

    Returns True when it exited, False on timeout.  Works for any process,
    not just children.  A closed or invalid fd is an error (EBADF), not
    "exited".
    """
    trace("poll", pidfd=pidfd, timeout=timeout)
    if pidfd < 0:
        raise error(errno.EBADF, f"poll pidfd {pidfd}")
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    events = p.poll(ms)  # PEP 475: retried on EINTR with the remaining time
    for _fd, ev in events:
        if ev & select.POLLNVAL:
            raise error(errno.EBADF, f"poll pidfd {pidfd}")
    return bool(events)


def waitid(pidfd: int, options: int = os.WEXITED) -> int | None:
    """waitid(P_PIDFD): reap a child through its pidfd.

    Returns the exit status as a shell would: the code, or 128+signal.
    Returns None with WNOHANG when the child has not exited.
    """
    trace("waitid", idtype="P_PIDFD", pidfd=pidfd)
    try:
        res = os.waitid(os.P_PIDFD, pidfd, options)
    except OSError as exc:
        raise error(exc.errno, f"waitid P_PIDFD {pidfd}") from None
    if res is None:
        return None
    if res.si_code == os.CLD_EXITED:
        return res.si_status
    return 128 + res.si_status


class ProcessId(_ProcessId):
    """A process identity that survives pid reuse: pid + start time.

    The start time (field 22 of /proc/<pid>/stat, in clock ticks since
    boot) differs for any later process that gets the same pid.
    """
    __slots__ = ()

    @classmethod
    def of(cls, pid: int) -> Self:
        return cls(pid, start_time(pid))

    def alive(self) -> bool:
        """True when ``pid`` still names this very process (and it is not a zombie)."""
        try:
            st, state = _stat(self.pid)
        except OSError:
            return False
        return st == self.start_time and state not in ("Z", "X")

    def same_process(self) -> bool:
        """True when ``pid`` still names this process, alive or a zombie."""
        try:
            return _stat(self.pid)[0] == self.start_time
        except OSError:
            return False


def _stat(pid: int | str) -> tuple[int, str]:
    """(start time, state) from /proc/<pid>/stat."""
    path = f"/proc/{pid}/stat"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise proc_error(exc.errno, pid, f"read {path}") from None
    # the comm field may hold spaces and parentheses: split after the last ')'
    rest = data[data.rindex(b")") + 2:].split()
    return int(rest[19]), rest[0].decode()


def start_time(pid: int | str) -> int:
    """Field 22 of /proc/<pid>/stat: when the process started (clock ticks)."""
    return _stat(pid)[0]


def process_state(pid: int | str) -> str:
    """Field 3 of /proc/<pid>/stat: R, S, D, T, Z ..."""
    return _stat(pid)[1]


def process_state_safe(pid: int | str) -> str:
    """process_state, or "" when the process is gone."""
    try:
        return process_state(pid)
    except OSError:
        return ""
