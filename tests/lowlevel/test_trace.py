"""lowlevel.tracing: the barerun.trace logger and OSErrors that name what
failed, checked against real failing syscalls."""

import errno
import logging
import os

import pytest

from lowlevel import caps, mounts, tracing
from lowlevel._ffi import ffi, lib

from .helpers import dead_pid, no_leaks  # noqa: F401


def test_trace_logs_at_debug_only(caplog):
    with caplog.at_level(logging.INFO, logger="barerun.trace"):
        tracing.trace("mount", source="a", target="/b")
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="barerun.trace"):
        tracing.trace("mount", source="a", target="/b")
        # an argument named "op" must not clash with the operation
        tracing.trace("prctl", op="PR_SET_KEEPCAPS", value=1)
    assert [r.getMessage() for r in caplog.records] == [
        "mount source='a' target='/b'", "prctl op='PR_SET_KEEPCAPS' value=1"]


def test_lowlevel_calls_are_traced(caplog):
    with caplog.at_level(logging.DEBUG, logger="barerun.trace"):
        caps.get_keepcaps()
        caps.set_keepcaps(False)  # harmless: already off
        with pytest.raises(OSError):
            mounts.umount("/nonexistent/barerun")
    msgs = [r.getMessage() for r in caplog.records]
    assert "prctl op='PR_SET_KEEPCAPS' value=0" in msgs
    assert "umount2 target='/nonexistent/barerun' flags=0" in msgs


def test_error_builds_the_matching_subclass():
    e = tracing.error(errno.ENOENT, "open /x")
    assert isinstance(e, FileNotFoundError)
    assert e.errno == errno.ENOENT
    assert str(e) == "[Errno 2] open /x: No such file or directory"
    assert isinstance(tracing.error(errno.EPERM, "x"), PermissionError)


def test_proc_error_turns_a_vanished_process_into_esrch():
    pid = dead_pid()
    e = tracing.proc_error(errno.ENOENT, pid, f"read /proc/{pid}/stat")
    assert isinstance(e, ProcessLookupError)
    assert f"no process with pid {pid}" in str(e)
    # a missing file of a live process stays ENOENT
    e = tracing.proc_error(errno.ENOENT, os.getpid(), "read /proc/x/nothing")
    assert isinstance(e, FileNotFoundError)
    e = tracing.proc_error(errno.ENOENT, "self", "read /proc/self/nothing")
    assert isinstance(e, FileNotFoundError)
    e = tracing.proc_error(errno.EACCES, pid, "x")
    assert isinstance(e, PermissionError)


def test_check_raises_with_the_errno_of_the_call():
    assert tracing.check(0, "fine") == 0
    assert tracing.check(5, "fine") == 5
    with pytest.raises(OSError) as ei:
        tracing.check(lib.umount2(b"/nonexistent/barerun", 0), "umount /nonexistent/barerun")
    assert ei.value.errno == errno.ENOENT
    assert str(ei.value) == "[Errno 2] umount /nonexistent/barerun: No such file or directory"
    # the errno is the one saved right after the C call
    lib.umount2(b"/nonexistent/barerun", 0)
    assert ffi.errno == errno.ENOENT


@pytest.mark.needs_syscall("openat2")
def test_openat2_is_traced_with_its_flags_by_name(caplog, tmp_path):
    root = mounts.open_root(str(tmp_path))
    try:
        with caplog.at_level(logging.DEBUG, logger="barerun.trace"):
            fd = mounts.openat2(root, ".", os.O_RDONLY | os.O_DIRECTORY,
                                resolve=mounts.RESOLVE_IN_ROOT)
            os.close(fd)
    finally:
        os.close(root)
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("openat2")][0]
    assert "flags='O_RDONLY|O_DIRECTORY|O_CLOEXEC'" in line, line
    assert "resolve='RESOLVE_IN_ROOT'" in line, line
