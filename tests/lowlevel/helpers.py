"""Shared helpers for the lowlevel tests (real kernel, run as root).

Anything that changes process state (namespaces, mounts, capabilities,
hostname, rlimits) runs in a forked child: ``run_in_child(fn)`` returns what
``fn`` returned (JSON), or raises ChildFailed carrying the child's
traceback; ``child(fn)`` does the same but keeps the child alive (blocked)
for the duration of a ``with`` block, so the parent can look at it from
outside.  The child always leaves through os._exit and is always reaped.

Test modules import it relatively (tests/ and tests/lowlevel/ are packages)
and import the fixtures they use (``no_leaks`` is autouse) by name.
"""

import contextlib
import json
import os
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
