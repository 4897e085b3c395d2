"""lowlevel.pidfd against the real kernel: pidfd_open, pidfd_send_signal,
pidfd_getfd, waiting through a pidfd, and pid-reuse-safe process ids."""

import errno
import os
import signal
import subprocess
import time

import pytest

from lowlevel import pidfd
from .helpers import dead_pid, no_leaks, reap, tmp  # noqa: F401

pytestmark = pytest.mark.skipif(not pidfd.HAS_PIDFD, reason="no pidfd syscalls")


def sleeper():
    return subprocess.Popen(["sleep", "30"])


def stop(p):
    if p.poll() is None:
        p.kill()
    p.wait()


def forked(code=0, sig=None):
    """A forked child that exits with ``code`` (or kills itself with sig)
    once its parent writes a byte: (pid, write end of the go pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        try:
            os.close(w)
            os.read(r, 1)
            if sig:
                os.kill(os.getpid(), sig)
        finally:
            os._exit(code)
    os.close(r)
    return pid, w


def test_send_signal_reaches_exactly_that_process():
    a, b = sleeper(), sleeper()
    try:
        fd = pidfd.pidfd_open(a.pid)
        try:
            assert not os.get_inheritable(fd)
            pidfd.send_signal(fd, signal.SIGTERM, a.pid)
            assert a.wait(timeout=10) == -signal.SIGTERM
            assert b.poll() is None  # the other sleeper is untouched
            assert pidfd.process_state(b.pid) in ("S", "R")
        finally:
            os.close(fd)
    finally:
        stop(a)
        stop(b)


def test_wait_exit_times_out_then_sees_the_exit():
    p = sleeper()
    fd = pidfd.pidfd_open(p.pid)
    try:
        t0 = time.monotonic()
        assert pidfd.wait_exit(fd, timeout=0.2) is False
        assert time.monotonic() - t0 >= 0.15
        assert pidfd.wait_exit(fd, timeout=0) is False
        pidfd.send_signal(fd, signal.SIGKILL)
        assert pidfd.wait_exit(fd, timeout=10) is True
        assert pidfd.wait_exit(fd) is True  # stays readable (zombie or reaped)
    finally:
        os.close(fd)
        stop(p)


def test_wait_exit_on_a_closed_fd_is_ebadf():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as ei:
        pidfd.wait_exit(r, timeout=0)
    assert ei.value.errno == errno.EBADF and f"pidfd {r}" in str(ei.value)
    with pytest.raises(OSError) as ei:
        pidfd.wait_exit(-1, timeout=0)
    assert ei.value.errno == errno.EBADF


def test_waitid_exit_code_and_signal():
    pid, go = forked(code=3)
    fd = pidfd.pidfd_open(pid)
    try:
        assert pidfd.waitid(fd, os.WEXITED | os.WNOHANG) is None  # still running
        os.write(go, b"x")
        assert pidfd.waitid(fd) == 3
    finally:
        os.close(fd)
        os.close(go)
        reap(pid, 0)

    pid, go = forked(sig=signal.SIGKILL)
    fd = pidfd.pidfd_open(pid)
    try:
        os.write(go, b"x")
        assert pidfd.waitid(fd) == 128 + signal.SIGKILL
    finally:
        os.close(fd)
        os.close(go)
        reap(pid, 0)

    pid, go = forked()
    fd = pidfd.pidfd_open(pid)
    try:
        pidfd.send_signal(fd, signal.SIGTERM, pid)
        assert pidfd.waitid(fd) == 128 + signal.SIGTERM
    finally:
        os.close(fd)
        os.close(go)
        reap(pid, 0)


def test_waitid_errors_name_the_pidfd():
    with pytest.raises(OSError) as ei:
        pidfd.waitid(9999)
    assert ei.value.errno == errno.EBADF and "P_PIDFD 9999" in str(ei.value)
    # a pidfd of a process that is not our child: ECHILD
    fd = pidfd.pidfd_open(1)
    try:
        with pytest.raises(ChildProcessError) as ei:
            pidfd.waitid(fd)
        assert f"P_PIDFD {fd}" in str(ei.value)
    finally:
        os.close(fd)


def test_signalling_a_reaped_process_is_esrch():
    pid, go = forked()
    fd = pidfd.pidfd_open(pid)
    try:
        os.write(go, b"x")
        assert pidfd.waitid(fd) == 0
        with pytest.raises(ProcessLookupError) as ei:
            pidfd.send_signal(fd, signal.SIGTERM, pid)
        assert ei.value.errno == errno.ESRCH and f"pid {pid}" in str(ei.value)
        with pytest.raises(ProcessLookupError) as ei:
            pidfd.send_signal(fd, 0)
        assert f"pidfd {fd}" in str(ei.value)
    finally:
        os.close(fd)
        os.close(go)


def test_pidfd_open_errors_name_the_pid():
    pid = dead_pid()
    with pytest.raises(ProcessLookupError) as ei:
        pidfd.pidfd_open(pid)
    assert ei.value.errno == errno.ESRCH and f"pid {pid}" in str(ei.value)
    with pytest.raises(OSError) as ei:
        pidfd.pidfd_open(-5)
    assert ei.value.errno == errno.EINVAL and "pid -5" in str(ei.value)


def test_send_signal_bad_fd_is_ebadf():
    with pytest.raises(OSError) as ei:
        pidfd.send_signal(9999, signal.SIGTERM)
    assert ei.value.errno == errno.EBADF and "pidfd 9999" in str(ei.value)


@pytest.mark.needs_syscall("pidfd_open", "pidfd_getfd")  # a real pidfd to copy from
def test_get_fd_copies_another_processes_fd(tmp):
    path = os.path.join(tmp, "held")
    with open(path, "w") as f:
        f.write("held by the child")
    r, w = os.pipe()
    held = os.open(path, os.O_RDONLY)
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        try:
            os.close(w)
            os.read(r, 1)
        finally:
            os._exit(0)
    os.close(r)
    try:
        fd = pidfd.pidfd_open(pid)
        try:
            copy = pidfd.get_fd(fd, held)
            try:
                assert not os.get_inheritable(copy)
                assert os.path.samestat(os.fstat(copy), os.stat(path))
            finally:
                os.close(copy)
            with pytest.raises(OSError) as ei:
                pidfd.get_fd(fd, 9999)
            assert ei.value.errno == errno.EBADF
            assert f"fd 9999 from pidfd {fd}" in str(ei.value)
        finally:
            os.close(fd)
    finally:
        os.close(held)
        os.close(w)
        reap(pid)


def test_process_id_alive_and_start_time():
    p = sleeper()
    try:
        ident = pidfd.ProcessId.of(p.pid)
        assert ident.pid == p.pid
        assert ident.alive()
        assert pidfd.ProcessId.of(p.pid) == ident  # stable
        assert pidfd.start_time(p.pid) == ident.start_time
        # the start time is field 22 of /proc/<pid>/stat
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert int(fields[19]) == ident.start_time
        # another process started later is another identity
        assert pidfd.ProcessId.of(os.getpid()) != ident
        assert pidfd.start_time(os.getpid()) <= ident.start_time
        # a pid with another start time is "not this process"
        assert not pidfd.ProcessId(p.pid, ident.start_time + 1).alive()
        p.kill()
        for _ in range(500):  # until it is a zombie
            if pidfd.process_state(p.pid) == "Z":
                break
            time.sleep(0.01)
        assert pidfd.process_state(p.pid) == "Z"
        assert not ident.alive()  # zombie
        p.wait()
        assert not ident.alive()  # reaped
    finally:
        stop(p)


def test_start_time_of_a_dead_pid_is_esrch():
    pid = dead_pid()
    with pytest.raises(ProcessLookupError) as ei:
        pidfd.start_time(pid)
    assert ei.value.errno == errno.ESRCH and str(pid) in str(ei.value)
    with pytest.raises(ProcessLookupError):
        pidfd.process_state(pid)
    assert not pidfd.ProcessId(pid, 1).alive()


def test_stat_copes_with_parentheses_in_the_name():
    import prctl
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        try:
            os.close(w)
            prctl.set_name("a) b (c) Z 9")
            os.write(ready_w, b"x")
            os.read(r, 1)
        finally:
            os._exit(0)
    os.close(r)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"x"
        with open(f"/proc/{pid}/comm") as f:
            assert f.read() == "a) b (c) Z 9\n"
        assert pidfd.process_state(pid) in ("S", "R")
        assert pidfd.start_time(pid) >= pidfd.start_time(os.getpid())
        assert pidfd.ProcessId.of(pid).alive()
    finally:
        os.close(w)
        os.close(ready_r)
        reap(pid)
