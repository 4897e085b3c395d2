"""lowlevel.cgroups against the real kernel (run as root).

Every cgroup made here is named barerun-test/<random>; the ``lab`` fixture
kills what the test started and removes what it made, even on failure, and
a module fixture sweeps any barerun-test directory left in any hierarchy.
The pure-v2 tests run in a forked child that has its own mount namespace
with cgroup2 mounted on /sys/fs/cgroup.
"""

import errno
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import time
import traceback
import uuid

import pytest

from lowlevel import cgroups
from lowlevel.cgroups import resources as res_mod

PREFIX = "barerun-test"
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="cgroup tests need root (they mkdir in /sys/fs/cgroup)")


def _layout_or_none():
    try:
        return cgroups.detect()
    except OSError:
        return None


HOST = _layout_or_none()
needs_v1_freezer = pytest.mark.skipif(
    HOST is None or "freezer" not in HOST.v1,
    reason="needs a v1 freezer hierarchy (v1 or hybrid host)")
needs_v1_resources = pytest.mark.skipif(
    HOST is None or not {"memory", "pids", "cpu", "cpuset"} <= set(HOST.v1),
    reason="needs v1 memory, pids, cpu and cpuset hierarchies")


# ------------------------------------------------------------------ helpers

def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_for(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


# barerun-test* directories that existed before this module ran (another
# test module's, or another run's): not this module's to judge or remove
_BEFORE = set()


def leftovers(layout=None):
    """Every barerun-test* directory at the root of every hierarchy that
    this module made and did not remove."""
    layout = layout or cgroups.detect()
    roots = set(layout.v1.values()) | ({layout.unified} if layout.unified else set())
    return sorted(p for p in (os.path.join(r, n) for r in roots if os.path.isdir(r)
                              for n in os.listdir(r) if n.startswith(PREFIX))
                  if p not in _BEFORE)


def sweep(path):
    """Last-resort cleanup of a leftover directory tree: kill, thaw, rmdir."""
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            sweep(entry.path)
    for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0"),
                        ("cgroup.kill", "1")):
        try:
            with open(os.path.join(path, name), "w") as f:
                f.write(value)
        except OSError:
            pass
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            for pid in f.read().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
    except OSError:
        pass
    for _ in range(200):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


@pytest.fixture(scope="module", autouse=True)
def sweep_leftovers():
    if IS_ROOT and HOST is not None:
        _BEFORE.update(leftovers())
    yield
    if IS_ROOT and HOST is not None:
        for path in leftovers():
            sweep(path)


class Lab:
    """Makes cgroups and processes for one test and undoes them all."""

    def __init__(self):
        self.cgroups, self.procs = [], []

    def cgroup(self, create=True, layout=None):
        cg = cgroups.Cgroup(f"{PREFIX}/{uuid.uuid4().hex[:12]}", layout=layout)
        self.cgroups.append(cg)
        if create:
            cg.create()
        return cg

    def spawn(self, argv, cg=None, **kw):
        """Start argv; with ``cg`` the child joins it before exec."""
        p = subprocess.Popen(argv, preexec_fn=cg.join if cg else None,
                             close_fds=True, **kw)
        self.procs.append(p)
        return p

    def cleanup(self):
        errors = []
        for cg in self.cgroups:
            try:
                if cg.exists():
                    try:
                        cg.thaw()
                    except OSError:
                        pass
                    cg.kill_all(signal.SIGKILL)
            except OSError as exc:
                errors.append(exc)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream:
                    stream.close()
        for cg in self.cgroups:
            try:
                cg.remove(timeout=5)
            except OSError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def lab():
    lab = Lab()
    yield lab
    lab.cleanup()


# ------------------------------------------------------------------ detect (pure parsing)

HYBRID_MOUNTINFO = """\
43 42 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
46 43 0:22 / /sys rw,relatime - sysfs sysfs rw
47 46 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
48 47 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
49 47 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
50 47 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
51 47 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
52 47 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
53 47 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
54 47 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
55 47 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
56 47 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
57 47 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
58 43 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755
"""

# CentOS 7 style: co-mounted controllers, options that are not controllers
V1_MOUNTINFO = """\
1 0 8:1 / / rw - xfs /dev/sda1 rw
20 1 0:19 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw
24 20 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:7 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
27 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
28 24 0:24 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,net_cls,net_prio
29 24 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
30 24 0:26 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpuset,clone_children
31 24 0:27 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,freezer
"""

V2_MOUNTINFO = """\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
1 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
"""


def test_detect_hybrid_text():
    layout = cgroups.detect(HYBRID_MOUNTINFO)
    assert layout.mode == "hybrid"
    assert layout.unified == "/sys/fs/cgroup/unified"
    assert layout.v1["memory"] == "/sys/fs/cgroup/memory"
    assert layout.v1["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert set(layout.v1) == {"cpu", "cpuacct", "cpuset", "memory", "devices",
                              "freezer", "blkio", "pids", "name=systemd"}


def test_detect_v1_text_comounted_and_named():
    layout = cgroups.detect(V1_MOUNTINFO)
    assert layout.mode == "v1" and layout.unified is None
    assert layout.v1["cpu"] == layout.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.v1["net_prio"] == "/sys/fs/cgroup/net_cls,net_prio"
    assert layout.v1["name=systemd"] == "/sys/fs/cgroup/systemd"
    for key in layout.v1:            # options are not controllers
        assert key not in ("xattr", "clone_children", "rw")
        assert not key.startswith("release_agent")
    # paths: co-mounted controllers share one directory
    cg = cgroups.Cgroup("barerun/abc", layout=layout)
    assert cg.paths["cpu"] == cg.paths["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/barerun/abc"
    assert "unified" not in cg.paths
    assert cg.open_unified_fd() is None


def test_detect_v2_text():
    layout = cgroups.detect(V2_MOUNTINFO)
    assert layout == cgroups.Layout("v2", {}, "/sys/fs/cgroup")
    assert cgroups.Cgroup("/barerun/abc/", layout=layout).paths == {
        "unified": "/sys/fs/cgroup/barerun/abc"}


def test_detect_ignores_hierarchies_hidden_by_a_later_mount():
    # cgroup2 mounted over /sys/fs/cgroup in a private namespace: the v1
    # mounts below it stay listed in mountinfo but are unreachable
    text = HYBRID_MOUNTINFO + \
        "63 47 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
    layout = cgroups.detect(text)
    assert layout == cgroups.Layout("v2", {}, "/sys/fs/cgroup")


def test_detect_escaped_mountpoint_and_no_cgroup():
    text = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n" \
           "5 1 0:30 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n"
    assert cgroups.detect(text).unified == "/mnt/my cg"
    with pytest.raises(OSError) as info:
        cgroups.detect("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n")
    assert info.value.errno == errno.ENOENT
    assert "mountinfo" in str(info.value)


def test_parse_proc_cgroup_text():
    text = "12:cpu,cpuacct:/barerun/x\n1:name=systemd:/user.slice\n0::/barerun/x\n"
    assert cgroups.parse_proc_cgroup(text) == {
        "cpu": "/barerun/x", "cpuacct": "/barerun/x",
        "name=systemd": "/user.slice", "unified": "/barerun/x"}


def test_bad_relative_path_refused():
    for bad in ("", "/", "barerun/../etc", "./x"):
        with pytest.raises(ValueError):
            cgroups.Cgroup(bad, layout=cgroups.detect(V2_MOUNTINFO))


def test_v2_conversions_match_runc():
    assert cgroups.shares_to_weight(2) == 1
    assert cgroups.shares_to_weight(1024) == 39
    assert cgroups.shares_to_weight(262144) == 10000
    assert res_mod.swap_v2(256, 128, "f") == 128        # total - memory
    assert res_mod.swap_v2(-1, 128, "f") == -1
    assert res_mod.swap_v2(None, -1, "f") == -1
    assert res_mod.swap_v2(None, 128, "f") is None
    with pytest.raises(OSError) as info:
        res_mod.swap_v2(64, 128, "/cg/memory.swap.max")
    assert info.value.errno == errno.EINVAL
    assert "/cg/memory.swap.max" in str(info.value)
    assert res_mod.cpu_max(50000, 100000) == "50000 100000"
    assert res_mod.cpu_max(-1, None) == "max"
    assert res_mod.cpu_max(None, 20000, "30000") == "30000 20000"
    assert res_mod.pids_max(5) == "5" and res_mod.pids_max(0) == "max"


# ------------------------------------------------------------------ detect (this machine)

@needs_root
def test_detect_this_machine_is_hybrid():
    if not os.path.isdir("/sys/fs/cgroup/unified"):
        pytest.skip("not the hybrid VM described in DESIGN.md")
    layout = cgroups.detect()
    assert layout.mode == "hybrid"
    assert layout.unified == "/sys/fs/cgroup/unified"
    for name in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer",
                 "blkio", "pids"):
        assert layout.v1[name] == f"/sys/fs/cgroup/{name}"
    assert layout.v1["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert cgroups.detect() is layout          # cached per process


# ------------------------------------------------------------------ life cycle

@needs_root
def test_create_attach_procs_remove_round_trip(lab):
    cg = lab.cgroup()
    assert cg.exists()
    for path in cg.paths.values():
        assert os.path.isdir(path), path
    if "cpuset" in cg.paths:
        with open(os.path.join(cg.paths["cpuset"], "cpuset.cpus")) as f:
            assert f.read().strip() != ""      # copied from the parent
    p = lab.spawn(["sleep", "60"])
    cg.attach(p.pid)
    assert cg.procs() == [p.pid]
    where = cgroups.own_cgroup(p.pid)
    for name in cg.paths:
        assert where[name] == "/" + cg.rel, name
    p.kill()
    p.wait()
    assert wait_for(lambda: cg.procs() == [])
    cg.remove()
    assert not cg.exists()
    assert leftovers() == []
    cg.remove()                                 # already gone: fine


@needs_root
def test_remove_leaves_nothing_in_any_hierarchy(lab):
    parent = f"{PREFIX}/{uuid.uuid4().hex[:12]}"
    cg = cgroups.Cgroup(parent + "/deeper/leaf")
    lab.cgroups.append(cgroups.Cgroup(parent))   # cleanup on failure
    cg.create()
    # a child cgroup made "inside the container" goes too
    os.mkdir(os.path.join(cg.paths["unified" if "unified" in cg.paths
                                    else next(iter(cg.paths))], "inner"))
    p = lab.spawn(["sleep", "60"], cg=cg)
    assert cg.procs() == [p.pid]
    cg.kill_all(signal.SIGKILL)
    assert p.wait(timeout=5) == -signal.SIGKILL
    cg.remove()
    assert leftovers() == []


@needs_root
def test_join_moves_the_calling_process(lab):
    cg = lab.cgroup()
    p = lab.spawn(["sleep", "60"], cg=cg)
    assert cg.procs() == [p.pid]
    where = cgroups.own_cgroup(p.pid)
    assert all(where[name] == "/" + cg.rel for name in cg.paths)


@needs_root
@pytest.mark.needs_syscall("clone3")  # CLONE_INTO_CGROUP exists only there
def test_clone_into_cgroup_with_unified_fd(lab):
    from lowlevel._ffi import ffi, lib
    cg = lab.cgroup()
    fd = cg.open_unified_fd()
    if fd is None:
        pytest.skip("no unified hierarchy")
    try:
        sleep = shutil.which("sleep").encode()
        args = [ffi.new("char[]", a) for a in (sleep, b"60")]
        argv = ffi.new("char *[]", args + [ffi.NULL])
        envp = ffi.new("char *[]", [ffi.NULL])
        pid = lib.barerun_spawn(lib.CLONE_INTO_CGROUP, fd, ffi.NULL, 1,
                                sleep, argv, envp)
        assert pid > 0, os.strerror(ffi.errno)
    finally:
        os.close(fd)
    try:
        assert cgroups.own_cgroup(pid)["unified"] == "/" + cg.rel
        if cg.layout.mode == "v2":
            assert cg.procs() == [pid]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@needs_root
def test_trace_reports_mkdir_write_rmdir(lab, caplog):
    caplog.set_level(logging.DEBUG, logger="barerun.trace")
    cg = lab.cgroup()
    cg.set_resources(cgroups.Resources(pids_limit=7))
    cg.remove()
    text = caplog.text
    assert f"cgroup.mkdir path='{cg.paths['freezer' if 'freezer' in cg.paths else 'unified']}'" in text
    if "pids" in cg.paths:
        assert (f"cgroup.write path='{cg.paths['pids']}/pids.max' value='7'"
                in text)
    assert "cgroup.rmdir" in text


# ------------------------------------------------------------------ freezer v1

@needs_root
@needs_v1_freezer
def test_v1_freezer_stops_a_busy_process(lab):
    cg = lab.cgroup()
    p = lab.spawn(["sh", "-c", "while :; do :; done"], cg=cg)
    start = cpu_ticks(p.pid)
    assert wait_for(lambda: cpu_ticks(p.pid) > start + 5), "child not running"
    assert cg.state() == "THAWED"

    cg.freeze()
    assert cg.state() == "FROZEN"
    frozen_at = cpu_ticks(p.pid)
    time.sleep(0.3)
    assert cpu_ticks(p.pid) == frozen_at, "frozen process kept running"

    cg.thaw()
    assert cg.state() == "THAWED"
    assert wait_for(lambda: cpu_ticks(p.pid) > frozen_at + 5), "did not resume"


@needs_root
@needs_v1_freezer
def test_v1_kill_all_sigkill_kills_every_process(lab):
    cg = lab.cgroup()
    p = lab.spawn(["sh", "-c", "sleep 60 & sleep 60 & while :; do :; done"], cg=cg)
    assert wait_for(lambda: len(cg.procs()) == 3), cg.procs()
    pids = cg.procs()
    cg.kill_all(signal.SIGKILL)
    assert p.wait(timeout=5) == -signal.SIGKILL
    assert wait_for(lambda: cg.procs() == []), cg.procs()
    for pid in pids:       # the orphaned sleeps are gone (or zombies)
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            pass
    assert cg.state() == "THAWED"               # kill_all thawed again


@needs_root
@needs_v1_freezer
def test_v1_kill_all_other_signal_reaches_frozen_tasks(lab):
    cg = lab.cgroup()
    p = lab.spawn(["sleep", "60"], cg=cg)
    cg.kill_all(signal.SIGTERM)
    assert p.wait(timeout=5) == -signal.SIGTERM
    assert cg.state() == "THAWED"


# ------------------------------------------------------------------ resources v1

@needs_root
@needs_v1_resources
def test_v1_memory_limit_oom_kills(lab):
    cg = lab.cgroup()
    mib = 1 << 20
    cg.set_resources(cgroups.Resources(memory_limit=16 * mib,
                                       memory_swap=16 * mib,
                                       memory_reservation=8 * mib))
    mem = cg.paths["memory"]
    with open(f"{mem}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 16 * mib
    with open(f"{mem}/memory.soft_limit_in_bytes") as f:
        assert int(f.read()) == 8 * mib
    # dd reads 64 MiB of zeros into one buffer: every page is touched
    p = lab.spawn(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                  cg=cg, stderr=subprocess.DEVNULL)
    assert p.wait(timeout=30) == -signal.SIGKILL
    stats = cg.stats()["memory"]
    assert stats["limit"] == 16 * mib
    assert stats["oom_kill"] >= 1
    assert stats["max_usage"] <= 16 * mib


@needs_root
@needs_v1_resources
def test_v1_pids_limit_stops_a_fork_loop(lab):
    cg = lab.cgroup()
    cg.set_resources(cgroups.Resources(pids_limit=5))
    p = lab.spawn(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 60 2>/dev/null & done; wait"],
                  cg=cg, stderr=subprocess.PIPE, text=True)
    err = p.communicate(timeout=10)[1]
    assert p.returncode != 0 and "fork" in err.lower(), err
    with open(os.path.join(cg.paths["pids"], "pids.events")) as f:
        assert int(f.read().split()[1]) >= 1      # "max N": refusals
    stats = cg.stats()["pids"]
    assert stats["limit"] == 5 and stats["current"] <= 5
    assert 0 < len(cg.procs()) < 5                 # the sleeps sh managed


@needs_root
@needs_v1_resources
def test_v1_cpu_values_read_back(lab):
    cg = lab.cgroup()
    cg.set_resources(cgroups.Resources(cpu_shares=512, cpu_quota=25000,
                                       cpu_period=50000, cpuset_cpus="0",
                                       cpuset_mems="0"))

    def read(name, file):
        with open(os.path.join(cg.paths[name], file)) as f:
            return f.read().strip()
    assert read("cpu", "cpu.shares") == "512"
    assert read("cpu", "cpu.cfs_quota_us") == "25000"
    assert read("cpu", "cpu.cfs_period_us") == "50000"
    assert read("cpuset", "cpuset.cpus") == "0"
    assert read("cpuset", "cpuset.mems") == "0"
    # a shorter period with a quota: order handled
    cg.set_resources(cgroups.Resources(cpu_quota=-1, cpu_period=10000))
    assert read("cpu", "cpu.cfs_quota_us") == "-1"
    assert read("cpu", "cpu.cfs_period_us") == "10000"
    p = lab.spawn(["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"], cg=cg)
    p.wait(timeout=30)
    stats = cg.stats()
    assert stats["cpu"]["usage"] > 0
    assert set(stats) == {"cpu", "memory", "pids"}


# ------------------------------------------------------------------ errors

@needs_root
def test_attach_dead_pid_names_the_file(lab):
    cg = lab.cgroup()
    p = subprocess.Popen(["true"])
    p.wait()
    assert not os.path.exists(f"/proc/{p.pid}")
    with pytest.raises(OSError) as info:
        cg.attach(p.pid)
    assert info.value.errno == errno.ESRCH
    assert "/cgroup.procs" in str(info.value) and cg.rel in str(info.value)


@needs_root
def test_freeze_missing_cgroup_is_enoent_with_path(lab):
    cg = lab.cgroup(create=False)
    with pytest.raises(OSError) as info:
        cg.freeze()
    assert info.value.errno == errno.ENOENT
    assert cg.rel in str(info.value)
    assert not cg.exists()
    with pytest.raises(OSError) as info:
        cg.procs()
    assert info.value.errno == errno.ENOENT and cg.rel in str(info.value)
    assert cg.stats() == {"cpu": {}, "memory": {}, "pids": {}}  # never raises


@needs_root
def test_bad_resource_value_names_the_file(lab):
    cg = lab.cgroup()
    with pytest.raises(OSError) as info:
        cg.set_resources(cgroups.Resources(cpuset_cpus="999"))
    assert info.value.errno in (errno.EINVAL, errno.ERANGE)   # the kernel's
    assert "cpuset.cpus" in str(info.value) and "'999'" in str(info.value)


@needs_root
def test_remove_busy_cgroup_raises_ebusy_then_succeeds(lab):
    cg = lab.cgroup()
    p = lab.spawn(["sleep", "60"], cg=cg)
    with pytest.raises(OSError) as info:
        cg.remove(timeout=0.05)
    assert info.value.errno == errno.EBUSY and cg.rel in str(info.value)
    p.kill()
    p.wait()
    cg.remove()
    assert not cg.exists()


# ------------------------------------------------------------------ pure v2 (private mount namespace)

def _run_in_v2_namespace(fn, *args, timeout=60):
    """Fork; the child gets a private mount namespace with cgroup2 on
    /sys/fs/cgroup, runs fn(*args) and sends back its JSON result."""
    from lowlevel._ffi import ffi, lib
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # child: must _exit
        code = 0
        try:
            os.close(r)
            try:
                if lib.unshare(lib.CLONE_NEWNS) != 0:
                    raise OSError(ffi.errno, "unshare CLONE_NEWNS")
                if lib.mount(b"none", b"/", ffi.NULL,
                             lib.MS_REC | lib.MS_PRIVATE, ffi.NULL) != 0:
                    raise OSError(ffi.errno, "make / rprivate")
                if lib.mount(b"cgroup2", b"/sys/fs/cgroup", b"cgroup2", 0,
                             ffi.NULL) != 0:
                    raise OSError(ffi.errno, "mount cgroup2 on /sys/fs/cgroup")
                result = fn(*args)
            except BaseException:
                result = {"error": traceback.format_exc()}
            data = json.dumps(result).encode()
            while data:
                data = data[os.write(w, data):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([r], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("v2 namespace child timed out")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks) or b"{}")
    assert "error" not in result, result.get("error")
    return result


def _v2_child(rel):
    """In the private namespace: freeze, thaw and kill on pure cgroup2."""
    out = {}
    layout = cgroups.detect()
    out["mode"], out["unified"], out["v1"] = layout.mode, layout.unified, layout.v1
    cg = cgroups.Cgroup(rel, layout=layout)
    busy = None
    try:
        cg.create()
        out["exists"] = cg.exists()
        busy = subprocess.Popen(["sh", "-c", "while :; do :; done"])
        cg.attach(busy.pid)
        out["procs"] = cg.procs() == [busy.pid]
        start = cpu_ticks(busy.pid)
        out["runs"] = bool(wait_for(lambda: cpu_ticks(busy.pid) > start + 5))

        cg.freeze()
        out["frozen_state"] = cg.state()
        with open(os.path.join(cg.paths["unified"], "cgroup.events")) as f:
            out["events"] = f.read().split("\n")
        at = cpu_ticks(busy.pid)
        time.sleep(0.3)
        out["frozen_delta"] = cpu_ticks(busy.pid) - at

        cg.thaw()
        out["thawed_state"] = cg.state()
        at = cpu_ticks(busy.pid)
        out["resumed"] = bool(wait_for(lambda: cpu_ticks(busy.pid) > at + 5))

        # a signal other than SIGKILL goes through the freezer
        other = subprocess.Popen(["sleep", "60"])
        cg.attach(other.pid)
        cg.kill_all(signal.SIGTERM)
        out["sigterm"] = [busy.wait(timeout=5), other.wait(timeout=5)]
        out["state_after_sigterm"] = cg.state()

        # SIGKILL: one write to cgroup.kill
        # the shell waits for a line on stdin, so it is in the cgroup
        # before it forks the sleep
        busy = subprocess.Popen(["sh", "-c", "read go; sleep 60 & while :; do :; done"],
                                stdin=subprocess.PIPE)
        cg.attach(busy.pid)
        busy.stdin.write(b"go\n")
        busy.stdin.close()
        out["before_kill"] = len(wait_for(lambda: len(cg.procs()) == 2 and cg.procs()))
        seen = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = lambda record: seen.append(record.getMessage())
        log = logging.getLogger("barerun.trace")
        old_level = log.level
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        try:
            cg.kill_all(signal.SIGKILL)
        finally:
            log.removeHandler(handler)
            log.setLevel(old_level)
        out["kill_trace"] = seen
        out["sigkill"] = busy.wait(timeout=5)
        out["after_kill"] = bool(wait_for(lambda: cg.procs() == []))
        cg.remove()
        out["removed"] = not os.path.exists(cg.paths["unified"]) and \
            not os.path.exists(os.path.dirname(cg.paths["unified"]))
    finally:
        for p in (busy,):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        try:
            if cg.exists():
                cg.kill_all(signal.SIGKILL)
            cg.remove(timeout=5)
        except OSError:
            pass
    return out


@pytest.fixture
def unified_root_restored():
    """The private namespace's cgroup2 is the host's unified hierarchy:
    put its root cgroup.subtree_control back as it was."""
    root = HOST.unified if HOST else None
    if not root:
        yield None
        return
    path = os.path.join(root, "cgroup.subtree_control")
    with open(path) as f:
        before = set(f.read().split())
    yield root
    with open(path) as f:
        added = set(f.read().split()) - before
    for name in added:
        try:
            with open(path, "w") as f:
                f.write("-" + name)
        except OSError:
            pass


def _run_in_v2_and_sweep(child):
    """``child(rel)`` in a private pure-v2 view, on a fresh cgroup ``rel``;
    the same cgroup2 fs is the host's unified hierarchy: whatever is left
    of ``rel`` there is swept afterwards."""
    rel = f"{PREFIX}/{uuid.uuid4().hex[:12]}"
    try:
        return _run_in_v2_namespace(child, rel)
    finally:
        if HOST and HOST.unified:
            path = os.path.join(HOST.unified, rel)
            if os.path.isdir(path):
                sweep(path)
                sweep(os.path.dirname(path))


@needs_root
def test_v2_freezer_and_kill_in_private_namespace(unified_root_restored):
    out = _run_in_v2_and_sweep(_v2_child)
    assert out["mode"] == "v2", out
    assert out["unified"] == "/sys/fs/cgroup" and out["v1"] == {}
    assert out["exists"] and out["procs"] and out["runs"]
    assert out["frozen_state"] == "FROZEN"
    assert "frozen 1" in out["events"]
    assert out["frozen_delta"] == 0
    assert out["thawed_state"] == "THAWED" and out["resumed"]
    assert out["sigterm"] == [-signal.SIGTERM, -signal.SIGTERM]
    assert out["state_after_sigterm"] == "THAWED"
    assert out["before_kill"] == 2
    assert out["sigkill"] == -signal.SIGKILL and out["after_kill"]
    # SIGKILL on v2 was one write to cgroup.kill, no per-pid kill()
    assert len(out["kill_trace"]) == 1, out["kill_trace"]
    assert "/cgroup.kill" in out["kill_trace"][0]
    assert out["removed"]


def test_procs_of_a_half_made_cgroup(lab):
    """A create killed part way may leave the cgroup in some hierarchies
    only: procs() still answers (from the ones where it exists), so
    delete --force can kill what is there and remove the rest."""
    cg = lab.cgroup()
    first = "freezer" if "freezer" in cg.layout.v1 else "unified"
    others = [h for h in cg.paths if h != first and os.path.isdir(cg.paths[h])]
    if not others:
        pytest.skip("one hierarchy only: a cgroup cannot be half made")
    os.rmdir(cg.paths[first])
    p = lab.spawn(["sleep", "60"])
    with open(os.path.join(cg.paths[others[0]], "cgroup.procs"), "w") as f:
        f.write(str(p.pid))
    assert cg.procs() == [p.pid]
    p.kill()
    p.wait()
    assert cg.procs() == []
    cg.remove()
    assert not cg.exists()


# ------------------------------------------------------------------ more resources: blkio,
# hugetlb, network, rdma, unified, the rest of memory and cpu

def test_more_v2_conversions_match_runc():
    # runc's ConvertBlkIOToIOWeightValue: 1 + (w - 10) * 9999 / 990
    assert [res_mod.blkio_to_io_weight(w) for w in (0, 10, 100, 500, 1000)] == \
        [0, 1, 910, 4950, 10000]
    assert res_mod.io_max_line(8, 16, "rbps", 1048576) == "8:16 rbps=1048576"
    assert res_mod.io_max_line(8, 16, "wiops", 0) == "8:16 wiops=max"   # 0: no limit
    assert res_mod.device_line(254, 0, 300) == "254:0 300"
    assert res_mod.rdma_line("mlx5_1", 3, 10000) == "mlx5_1 hca_handle=3 hca_object=10000"
    assert res_mod.rdma_line("mlx5_1", None, 7) == "mlx5_1 hca_object=7"
    assert [res_mod.page_size_name(k) for k in (64, 2048, 16384, 1 << 20, 16 << 20)] == \
        ["64KB", "2MB", "16MB", "1GB", "16GB"]


def test_hugepage_sizes_are_the_kernels():
    names = sorted(os.listdir(res_mod.HUGEPAGES)) if os.path.isdir(res_mod.HUGEPAGES) else []
    kib = sorted(int(n[len("hugepages-"):-2]) for n in names)
    assert res_mod.hugepage_sizes() == [res_mod.page_size_name(k) for k in kib]
    assert res_mod.hugepage_sizes("/nonexistent") == []


def test_resources_fields_each_belong_to_one_controller():
    every = [f for fields in res_mod.CONTROLLER_FIELDS.values() for f in fields]
    assert sorted(every) == sorted(cgroups.Resources.FIELDS)
    r = cgroups.Resources(hugetlb_limits=[("2MB", 0)], cpu_idle=0)
    assert r.wants("hugetlb") and r.wants("cpu") and not r.wants("memory")
    assert r.only("hugetlb") == cgroups.Resources(hugetlb_limits=[("2MB", 0)])


def _read_file(path):
    with open(path) as f:
        return f.read().strip()


def whole_disk():
    """(major, minor) of a whole disk of this machine: the one under /
    (its parent when / is on a partition), else the first non-loop disk
    in /sys/block; None when there is none."""
    st = os.stat("/").st_dev
    sysdir = f"/sys/dev/block/{os.major(st)}:{os.minor(st)}"
    if os.path.isdir(sysdir):
        if os.path.exists(os.path.join(sysdir, "partition")):
            sysdir = os.path.realpath(os.path.join(sysdir, ".."))
        major, minor = _read_file(os.path.join(sysdir, "dev")).split(":")
        return int(major), int(minor)
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("loop", "ram", "zram")):
            major, minor = _read_file(f"/sys/block/{name}/dev").split(":")
            return int(major), int(minor)
    return None


needs_v1_blkio = pytest.mark.skipif(HOST is None or "blkio" not in HOST.v1,
                                    reason="needs a v1 blkio hierarchy")


@pytest.fixture
def disk():
    found = whole_disk()
    if found is None:
        pytest.skip("no whole block device found (/sys/dev/block, /sys/block)")
    return found


@needs_root
@needs_v1_blkio
def test_v1_blkio_values_read_back(lab, disk):
    major, minor = disk
    cg = lab.cgroup()
    path = cg.paths["blkio"]
    weight = "blkio.weight" if os.path.exists(os.path.join(path, "blkio.weight")) \
        else "blkio.bfq.weight"
    if not os.path.exists(os.path.join(path, weight)):
        pytest.skip("this kernel has neither blkio.weight nor blkio.bfq.weight")
    got = cg.set_resources(cgroups.Resources(
        blkio_weight=300,
        blkio_throttle_read_bps=[(major, minor, 1 << 20)],
        blkio_throttle_write_bps=[(major, minor, 2 << 20)],
        blkio_throttle_read_iops=[(major, minor, 100)],
        blkio_throttle_write_iops=[(major, minor, 200)]))
    assert got == []
    assert _read_file(os.path.join(path, weight)).split()[-1] == "300"
    for name, value in (("read_bps", 1 << 20), ("write_bps", 2 << 20),
                        ("read_iops", 100), ("write_iops", 200)):
        assert _read_file(os.path.join(path, f"blkio.throttle.{name}_device")) == \
            f"{major}:{minor} {value}"
    # rate 0 takes the device's limit away again (what 0 means to the kernel)
    cg.set_resources(cgroups.Resources(blkio_throttle_read_bps=[(major, minor, 0)]))
    assert _read_file(os.path.join(path, "blkio.throttle.read_bps_device")) == ""


@needs_root
@needs_v1_blkio
def test_v1_blkio_unknown_device_and_missing_leaf_weight(lab):
    cg = lab.cgroup()
    taken = {tuple(map(int, _read_file(f"/sys/block/{n}/dev").split(":")))
             for n in os.listdir("/sys/block")}
    major = next(m for m in range(4000, 4095) if all(t[0] != m for t in taken))
    with pytest.raises(OSError) as info:
        cg.set_resources(cgroups.Resources(blkio_throttle_read_bps=[(major, 0, 1)]))
    # not ENODEV: that would read as "no blkio controller"
    assert info.value.errno == errno.ENXIO
    assert f"no block device {major}:0" in str(info.value)
    assert "blkio.throttle.read_bps_device" in str(info.value)
    if os.path.exists(os.path.join(cg.paths["blkio"], "blkio.leaf_weight")):
        return          # a kernel with CFQ: the write works
    with pytest.raises(FileNotFoundError) as info:
        cg.set_resources(cgroups.Resources(blkio_leaf_weight=500))
    assert "blkio.leaf_weight" in str(info.value)


@pytest.fixture
def loop_disk(tmp_path):
    """A loop device over a scratch file (a whole disk of our own), its
    I/O scheduler put back and the device detached afterwards."""
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    r = subprocess.run(["losetup", "--find", "--show", str(img)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no loop device (losetup: {r.stderr.strip()})")
    dev = r.stdout.strip()
    sched = f"/sys/block/{os.path.basename(dev)}/queue/scheduler"
    before = None
    try:
        text = _read_file(sched)
        before = text[text.index("[") + 1:text.index("]")] if "[" in text else None
        rdev = os.stat(dev).st_rdev
        yield dev, os.major(rdev), os.minor(rdev), sched, text
    finally:
        if before:
            try:
                with open(sched, "w") as f:
                    f.write(before)
            except OSError:
                pass
        subprocess.run(["losetup", "-d", dev], capture_output=True)


@needs_root
@needs_v1_blkio
def test_v1_blkio_weight_device_needs_bfq(lab, loop_disk):
    dev, major, minor, sched, offered = loop_disk
    cg = lab.cgroup()
    path = cg.paths["blkio"]
    if not os.path.exists(os.path.join(path, "blkio.bfq.weight_device")):
        pytest.skip("this kernel has no blkio.bfq.weight_device (no bfq)")
    if "bfq" not in offered.replace("[", " ").replace("]", " ").split():
        pytest.skip(f"{dev} cannot use bfq ({sched}: {offered})")
    with open(sched, "w") as f:
        f.write("mq-deadline" if "mq-deadline" in offered else "none")
    with pytest.raises(OSError) as info:
        cg.set_resources(cgroups.Resources(blkio_weight_device=[(major, minor, 300, None)]))
    assert info.value.errno == errno.EOPNOTSUPP and "bfq" in str(info.value)
    with open(sched, "w") as f:
        f.write("bfq")
    assert cg.set_resources(cgroups.Resources(
        blkio_weight_device=[(major, minor, 300, None)])) == []
    lines = _read_file(os.path.join(path, "blkio.bfq.weight_device")).splitlines()
    assert f"{major}:{minor} 300" in lines


@needs_root
@needs_v1_resources
def test_v1_memory_oom_killer_kernel_tcp_and_kernel(lab):
    cg = lab.cgroup()
    path = cg.paths["memory"]
    kmem = os.path.join(path, "memory.kmem.limit_in_bytes")
    kmem_before = _read_file(kmem) if os.path.exists(kmem) else None
    got = cg.set_resources(cgroups.Resources(memory_disable_oom_killer=True,
                                             memory_kernel=1 << 20,
                                             memory_kernel_tcp=2 << 20))
    assert "oom_kill_disable 1" in _read_file(os.path.join(path, "memory.oom_control"))
    fields = [f for f, _ in got]
    assert "memory_kernel" in fields                     # never written
    if kmem_before is not None:
        assert _read_file(kmem) == kmem_before
    tcp = os.path.join(path, "memory.kmem.tcp.limit_in_bytes")
    if os.path.exists(tcp):
        assert _read_file(tcp) == str(2 << 20) and "memory_kernel_tcp" not in fields
    else:
        assert "memory_kernel_tcp" in fields


@needs_root
@needs_v1_resources
def test_v1_cpu_idle_burst_and_realtime(lab):
    cg = lab.cgroup()
    path = cg.paths["cpu"]
    for name in ("cpu.idle", "cpu.cfs_burst_us", "cpu.rt_runtime_us"):
        if not os.path.exists(os.path.join(path, name)):
            pytest.skip(f"this kernel has no {name}")
    assert cg.set_resources(cgroups.Resources(cpu_idle=1, cpu_quota=50000,
                                              cpu_period=100000, cpu_burst=20000,
                                              cpu_rt_period=500000)) == []
    assert _read_file(os.path.join(path, "cpu.idle")) == "1"
    assert _read_file(os.path.join(path, "cpu.cfs_burst_us")) == "20000"
    assert _read_file(os.path.join(path, "cpu.rt_period_us")) == "500000"
    # 0 is written too (so an update can turn idle and burst off again)
    cg.set_resources(cgroups.Resources(cpu_idle=0, cpu_burst=0))
    assert _read_file(os.path.join(path, "cpu.idle")) == "0"
    assert _read_file(os.path.join(path, "cpu.cfs_burst_us")) == "0"
    # a new cgroup's parent leaves no real-time runtime to its children
    parent_file = os.path.join(os.path.dirname(path), "cpu.rt_runtime_us")
    assert _read_file(parent_file) == "0"
    with pytest.raises(OSError) as info:
        cg.set_resources(cgroups.Resources(cpu_rt_runtime=10000))
    assert info.value.errno == errno.EINVAL
    assert parent_file in str(info.value) and "cpu.rt_runtime_us" in str(info.value)
    # with the parent's budget the runtime is taken
    try:
        with open(parent_file, "w") as f:
            f.write("20000")
        cg.set_resources(cgroups.Resources(cpu_rt_runtime=10000, cpu_rt_period=1000000))
        assert _read_file(os.path.join(path, "cpu.rt_runtime_us")) == "10000"
        assert _read_file(os.path.join(path, "cpu.rt_period_us")) == "1000000"
    finally:
        with open(os.path.join(path, "cpu.rt_runtime_us"), "w") as f:
            f.write("0")
        try:
            with open(parent_file, "w") as f:
                f.write("0")
        except FileNotFoundError:
            pass


needs_hybrid_hugetlb = pytest.mark.skipif(
    HOST is None or HOST.mode != "hybrid" or "hugetlb" in HOST.v1
    or "hugetlb" not in _read_file(os.path.join(HOST.unified, "cgroup.subtree_control")).split(),
    reason="needs a hybrid host whose unified root has hugetlb enabled (not v1)")


@needs_root
@needs_hybrid_hugetlb
def test_hybrid_hugetlb_and_unified_files_in_the_unified_tree(lab):
    sizes = res_mod.hugepage_sizes()
    if not sizes:
        pytest.skip("this kernel has no huge page sizes (/sys/kernel/mm/hugepages)")
    root_control = os.path.join(HOST.unified, "cgroup.subtree_control")
    before = _read_file(root_control)
    cg = lab.cgroup()
    path = cg.paths["unified"]
    size = sizes[0]
    assert cg.set_resources(cgroups.Resources(hugetlb_limits=[(size, 4 << 20)])) == []
    assert _read_file(os.path.join(path, f"hugetlb.{size}.max")) == str(4 << 20)
    if os.path.exists(os.path.join(path, f"hugetlb.{size}.rsvd.max")):
        assert _read_file(os.path.join(path, f"hugetlb.{size}.rsvd.max")) == str(4 << 20)
    # enabled for the cgroup in its parent, the host's root left as it was
    assert "hugetlb" in _read_file(os.path.join(os.path.dirname(path),
                                                "cgroup.subtree_control")).split()
    assert _read_file(root_control) == before
    # unified files go there as given, and win
    cg.set_resources(cgroups.Resources(hugetlb_limits=[(size, 8 << 20)],
                                       unified=[(f"hugetlb.{size}.max", str(2 << 20))]))
    assert _read_file(os.path.join(path, f"hugetlb.{size}.max")) == str(2 << 20)
    with pytest.raises(OSError) as info:
        cg.set_resources(cgroups.Resources(hugetlb_limits=[("3MB", 0)]))
    assert info.value.errno == errno.EINVAL and ", ".join(sizes) in str(info.value)
    # the controllers of this host are v1: the unified tree has no memory.high
    with pytest.raises(FileNotFoundError) as info:
        cg.set_resources(cgroups.Resources(unified=[("memory.high", "max")]))
    assert "memory.high" in str(info.value) and "memory controller" in str(info.value)


@needs_root
def test_missing_controllers_are_enodev(lab):
    if HOST is None or HOST.mode == "v2":
        pytest.skip("a v2 host skips net_cls (no such controller in v2)")
    cg = lab.cgroup()
    checks = [("net_cls", cgroups.Resources(net_cls_classid=0x100001)),
              ("net_prio", cgroups.Resources(net_prio_ifpriomap=[("lo", 1)])),
              ("rdma", cgroups.Resources(rdma_limits=[("mlx5_0", 1, None)]))]
    offered = set()
    if HOST.unified:
        offered = set(_read_file(os.path.join(HOST.unified, "cgroup.controllers")).split())
    ran = 0
    for name, res in checks:
        if name in HOST.v1 or name in offered:
            continue            # this host has it: nothing missing to test
        with pytest.raises(OSError) as info:
            cg.set_resources(res)
        assert info.value.errno == errno.ENODEV, info.value
        assert f"no {name}" in str(info.value)
        ran += 1
    if not ran:
        pytest.skip("this host has net_cls, net_prio and rdma")


def _v2_skips_child(rel):
    """In the private namespace (pure cgroup2): what v2 leaves out, and
    the hugetlb and unified files written there."""
    out = {}
    cg = cgroups.Cgroup(rel, layout=cgroups.detect())
    try:
        cg.create()
        path = cg.paths["unified"]
        before = sorted(os.listdir(path))
        out["skipped"] = sorted(f for f, _ in cg.set_resources(cgroups.Resources(
            memory_kernel=1, memory_kernel_tcp=1, memory_disable_oom_killer=True,
            cpu_rt_runtime=1000, cpu_rt_period=100000, blkio_leaf_weight=100,
            net_cls_classid=1, net_prio_ifpriomap=[("lo", 1)])))
        out["unchanged"] = sorted(os.listdir(path)) == before
        offered = _read_file(os.path.join(path, "cgroup.controllers")).split()
        out["offered"] = offered
        sizes = res_mod.hugepage_sizes()
        if "hugetlb" in offered and sizes:
            cg.set_resources(cgroups.Resources(hugetlb_limits=[(sizes[0], 6 << 20)]))
            out["hugetlb"] = _read_file(os.path.join(path, f"hugetlb.{sizes[0]}.max"))
        try:
            cg.set_resources(cgroups.Resources(rdma_limits=[("mlx5_0", 1, None)]))
        except OSError as exc:
            out["rdma"] = [exc.errno, str(exc)]
        cg.remove()
    finally:
        try:
            if cg.exists():
                cg.remove(timeout=5)
        except OSError:
            pass
    return out


@needs_root
def test_v2_leaves_out_what_runc_ignores_in_private_namespace(unified_root_restored):
    out = _run_in_v2_and_sweep(_v2_skips_child)
    assert out["skipped"] == sorted([
        "memory_kernel", "memory_kernel_tcp", "memory_disable_oom_killer",
        "cpu_rt_runtime", "cpu_rt_period", "blkio_leaf_weight",
        "net_cls_classid", "net_prio_ifpriomap"])
    assert out["unchanged"]
    if "hugetlb" in out:
        assert out["hugetlb"] == str(6 << 20)
    if "rdma" not in out["offered"]:
        assert out["rdma"][0] == errno.ENODEV and "rdma" in out["rdma"][1]
