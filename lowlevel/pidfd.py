"""pidfds: a file descriptor that names one process, immune to pid reuse.

Where the running kernel has no pidfd_open (before 5.3, or a seccomp
filter that answers ENOSYS; probed on first use, not taken from the build
headers), a handle is an O_DIRECTORY fd of /proc/<pid> instead: it keeps
naming that very process (it goes stale, ESRCH, once the process is
reaped, whatever reuses the pid), and every function here takes either:
signals go through kill() after checking the handle is not stale, waiting
polls /proc, waitid uses P_PID.  ``HAS_PIDFD`` tells the build headers;
``works()`` tells the kernel.
"""

from __future__ import annotations

import errno
import os
import select
from collections import namedtuple

from ._ffi import ffi, lib
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

_works: bool | None = None  # pidfd_open on this kernel: probed on first use
_signal_works: bool | None = None  # pidfd_send_signal, likewise
_proc_handles: dict[int, int] = {}  # /proc/<pid> handle fd -> pid (fallback only)


def works() -> bool:
    """True when the running kernel gives real pidfds (probed once)."""
    if _works is None:
        try:
            os.close(pidfd_open(os.getpid()))
        except OSError:
            pass
    return bool(_works)


def pidfd_open(pid: int) -> int:
    """pidfd_open(2): an fd referring to process ``pid`` (O_CLOEXEC); a
    /proc/<pid> handle where the kernel has no pidfd_open."""
    global _works
    if _works is not False:
        trace("pidfd_open", pid=pid)
        fd = lib.barerun_pidfd_open(pid, 0)
        if fd >= 0:
            _works = True
            return fd
        err = ffi.errno
        if err != errno.ENOSYS:
            raise error(err, f"pidfd_open pid {pid}")
        _works = False
    trace("open", path=f"/proc/{pid}", instead_of="pidfd_open (ENOSYS)")
    if pid <= 0:
        raise error(errno.EINVAL, f"pidfd_open pid {pid}")
    try:
        fd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(errno.ESRCH, f"pidfd_open pid {pid}") from None
    except OSError as exc:
        raise error(exc.errno, f"pidfd_open pid {pid} (open /proc/{pid})") from None
    _proc_handles[fd] = pid
    return fd


def _handle_pid(pidfd: int) -> int | None:
    """The pid behind a /proc handle, None for anything else (a real pidfd,
    or an fd number that a closed handle once had)."""
    if _works is not False:
        return None
    pid = _proc_handles.get(pidfd)
    if pid is None:
        return None
    try:
        # "/proc/<pid> (deleted)" once the process is reaped: still the handle
        if os.readlink(f"/proc/self/fd/{pidfd}") in (f"/proc/{pid}", f"/proc/{pid} (deleted)"):
            return pid
    except OSError:
        pass
    del _proc_handles[pidfd]  # closed since; the number is someone else's now
    return None


def _handle_state(pidfd: int) -> str:
    """The state letter of a /proc handle's process; "" once it is reaped."""
    try:
        with open(os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=pidfd), "rb") as f:
            data = f.read()
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise error(errno.EBADF, f"process handle fd {pidfd}") from None
        return ""
    return data[data.rindex(b")") + 2:].split()[0].decode()


def send_signal(pidfd: int, sig: int, pid: int | None = None) -> None:
    """pidfd_send_signal(2): signal exactly the process the pidfd names
    (kill() after a check that the handle is not stale, without pidfds)."""
    global _signal_works
    what = f"pidfd_send_signal {int(sig)} to {f'pid {pid}' if pid else f'pidfd {pidfd}'}"
    hpid = _handle_pid(pidfd)
    if hpid is None and _signal_works is not False:
        trace("pidfd_send_signal", pidfd=pidfd, signal=int(sig), pid=pid)
        if lib.barerun_pidfd_send_signal(pidfd, int(sig), 0) == 0:
            _signal_works = True
            return
        err = ffi.errno
        if err != errno.ENOSYS:
            raise error(err, what)
        _signal_works = False
    target = hpid if hpid is not None else pid
    if not target:
        try:
            os.fstat(pidfd)
        except OSError as exc:
            raise error(exc.errno, what) from None
        raise error(errno.ENOSYS, what)
    if hpid is not None and _handle_state(pidfd) in ("", "Z", "X"):
        raise error(errno.ESRCH, what)
    trace("kill", pid=target, signal=int(sig), instead_of="pidfd_send_signal (ENOSYS)")
    try:
        os.kill(target, int(sig))
    except OSError as exc:
        raise error(exc.errno, what) from None


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
    if _handle_pid(pidfd) is not None:
        return bool(wait_any([pidfd], timeout))
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    events = p.poll(ms)  # PEP 475: retried on EINTR with the remaining time
    for _fd, ev in events:
        if ev & select.POLLNVAL:
            raise error(errno.EBADF, f"poll pidfd {pidfd}")
    return bool(events)


def wait_any(pidfds: list[int], timeout: float | None = None) -> list[int]:
    """The pidfds (of ``pidfds``) whose process exited, waiting up to
    ``timeout`` seconds (None: for ever) for at least one; [] on timeout."""
    if not any(_handle_pid(fd) is not None for fd in pidfds):
        p = select.poll()
        for fd in pidfds:
            p.register(fd, select.POLLIN)
        events = p.poll(None if timeout is None else max(0, int(timeout * 1000)))
        for fd, ev in events:
            if ev & select.POLLNVAL:
                raise error(errno.EBADF, f"poll pidfd {fd}")
        return [fd for fd, _ev in events]
    # /proc handles: look every few ms (a zombie or a reaped process has exited)
    import time
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    while True:
        done = [fd for fd in pidfds if _handle_state(fd) in ("", "Z", "X")]
        if done:
            return done
        if deadline is not None and time.monotonic() >= deadline:
            return []
        time.sleep(delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.02)


def waitid(pidfd: int, options: int = os.WEXITED) -> int | None:
    """waitid(P_PIDFD): reap a child through its pidfd.

    Returns the exit status as a shell would: the code, or 128+signal.
    Returns None with WNOHANG when the child has not exited.
    """
    hpid = _handle_pid(pidfd)
    try:
        if hpid is None:
            trace("waitid", idtype="P_PIDFD", pidfd=pidfd)
            res = os.waitid(os.P_PIDFD, pidfd, options)
        else:
            trace("waitid", idtype="P_PID", pid=hpid, instead_of="P_PIDFD (no pidfds)")
            res = os.waitid(os.P_PID, hpid, options)
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
