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


@needs_root
def test_v2_freezer_and_kill_in_private_namespace(unified_root_restored):
    rel = f"{PREFIX}/{uuid.uuid4().hex[:12]}"
    try:
        out = _run_in_v2_namespace(_v2_child, rel)
    finally:
        # the same cgroup2 fs is the host's unified hierarchy: make sure
        if HOST and HOST.unified:
            path = os.path.join(HOST.unified, rel)
            if os.path.isdir(path):
                sweep(path)
                sweep(os.path.dirname(path))
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
