"""Shared fixtures for the runtime tests: real containers, run as root.

    rootfs     (session) one busybox rootfs for every test (the slow part)
    root       a fresh state root per test; its finalizer force-deletes
               every container left in it and checks that nothing of the
               test is left: state dirs, cgroups, host mounts
    new_id     "barerun-test-<8 hex>": ids start with "barerun-test-", so a
               leftover cgroup (default path barerun/<id>) is easy to find
    bundle     bundle(args, modify=None, rootfs_path=None) -> bundle dir holding
               a config.json made from tests.bundles.default_spec(args);
               ``modify(spec)`` changes the spec in place (or returns a new
               one); the rootfs is the shared one unless ``rootfs_path``
    create     create(args_or_bundle, modify=None, cid=None, stdin=None,
               rootfs_path=None) -> Out, a created container whose
               stdout/stderr go to files in tmp_path
    run        run(args_or_bundle, modify=None, timeout=10, ...) ->
               (status, stdout, stderr): create, start, wait, delete
    sh         sh(script, modify=None, ...): run(["sh", "-c", script], ...)
    private_rootfs  a copy of the busybox rootfs that a test may change

Markers (for every test under tests/):

    needs_syscall(name, ...)  skip unless each raw syscall is implemented
               here (tests.lowlevel.helpers.syscall_available: probed on the
               real kernel, under whatever seccomp filter this process has):
               a skipif mark, checked before the test's fixtures are set up
    criu_needs_unfiltered  (a mark to import) skip a test that runs CRIU
               when this process is under a seccomp filter (Seccomp: 2 in
               /proc/self/status), which CRIU cannot work under

Every container a fixture makes is force-deleted by the ``root`` finalizer
even when the test fails.  The leftover checks are scoped to the test's
own ids (other sessions may run at the same time); the session's end
checks every id the session made.
"""

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass

import pytest

import runtime
from lowlevel import cgroups
from tests.bundles import default_spec, make_rootfs, write_bundle
from tests.lowlevel.helpers import (missing_syscall_reason, seccomp_status,  # noqa: F401
                                    syscall_available, under_seccomp_filter)

CGROUP_ROOT = "/sys/fs/cgroup"
ID_PREFIX = "barerun-test-"
# a directory of the shared rootfs that tests mask (maskedPaths)
SECRET_DIR = "/etc/barerun-secret"
# every container id and cgroup path the session made: checked at the end
_SESSION_IDS = set()
_SESSION_CGROUPS = set()


def new_container_id():
    cid = f"{ID_PREFIX}{uuid.uuid4().hex[:8]}"
    _SESSION_IDS.add(cid)
    return cid


def cgroup_dirs(rel):
    """Every directory the cgroup ``rel`` would have (one per hierarchy)."""
    return sorted(set(cgroups.Cgroup(rel).paths.values()))


def leftover_cgroups(rel):
    return [p for p in cgroup_dirs(rel) if os.path.exists(p)]


def barerun_test_cgroups():
    """Every cgroup directory named barerun-test* (two levels deep in each
    hierarchy: top level and under barerun/)."""
    found = []
    for hier in os.listdir(CGROUP_ROOT):
        base = os.path.join(CGROUP_ROOT, hier)
        for sub in ("", "barerun", "barerun-test"):
            d = os.path.join(base, sub)
            try:
                names = os.listdir(d)
            except OSError:
                continue
            found += [os.path.join(d, n) for n in names
                      if n.startswith("barerun-test") and os.path.isdir(os.path.join(d, n))]
    return found


def host_mounts_with(text):
    with open("/proc/self/mounts") as f:
        return [line for line in f if text in line]


def wait_for(pred, timeout=10.0, what="condition"):
    """Poll ``pred`` until it returns something true; return that value, or
    fail the test after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def read(path):
    """A text file's contents, or "" when it does not exist (yet)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def pid_alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:][:1] not in (b"Z", b"X")


# ------------------------------------------------------------------ markers

# CRIU suspends the seccomp filter of each task it dumps
# (PTRACE_O_SUSPEND_SECCOMP), which the kernel refuses (EPERM) to a tracer
# that is under seccomp itself -- and CRIU, started by barerun, inherits
# this process's filter, as every container does: under one, CRIU fails
# ("suspending seccomp failed: Operation not permitted")
criu_needs_unfiltered = pytest.mark.skipif(
    under_seccomp_filter(),
    reason="CRIU cannot suspend seccomp from under a filter (PTRACE_O_SUSPEND_SECCOMP "
           f"is EPERM then): this process has Seccomp: {seccomp_status()[0]} "
           f"with {seccomp_status()[1]} filter(s)")



def pytest_configure(config):
    config.addinivalue_line(
        "markers", "needs_syscall(name, ...): skip unless each syscall does not fail "
        "with ENOSYS (probed on this kernel, under this process's seccomp filter)")


def pytest_collection_modifyitems(items):
    # as a skipif mark: pytest checks it before any fixture is set up and
    # reports the skip at the test, not here
    for item in items:
        for mark in item.iter_markers("needs_syscall"):
            for name in mark.args:
                item.add_marker(pytest.mark.skipif(not syscall_available(name),
                                                   reason=missing_syscall_reason(name)))


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory):
    """The busybox rootfs shared by the whole session (read-only in the
    default spec), with a directory to mask and a file to read."""
    path = str(tmp_path_factory.mktemp("barerun-rootfs") / "rootfs")
    make_rootfs(path)
    os.makedirs(path + SECRET_DIR)
    with open(path + SECRET_DIR + "/key", "w") as f:
        f.write("secret\n")
    for d in ("mnt", "data"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    yield path
    # the session's ids must have left no cgroup and no host mount
    left = [d for cid in _SESSION_IDS for d in leftover_cgroups(f"barerun/{cid}")]
    left += [d for rel in _SESSION_CGROUPS for d in leftover_cgroups(rel)]
    assert not left, f"cgroups left behind by the session: {left}"
    assert not host_mounts_with(path), "host mounts left on the shared rootfs"


@pytest.fixture
def private_rootfs(rootfs, tmp_path):
    """A copy of the busybox rootfs this test may change."""
    dst = str(tmp_path / "private-rootfs")
    shutil.copytree(rootfs, dst, symlinks=True)
    return dst


@pytest.fixture
def new_id():
    return new_container_id


def _cleanup_root(root, created):
    """Force-delete every container under ``root``; return what is left."""
    problems = []
    cgroup_paths = set()
    ids = set(runtime_ids(root)) | {c.id for c in created}
    for c in created:
        if c._st.get("cgroup"):
            cgroup_paths.add(c._st["cgroup"])
    for cid in sorted(ids):
        try:
            with open(os.path.join(root, cid, "state.json")) as f:
                cg = json.load(f).get("cgroup")
            if cg:
                cgroup_paths.add(cg)
        except (OSError, ValueError):
            pass
        cgroup_paths.add(f"barerun/{cid}")
    pids = {c._st.get("pid") for c in created} - {0, None}
    # first through the handles that forked the inits (they reap them) ...
    for c in created:
        if os.path.isdir(os.path.join(root, c.id)):
            try:
                c.delete(force=True)
            except runtime.ContainerError as exc:
                problems.append(f"delete --force {c.id}: {exc}")
    # ... then whatever else is recorded under the root
    for cid in runtime_ids(root):
        try:
            runtime.load(cid, root=root).delete(force=True)
        except runtime.ContainerError as exc:
            problems.append(f"delete --force {cid}: {exc}")
    _SESSION_CGROUPS.update(cgroup_paths)
    deadline = time.monotonic() + 2
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.005)
    alive = [p for p in pids if pid_alive(p)]
    if alive:
        problems.append(f"container init processes still alive: {alive}")
    left_state = runtime_ids(root)
    if left_state:
        problems.append(f"state dirs left in {root}: {left_state}")
    for rel in sorted(cgroup_paths):
        left = leftover_cgroups(rel)
        if left:
            problems.append(f"cgroups left: {left}")
            try:  # do not let one failure leak into the next tests
                cgroups.Cgroup(rel).remove()
            except OSError as exc:
                problems.append(f"remove cgroup {rel}: {exc}")
    return problems


def runtime_ids(root):
    try:
        return sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)))
    except FileNotFoundError:
        return []


class Root(str):
    """The state root (a str path) that remembers the containers made in it."""

    def __new__(cls, path):
        self = super().__new__(cls, path)
        self.created = []
        return self

    def track(self, c):
        self.created.append(c)
        return c


@pytest.fixture
def root(tmp_path):
    """A fresh state root for one test.  On teardown every container left
    in it is force-deleted, then nothing of the test may remain: no state
    dir, no cgroup (barerun/<id> or its cgroupsPath), no barerun-test*
    cgroup of its ids, no host mount under tmp_path."""
    r = Root(str(tmp_path / "state"))
    os.mkdir(r)
    yield r
    problems = _cleanup_root(r, r.created)
    ids = {c.id for c in r.created}
    stray = [p for p in barerun_test_cgroups() if any(i in p for i in ids)]
    if stray:
        problems.append(f"barerun-test cgroups left: {stray}")
    mounts = host_mounts_with(str(tmp_path))
    if mounts:
        problems.append(f"host mounts left: {mounts}")
    assert not problems, "; ".join(problems)


@pytest.fixture
def bundle(tmp_path, rootfs):
    """bundle(args=None, modify=None, rootfs=None) -> a new bundle dir."""
    count = [0]

    def make(args=None, modify=None, rootfs_path=None):
        count[0] += 1
        spec = default_spec(args)
        if modify is not None:
            got = modify(spec)
            if got is not None:
                spec = got
        path = str(tmp_path / f"bundle{count[0]}")
        return write_bundle(path, spec, rootfs=rootfs_path or rootfs)

    return make


@dataclass
class Out:
    """A created container and the files its stdout/stderr go to."""
    container: object
    stdout_path: str
    stderr_path: str

    @property
    def c(self):
        return self.container

    def stdout(self):
        return _read(self.stdout_path)

    def stderr(self):
        return _read(self.stderr_path)


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


@pytest.fixture
def create(root, bundle, tmp_path):
    """create(args_or_bundle, modify=None, cid=None, stdin=None) -> Out.

    ``args_or_bundle`` is a list (process.args of a default spec changed
    by ``modify``) or a bundle directory.  The container is tracked by the
    ``root`` fixture, which force-deletes it at teardown."""
    count = [0]

    def make(what, modify=None, cid=None, stdin=None, rootfs_path=None):
        count[0] += 1
        b = what if isinstance(what, str) else bundle(what, modify, rootfs_path)
        out = str(tmp_path / f"out{count[0]}")
        err = str(tmp_path / f"err{count[0]}")
        c = runtime.create(cid or new_container_id(), b, root=root,
                           io=runtime.IO(stdin=stdin, stdout=out, stderr=err))
        root.track(c)
        return Out(c, out, err)

    return make


@pytest.fixture
def run(create):
    """run(args_or_bundle, modify=None, timeout=10, ...) -> (status, stdout, stderr).

    Creates, starts and waits for the container, then deletes it (with
    force when something went wrong)."""

    def go(what, modify=None, timeout=10, **kwargs):
        o = create(what, modify, **kwargs)
        c = o.container
        try:
            c.start()
            status = c.wait(timeout=timeout)
            c.delete()
        except BaseException:
            c.delete(force=True)
            raise
        return status, o.stdout(), o.stderr()

    return go


@pytest.fixture
def sh(run):
    """sh(script, modify=None) -> (status, stdout, stderr) of `sh -c script`."""

    def go(script, modify=None, **kwargs):
        return run(["sh", "-c", script], modify, **kwargs)

    return go
