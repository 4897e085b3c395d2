"""The test helpers' own probes: syscall_available asks the real kernel
(and sees a seccomp filter's ENOSYS), needs_syscall skips with the
syscall's name, seccomp_status reads this process's filter count."""

import errno
import os

import pytest

from lowlevel import seccomp as S

from . import helpers
from .helpers import no_leaks, run_in_child  # noqa: F401

# the kernel release each syscall came with
SINCE = {"pidfd_send_signal": (5, 1), "pidfd_open": (5, 3), "clone3": (5, 3),
         "openat2": (5, 6), "pidfd_getfd": (5, 6), "mount_setattr": (5, 12)}


def _release():
    return tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])


def _filtered():
    """The syscalls tests/enosys.py says it made fail with ENOSYS."""
    return set(filter(None, os.environ.get("BARERUN_TEST_ENOSYS", "").split(",")))


@pytest.mark.parametrize("name", sorted(helpers.SYSCALL_NUMBERS))
def test_syscall_available_sees_the_kernel_and_the_filter(name):
    assert set(SINCE) == set(helpers.SYSCALL_NUMBERS)
    if name in _filtered():
        # the launcher's filter answers ENOSYS: the probe must see it
        assert helpers.syscall_available(name) is False
    elif _release() >= SINCE[name]:
        assert helpers.syscall_available(name) is True
    # the probe leaves nothing open (no_leaks) and answers the same again
    assert helpers.syscall_available(name) is helpers.syscall_available(name)


def test_syscall_available_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="no_such_syscall"):
        helpers.syscall_available("no_such_syscall")


def test_needs_syscall_skips_naming_the_missing_one(monkeypatch):
    monkeypatch.setattr(helpers, "syscall_available", lambda name: name != "clone3")
    helpers.needs_syscall("openat2", "pidfd_open")  # both there: no skip
    with pytest.raises(pytest.skip.Exception, match="clone3: ENOSYS on this kernel/filter"):
        helpers.needs_syscall("openat2", "clone3")


def test_seccomp_status_counts_this_processes_filters():
    mode, count = helpers.seccomp_status()
    assert mode in (0, 2) and (mode == 2) == (count > 0) == helpers.under_seccomp_filter()

    def body():
        with S.Filter(S.ALLOW) as flt:
            flt.add_rule(S.act_errno(errno.EPERM), "getcwd")
            flt.load()
        return list(helpers.seccomp_status())
    assert run_in_child(body) == [2, count + 1]
    assert helpers.seccomp_status() == (mode, count)  # the parent is untouched
