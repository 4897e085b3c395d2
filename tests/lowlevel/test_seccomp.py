"""lowlevel.seccomp against the real kernel: filters built with libseccomp
are loaded in forked children (a filter cannot be removed), which then
make the filtered syscalls and report what the kernel answered."""

import errno
import logging
import os
import signal

import pytest

from lowlevel import caps
from lowlevel import seccomp as S
from .helpers import (capture, dead_pid, no_leaks, reap, run_in_child,  # noqa: F401
                      seccomp_status, tmp)

EPERM = S.act_errno(errno.EPERM)


def _try(fn, *args):
    """None when fn(*args) works, else the errno it failed with."""
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    return None


# --- names and actions (no filter loaded) -----------------------------------

def test_version_archs_and_syscall_names():
    assert S.version() >= (2, 5, 0)
    assert S.arch_known("x86_64") and S.arch_known("aarch64") and S.arch_known("x86")
    assert not S.arch_known("bogus")
    assert S.syscall_number("mkdir") is not None
    assert S.syscall_number("getcwd") is not None
    assert S.syscall_number("no_such_syscall") is None
    # what pytest itself runs under, read here from /proc/self/status: 0,
    # or 2 when a launcher (tests/enosys.py) loaded a filter before it
    assert S.mode() == seccomp_status()[0]
    assert S.mode(os.getpid()) == S.mode()
    pid = dead_pid()
    with pytest.raises(ProcessLookupError) as ei:
        S.mode(pid)
    assert str(pid) in str(ei.value)


def test_actions_and_their_names():
    assert S.action_name(S.ALLOW) == "SCMP_ACT_ALLOW"
    assert S.action_name(S.KILL_PROCESS) == "SCMP_ACT_KILL_PROCESS"
    assert S.action_name(S.KILL_THREAD) == "SCMP_ACT_KILL_THREAD"
    assert S.action_name(S.act_errno(38)) == "SCMP_ACT_ERRNO(38)"
    assert S.action_name(S.act_trace(7)) == "SCMP_ACT_TRACE(7)"
    assert S.act_errno(1) != S.act_errno(2)
    for bad in (-1, 65536, "1"):
        with pytest.raises(OSError) as ei:
            S.act_errno(bad)
        assert ei.value.errno == errno.EINVAL and "0..65535" in str(ei.value)


# --- loading filters -----------------------------------------------------------

def test_errno_rule_makes_mkdir_and_getcwd_fail(tmp):
    def body():
        f = S.Filter(S.ALLOW)
        assert f.add_rule(EPERM, "mkdir") and f.add_rule(EPERM, "mkdirat")
        assert f.add_rule(S.act_errno(errno.EACCES), "getcwd")
        f.load()
        f.release()
        return {"mkdir": _try(os.mkdir, os.path.join(tmp, "x")),
                "getcwd": _try(os.getcwd),
                "listdir": _try(os.listdir, tmp),
                "mode": S.mode(),
                # CTL_NNP is 0: loading did not set no_new_privs
                "nnp": caps.get_no_new_privs()}

    res = run_in_child(body)
    assert res == {"mkdir": errno.EPERM, "getcwd": errno.EACCES, "listdir": None,
                   "mode": 2, "nnp": False}
    assert not os.path.exists(os.path.join(tmp, "x"))
    # the parent is not filtered
    os.mkdir(os.path.join(tmp, "y"))


def test_default_action_applies_to_unlisted_syscalls(tmp):
    # the child keeps running Python after the load: allow what it needs
    # to report (memory, pipes, signals, exit) and nothing that makes files
    needed = ["read", "write", "close", "exit", "exit_group", "brk", "mmap", "munmap",
              "mremap", "madvise", "mprotect", "futex", "rt_sigaction", "rt_sigprocmask",
              "rt_sigreturn", "getpid", "gettid", "fstat", "newfstatat", "lseek",
              "getrandom", "clock_gettime", "ioctl", "fcntl", "getcwd"]

    def body():
        f = S.Filter(S.act_errno(errno.ENOSYS))
        for name in needed:
            f.add_rule(S.ALLOW, name)
        f.load()
        return {"mkdir": _try(os.mkdir, os.path.join(tmp, "x")),
                "getcwd": _try(os.getcwd)}

    assert run_in_child(body) == {"mkdir": errno.ENOSYS, "getcwd": None}
    assert not os.path.exists(os.path.join(tmp, "x"))


def test_argument_comparisons(tmp):
    path = os.path.join(tmp, "f")
    open(path, "w").close()

    def body():
        fd = os.open(path, os.O_RDONLY)
        other = os.open(path, os.O_RDONLY)
        f = S.Filter(S.ALLOW)
        # fchmod(fd, 0o600): EPERM, only for that fd (two comparisons: AND)
        f.add_rule(EPERM, "fchmod", [(0, "SCMP_CMP_EQ", fd), (1, "SCMP_CMP_EQ", 0o600)])
        # any mode giving "others" write (masked equality): EACCES
        f.add_rule(S.act_errno(errno.EACCES), "fchmod",
                   [(1, S.CMP["SCMP_CMP_MASKED_EQ"], 0o002, 0o002)])
        f.load()
        return {"600": _try(os.fchmod, fd, 0o600),
                "600 other fd": _try(os.fchmod, other, 0o600),
                "644": _try(os.fchmod, fd, 0o644),
                "606": _try(os.fchmod, fd, 0o606)}

    assert run_in_child(body) == {"600": errno.EPERM, "600 other fd": None, "644": None,
                                  "606": errno.EACCES}


def test_kill_process_action_ends_the_process_with_sigsys():
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            f = S.Filter(S.ALLOW)
            f.add_rule(S.KILL_PROCESS, "getppid")
            f.load()
            os.getppid()
        finally:
            os._exit(0)
    status = reap(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


def test_unknown_syscall_is_skipped_not_fatal(tmp):
    def body():
        f = S.Filter(S.ALLOW)
        skipped = f.add_rule(EPERM, "no_such_syscall_barerun")
        f.add_rule(EPERM, "mkdir")
        f.add_rule(EPERM, "mkdirat")
        f.load()
        return {"added": skipped, "mkdir": _try(os.mkdir, os.path.join(tmp, "x"))}

    assert run_in_child(body) == {"added": False, "mkdir": errno.EPERM}


def test_more_architectures():
    f = S.Filter(S.ALLOW)
    try:
        native = os.uname().machine
        if native == "x86_64":
            assert f.add_arch("x86_64") is False  # the native one is there
            assert f.add_arch("x86") is True
            assert f.add_arch("x32") is True
        assert f.add_rule(EPERM, "mkdir")
    finally:
        f.release()


def test_no_new_privs_lets_a_process_without_cap_sys_admin_load(tmp):
    def body():
        caps.set_caps(effective=[], permitted=[], inheritable=[])
        f = S.Filter(S.ALLOW)
        f.add_rule(EPERM, "mkdir")
        f.add_rule(EPERM, "mkdirat")
        without = capture(f.load)
        caps.set_no_new_privs()
        f.load()
        return {"without": without, "mkdir": _try(os.mkdir, os.path.join(tmp, "x"))}

    res = run_in_child(body)
    err = res["without"]["error"]
    assert err["errno"] == errno.EACCES
    assert "seccomp load filter" in err["message"] and "CAP_SYS_ADMIN" in err["message"]
    assert res["mkdir"] == errno.EPERM


# --- errors ----------------------------------------------------------------------

def test_errors_name_the_call_and_the_object():
    f = S.Filter(S.ALLOW)
    try:
        cases = [
            (lambda: f.add_arch("bogus"), errno.EINVAL, "seccomp arch add bogus"),
            (lambda: f.add_rule(EPERM, "mkdir", [(6, "SCMP_CMP_EQ", 0)]), errno.EINVAL,
             "seccomp rule add mkdir: argument index 6"),
            (lambda: f.add_rule(EPERM, "mkdir", [(0, "SCMP_CMP_LIKE", 0)]), errno.EINVAL,
             "seccomp rule add mkdir: unknown comparison 'SCMP_CMP_LIKE'"),
            (lambda: f.add_rule(EPERM, "mkdir", [(0, "SCMP_CMP_EQ", -1)]), errno.EINVAL,
             "not a 64-bit unsigned integer"),
            (lambda: f.add_rule(EPERM, "mkdir", [(0, "SCMP_CMP_EQ")]), errno.EINVAL,
             "a comparison is (index, op, value"),
            # the default action again: libseccomp's EACCES, explained
            (lambda: f.add_rule(S.ALLOW, "mkdir"), errno.EACCES,
             "seccomp rule add mkdir: Permission denied (the rule's action SCMP_ACT_ALLOW "
             "is the default action)"),
            # two comparisons of one argument in one rule: libseccomp's EINVAL
            (lambda: f.add_rule(EPERM, "personality", [(0, "SCMP_CMP_EQ", 0),
                                                       (0, "SCMP_CMP_EQ", 8)]),
             errno.EINVAL, "seccomp rule add personality: Invalid argument"),
            (lambda: f.set_attr("CTL_BOGUS", 1), errno.EINVAL, "seccomp attr set CTL_BOGUS"),
        ]
        for call, err, text in cases:
            with pytest.raises(OSError) as ei:
                call()
            assert ei.value.errno == err, text
            assert text in str(ei.value)
        f.set_attr("CTL_LOG", 1)  # a valid attribute is fine
    finally:
        f.release()
    f.release()  # twice is harmless
    with pytest.raises(OSError) as ei:
        f.add_rule(EPERM, "mkdir")
    assert ei.value.errno == errno.EBADF and "released" in str(ei.value)


def test_filter_building_is_traced(caplog):
    with caplog.at_level(logging.DEBUG, logger="barerun.trace"):
        with S.Filter(S.act_errno(38)) as f:
            f.add_rule(S.ALLOW, "getcwd", [(0, "SCMP_CMP_NE", 0)])
            f.add_rule(S.ALLOW, "no_such_syscall_barerun")
    msgs = [r.getMessage() for r in caplog.records]
    assert "seccomp_init default_action='SCMP_ACT_ERRNO(38)'" in msgs
    assert any(m.startswith("seccomp_rule_add syscall='getcwd'") and "SCMP_CMP_NE" in m
               for m in msgs)
    assert ("seccomp_rule_add syscall='no_such_syscall_barerun' skipped='unknown syscall'"
            in msgs)
