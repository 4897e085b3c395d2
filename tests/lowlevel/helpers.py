"""Shared helpers for the lowlevel tests (real kernel, run as root).

Anything that changes process state (namespaces, mounts, capabilities,
hostname, rlimits) runs in a forked child: ``run_in_child(fn)`` returns what
``fn`` returned (JSON), or raises ChildFailed carrying the child's
traceback; ``child(fn)`` does the same but keeps the child alive (blocked)
for the duration of a ``with`` block, so the parent can look at it from
outside.  The child always leaves through os._exit and is always reaped.

Test modules import it relatively (tests/ and tests/lowlevel/ are packages)
and import the fixtures they use (``no_leaks`` is autouse) by name.

What the kernel (and any seccomp filter this process runs under) offers
is probed, never assumed: ``syscall_available(name)`` makes the raw
syscall with arguments it harmlessly rejects (or a call that just opens
and closes an fd) and is False only when the answer is ENOSYS;
``needs_syscall(name, ...)`` skips the calling test then, and the
``needs_syscall`` marker (tests/conftest.py) does the same before the
test's fixtures are set up.  ``seccomp_status()`` is this process's own
"Seccomp:" and "Seccomp_filters:" from /proc/self/status.
"""

import contextlib
import ctypes
import errno
import functools
import json
import os
import platform
import select
import shutil
import signal
import tempfile
import time
import traceback

import pytest

from lowlevel import mounts

TMP_PREFIX = "barerun-test-"


class ChildFailed(AssertionError):
    """The forked child raised; the message holds its traceback."""


def err_info(exc):
    """A JSON-able description of an exception (for a child to report)."""
    return {"type": type(exc).__name__, "errno": getattr(exc, "errno", None),
            "message": str(exc)}


def capture(fn, *args, **kwargs):
    """Call fn; {"value": result} or {"error": err_info} -- for children
    that must report an expected failure instead of dying of it."""
    try:
        return {"value": fn(*args, **kwargs)}
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        return {"error": err_info(exc)}


def _write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _read_line(fd, timeout):
    """One newline-terminated report (or what came before EOF): not "until
    EOF", since a grandchild may hold a copy of the writing end."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"child did not report within {timeout} s")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk or chunk.endswith(b"\n"):
            return b"".join(chunks) + chunk
        chunks.append(chunk)


def reap(pid, timeout=10.0):
    """Wait for child ``pid``; SIGKILL it when it does not exit in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return os.waitpid(pid, 0)[1]
        time.sleep(0.01)


@contextlib.contextmanager
def child(fn, *args, timeout=30):
    """Fork; the child runs fn(*args), reports the JSON result, then blocks
    until the ``with`` block ends.  Yields (pid, result)."""
    rep_r, rep_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(rep_r)
            os.close(hold_w)
            try:
                msg = {"value": fn(*args)}
            except BaseException:  # noqa: BLE001
                msg = {"exception": traceback.format_exc()}
            try:
                data = json.dumps(msg).encode()
            except (TypeError, ValueError):
                data = json.dumps({"exception": "result not JSON:\n"
                                   + traceback.format_exc()}).encode()
            _write_all(rep_w, data + b"\n")  # json.dumps never emits one
            os.close(rep_w)
            os.read(hold_r, 1)  # EOF when the parent is done with us
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(rep_w)
    os.close(hold_r)
    try:
        data = _read_line(rep_r, timeout)
        if not data:
            raise ChildFailed(f"child {pid} died without reporting")
        msg = json.loads(data)
        if "exception" in msg:
            raise ChildFailed(f"child {pid} raised:\n{msg['exception']}")
        yield pid, msg["value"]
    finally:
        os.close(rep_r)
        os.close(hold_w)
        reap(pid, timeout)


def run_in_child(fn, *args, timeout=30):
    """Run fn(*args) in a forked child; its (JSON) return value."""
    with child(fn, *args, timeout=timeout) as (_pid, value):
        return value


def dead_pid():
    """A pid that no longer names a process: a child, exited and reaped."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# --- what the kernel offers ---------------------------------------------------

# The syscalls a test may need the real thing of.  Their numbers are the
# same on x86_64 and in asm-generic (aarch64): every syscall added since
# 5.1 has one number on all architectures but alpha.
SYSCALL_NUMBERS = {
    "pidfd_send_signal": 424,
    "pidfd_open": 434,
    "clone3": 435,
    "openat2": 437,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
}
_ARCHES = ("x86_64", "aarch64")
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
MOUNT_ATTR_RDONLY = 0x1


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _probe_args(name):
    """Arguments for one harmless call of ``name``: it either opens an fd
    (closed again) or is refused before it does anything (EINVAL, EBADF)."""
    if name == "pidfd_open":          # a pidfd of ourselves
        return (ctypes.c_long(os.getpid()), ctypes.c_long(0))
    if name == "pidfd_send_signal":   # fd -1: EBADF
        return (ctypes.c_long(-1), ctypes.c_long(0), ctypes.c_void_p(None), ctypes.c_long(0))
    if name == "pidfd_getfd":         # pidfd -1: EBADF
        return (ctypes.c_long(-1), ctypes.c_long(0), ctypes.c_long(0))
    if name == "clone3":              # NULL args of size 0: EINVAL, nothing forked
        return (ctypes.c_void_p(None), ctypes.c_long(0))
    if name == "openat2":             # "." as a directory: an fd
        how = _OpenHow(os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, 0)
        return (ctypes.c_long(AT_FDCWD), ctypes.c_char_p(b"."), ctypes.byref(how),
                ctypes.c_long(ctypes.sizeof(how)))
    if name == "mount_setattr":       # a real change asked of fd -1: EBADF
        # (all-zero attributes would return 0 before looking at the fd)
        attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
        return (ctypes.c_long(-1), ctypes.c_char_p(b""), ctypes.c_long(AT_EMPTY_PATH),
                ctypes.byref(attr), ctypes.c_long(ctypes.sizeof(attr)))
    raise AssertionError(f"no probe for {name}")


@functools.cache
def _probe(name):
    """(available, what the call answered) for one raw syscall."""
    if name not in SYSCALL_NUMBERS:
        raise ValueError(f"syscall_available: unknown syscall {name!r} "
                         f"(known: {', '.join(sorted(SYSCALL_NUMBERS))})")
    if platform.machine() not in _ARCHES:
        raise RuntimeError(f"syscall_available knows the numbers for {', '.join(_ARCHES)}, "
                           f"not {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    args = _probe_args(name)
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(SYSCALL_NUMBERS[name]), *args)
    err = ctypes.get_errno()
    if ret == 0 and name == "clone3":  # pragma: no cover - cannot happen
        os._exit(0)  # a child after all: never let it run the tests
    if ret >= 0:
        if name in ("pidfd_open", "openat2"):
            os.close(ret)
        return True, f"returned {ret}"
    return err != errno.ENOSYS, errno.errorcode.get(err, str(err))


def syscall_available(name):
    """False only when the raw syscall ``name`` fails with ENOSYS here (an
    older kernel, or a seccomp filter answering ENOSYS for it); any other
    answer, success or an error such as EBADF or EINVAL, means the kernel
    implements it.  Probed once per process (forked children inherit the
    answer with the filter)."""
    return _probe(name)[0]


def missing_syscall_reason(name):
    return f"{name}: ENOSYS on this kernel/filter"


def needs_syscall(*names):
    """Skip the calling test unless every syscall in ``names`` is there."""
    for name in names:
        if not syscall_available(name):
            pytest.skip(missing_syscall_reason(name))


def seccomp_status(pid="self"):
    """(Seccomp, Seccomp_filters) of a process, read from its
    /proc/<pid>/status: mode 0 none, 1 strict, 2 filter; the number of
    filters it runs under (inherited ones included)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return int(fields["Seccomp"]), int(fields.get("Seccomp_filters", "0"))


def under_seccomp_filter():
    """True when this process runs under a seccomp filter (mode 2)."""
    return seccomp_status()[0] == 2


def _children():
    out = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                out.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            pass
    return out


def _fds():
    return set(os.listdir("/proc/self/fd"))


def _host_test_mounts():
    return [m["mountpoint"] for m in mounts.mountinfo()
            if TMP_PREFIX in m["mountpoint"]]


@pytest.fixture(autouse=True)
def no_leaks():
    """Every test leaves no fd, no child process and no mount behind."""
    fds, kids, mnts = _fds(), _children(), set(_host_test_mounts())
    yield
    leaked_kids = _children() - kids
    for pid in leaked_kids:  # clean up first, then complain
        reap(pid, 0)
    leaked_fds = _fds() - fds
    # an fd a listing itself used may show up: keep only live ones
    leaked_fds = {fd for fd in leaked_fds if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked_kids, f"test left child processes {sorted(leaked_kids)}"
    assert not leaked_fds, f"test leaked fds {sorted(leaked_fds)}"
    left = sorted(set(_host_test_mounts()) - mnts)
    assert not left, f"test left mounts {left}"


@pytest.fixture
def tmp():
    """A fresh /tmp/barerun-test-* directory, removed afterwards (any
    stray host mount below it detached first)."""
    path = tempfile.mkdtemp(prefix=TMP_PREFIX, dir="/tmp")
    try:
        yield path
    finally:
        for m in reversed(mounts.mountinfo()):
            if m["mountpoint"] == path or m["mountpoint"].startswith(path + "/"):
                mounts.umount(m["mountpoint"], mounts.MNT_DETACH)
        shutil.rmtree(path)


def private_mount_ns():
    """In a child: a mount namespace of its own that propagates nothing."""
    from lowlevel import namespaces
    namespaces.unshare(namespaces.FLAGS["mnt"])
    mounts.make_private("/")


def hostname():
    return os.uname().nodename
