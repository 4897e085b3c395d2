"""Run a command with the newer syscalls barerun uses made to fail with ENOSYS.

    python tests/enosys.py COMMAND [ARG...]
    python tests/enosys.py python -m pytest tests/lowlevel tests/runtime

A seccomp filter answers ENOSYS for exactly clone3, openat2,
mount_setattr, pidfd_open and pidfd_send_signal, as a kernel older than
those syscalls would (or a container engine's profile that does not know
them), and allows everything else.  The filter is inherited across fork
and exec and cannot be removed, so every process of the command -- the
test run, each `barerun` it starts, every container -- runs without
them: each fallback runs on the real kernel (crun's `check-no-openat2`
is the model).

The filter is built with the project's own lowlevel.seccomp (libseccomp):
default action ALLOW, ERRNO(ENOSYS) for the five syscalls on x86_64;
another architecture in a syscall's arch field (32-bit int 0x80, x32) is
allowed untouched (ACT_BADARCH ALLOW).  On a host that is not x86_64 the
launcher refuses: the syscall numbers below are checked against that ABI.

no_new_privs is set only when loading the filter needs it (without
CAP_SYS_ADMIN in the effective set): as root it is left alone, since it
changes what the code under test does (execve of setuid programs, file
capabilities, LSM transitions).

The command sees BARERUN_TEST_ENOSYS set to the comma-separated names
("clone3,openat2,..."): a test that checks a feature *is used* can tell
that it is deliberately unavailable.  Before the exec the launcher checks
that each syscall does fail with ENOSYS in this process.

Loaded into pytest as a plugin (``-p tests.enosys``) the module gives
every test phase (setup, call, teardown) a time limit, the ini option
``enosys_timeout`` (seconds, default 120, 0 for none): a fallback that
blocks (a wait that ignores its timeout) fails that test with a
traceback of where it hung instead of stopping the whole run.
"""

import ctypes
import errno
import os
import platform
import struct
import sys

if __name__ == "__main__":
    # run as a script, sys.path[0] is tests/, whose lowlevel/ and runtime/
    # are the test packages: import the project's from the checkout instead
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl)
SYSCALLS = {
    "clone3": 435,
    "openat2": 437,
    "mount_setattr": 442,
    "pidfd_open": 434,
    "pidfd_send_signal": 424,
}
ENV = "BARERUN_TEST_ENOSYS"
CAP_SYS_ADMIN = 21

# a call of each with arguments it rejects: without the filter each fails
# with EINVAL or EBADF, never ENOSYS
_PROBES = {
    "clone3": (0, 0),                   # NULL args, size 0: EINVAL
    "openat2": (-1, 0, 0, 0),           # size 0: EINVAL
    "mount_setattr": (-1, 0, 0, 0, 0),  # size 0: EINVAL
    "pidfd_open": (0, 0),               # pid 0: EINVAL
    "pidfd_send_signal": (-1, 0, 0, 0),  # fd -1: EBADF
}


DEFAULT_TIMEOUT = "120"


def fail(msg):
    print(f"enosys: {msg}", file=sys.stderr)
    sys.exit(2)


def check_arch():
    machine = platform.machine()
    if machine != "x86_64" or struct.calcsize("P") != 8:
        fail(f"this harness knows only the x86_64 syscall numbers; this host is "
             f"{machine} ({struct.calcsize('P') * 8}-bit userland): refusing to run")


def has_cap(num):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> num & 1)
    return False


def install():
    """Load the filter into this process."""
    from lowlevel import caps, seccomp

    for name, nr in SYSCALLS.items():
        got = seccomp.syscall_number(name)
        if got != nr:
            fail(f"libseccomp {'.'.join(map(str, seccomp.version()))} resolves {name} to "
                 f"{got}, not the x86_64 number {nr}")
    if not has_cap(CAP_SYS_ADMIN) and not caps.get_no_new_privs():
        print("enosys: no CAP_SYS_ADMIN: setting no_new_privs to load the filter",
              file=sys.stderr)
        caps.set_no_new_privs()
    with seccomp.Filter(seccomp.ALLOW) as flt:
        flt.set_attr("ACT_BADARCH", seccomp.ALLOW)
        for name in SYSCALLS:
            if not flt.add_rule(seccomp.act_errno(errno.ENOSYS), name):
                fail(f"libseccomp does not know {name}")
        flt.load()


def verify():
    """Each syscall fails with ENOSYS now; an unfiltered one still works."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    for name, nr in SYSCALLS.items():
        ctypes.set_errno(0)
        ret = libc.syscall(ctypes.c_long(nr), *map(ctypes.c_long, _PROBES[name]))
        err = ctypes.get_errno()
        if ret >= 0:
            os.close(ret)
        if ret != -1 or err != errno.ENOSYS:
            fail(f"{name} ({nr}) returned {ret}, errno {errno.errorcode.get(err, err)}; "
                 "expected ENOSYS: the filter is not in effect")
    if libc.syscall(ctypes.c_long(39)) != os.getpid():  # getpid
        fail("getpid through syscall(2) failed: the filter blocks too much")


def main(argv):
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv else 2
    check_arch()
    install()
    verify()
    names = ",".join(SYSCALLS)
    os.environ[ENV] = names
    print(f"enosys: {names.replace(',', ', ')} fail with ENOSYS for: {' '.join(argv)}",
          file=sys.stderr, flush=True)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        fail(f"exec {argv[0]}: {exc.strerror}")


if "pytest" in sys.modules:
    # the plugin: only defined when pytest imports this module
    import signal

    import pytest

    class TestTimeout(Exception):
        __test__ = False  # not a test class

    def pytest_addoption(parser):
        parser.addini("enosys_timeout", "seconds a test phase may take before it fails "
                      "(0: no limit)", default=DEFAULT_TIMEOUT)

    def _limited(item, phase):
        limit = float(item.config.getini("enosys_timeout") or 0)
        if limit <= 0:
            return None

        def expired(_sig, _frame):
            raise TestTimeout(f"{phase} took more than {limit:g} s (enosys_timeout): "
                              "a fallback that blocks?")
        old = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, limit)
        return old

    def _unlimit(old):
        if old is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(item):
        old = _limited(item, "setup")
        try:
            return (yield)
        finally:
            _unlimit(old)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(item):
        old = _limited(item, "the test")
        try:
            return (yield)
        finally:
            _unlimit(old)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(item, nextitem):
        old = _limited(item, "teardown")
        try:
            return (yield)
        finally:
            _unlimit(old)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
