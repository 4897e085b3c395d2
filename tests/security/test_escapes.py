"""Container escapes, one real reproduction per class (SECURITY.md).

Each test builds the hostile input (rootfs, spec, planted symlink) and
checks the unsafe condition itself: the host file that would be written,
the host directory the container would reach, the device it would read.
No test writes a real host file or device: the victims are copies in the
test's own directory, a loop device over a scratch file, or a sysctl
written with the value it already has."""

import errno
import json
import os
import subprocess

import pytest

import runtime
from lowlevel import cgroups
from tests.bundles import DEFAULT_SPEC

# ---------------------------------------------------- CVE-2024-21626 class


@pytest.mark.parametrize("n", range(3, 40))
def test_cwd_through_a_leaked_fd_does_not_reach_the_host(sh, n):
    """process.cwd = /proc/self/fd/N: an fd the runtime left open in the
    init (e.g. the cgroup directory opened for CLONE_INTO_CGROUP) would put
    the container's cwd outside its root; enough `..` then reach the
    host's /."""
    host_root = os.stat("/")

    def m(spec):
        spec["process"]["cwd"] = f"/proc/self/fd/{n}"
    try:
        status, out, err = sh("cd ../../../../../../../../..; stat -c '%d %i' .", m)
    except runtime.ContainerError as exc:
        assert "process.cwd" in str(exc) or f"/proc/self/fd/{n}" in str(exc), str(exc)
        return
    if status == 0:
        dev, ino = (int(x) for x in out.split())
        assert (dev, ino) != (host_root.st_dev, host_root.st_ino), \
            f"cwd /proc/self/fd/{n} reached the host's /"


@pytest.mark.parametrize("n", range(3, 40))
def test_exec_cwd_through_a_leaked_fd_does_not_reach_the_host(create, n):
    host_root = os.stat("/")
    o = create(["sleep", "60"])
    c = o.c
    c.start()
    try:
        spec = {"args": ["sh", "-c", "cd ../../../../../../../../..; stat -c '%d %i' ."],
                "cwd": f"/proc/self/fd/{n}", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
        out = o.stdout_path + ".exec"
        try:
            p = c.exec(runtime.ExecOpts(spec=json.dumps(spec).encode(),
                                        io=runtime.IO(stdout=out)))
        except runtime.ContainerError as exc:
            assert f"/proc/self/fd/{n}" in str(exc) or "process.cwd" in str(exc), str(exc)
            return
        status = p.wait(timeout=10)
        if status == 0:
            with open(out) as f:
                dev, ino = (int(x) for x in f.read().split())
            assert (dev, ino) != (host_root.st_dev, host_root.st_ino), \
                f"exec cwd /proc/self/fd/{n} reached the host's /"
    finally:
        c.delete(force=True)


def test_no_host_fd_in_the_init_before_execve(create):
    """The init, waiting before execve, holds only 0, 1, 2: no cgroup
    directory, namespace, state or lock fd of the host."""
    o = create(["true"])
    fds = sorted(int(n) for n in os.listdir(f"/proc/{o.c.pid}/fd"))
    extra = {fd: os.readlink(f"/proc/{o.c.pid}/fd/{fd}") for fd in fds if fd > 2}
    # the waiting init needs the exec fifo and the sealed exec stub
    extra = {fd: t for fd, t in extra.items()
             if not t.endswith("/exec.fifo") and not t.startswith("/memfd:barerun-exec-stub")}
    assert not extra, f"host fds in the created container's init: {extra}"
    o.c.delete(force=True)


# ---------------------------------------------------- CVE-2025-31133 class


def _no_dev_mounts(spec):
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/dev")]


def test_masked_paths_never_bind_a_symlinked_dev_null(sh, private_rootfs):
    """A rootfs whose /dev/null links to /proc/sys/kernel/core_pattern: a
    masked file (/proc/timer_list, ...) bound from it would be
    core_pattern, writable.  Checked by reading: no masked file may show
    the host's core_pattern."""
    masked = [p for p in DEFAULT_SPEC["linux"]["maskedPaths"] if os.path.isfile(p)]
    assert masked, "no masked file exists on this kernel"
    dev = os.path.join(private_rootfs, "dev")
    os.makedirs(dev, exist_ok=True)
    for name in os.listdir(dev):
        os.unlink(os.path.join(dev, name))
    os.symlink("/proc/sys/kernel/core_pattern", os.path.join(dev, "null"))
    with open("/proc/sys/kernel/core_pattern") as f:
        core_pattern = f.read()
    try:
        status, out, err = sh(f"cat {' '.join(masked)}", _no_dev_mounts,
                              rootfs_path=private_rootfs)
    except runtime.ContainerError as exc:
        assert "/dev/null" in str(exc), str(exc)
        return
    assert core_pattern.strip() not in out, "a masked path shows the host's core_pattern"


def test_masked_paths_refuse_a_dev_null_that_is_a_regular_file(run, private_rootfs):
    dev = os.path.join(private_rootfs, "dev")
    os.makedirs(dev, exist_ok=True)
    with open(os.path.join(dev, "null"), "w") as f:
        f.write("not a device\n")
    with pytest.raises(runtime.ContainerError) as ei:
        run(["true"], _no_dev_mounts, rootfs_path=private_rootfs)
    assert "/dev/null" in str(ei.value) and "1:3" in str(ei.value)


# ------------------------------------------- files barerun writes as root


def test_pid_file_never_follows_a_planted_symlink(create, bundle, root, tmp_path):
    """The pid file's temp name beside it, planted as a symlink to a
    "host" file: barerun (root) must not truncate or write it."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    pdir = tmp_path / "piddir"
    pdir.mkdir()
    pid_file = pdir / "pid"
    os.symlink(victim, f"{pid_file}.tmp{os.getpid()}")
    c = runtime.create("barerun-test-pidfile", bundle(["true"]), root=root, pid_file=str(pid_file))
    root.track(c)
    try:
        assert victim.read_text() == "precious\n"
        assert pid_file.read_text() == str(c.pid)
        assert not os.path.islink(pid_file)
    finally:
        c.delete(force=True)


def test_state_file_never_follows_a_planted_symlink(create, root, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    o = create(["sleep", "60"])
    sdir = os.path.join(str(root), o.c.id)
    for name in ("state.json.tmp", f"state.json.tmp{os.getpid()}"):
        os.symlink(victim, os.path.join(sdir, name))
    o.c.start()  # rewrites state.json
    try:
        assert victim.read_text() == "precious\n"
        assert o.c.state().status == runtime.Status.RUNNING
    finally:
        o.c.delete(force=True)


# ------------------------------------------------------ host sysctls


@pytest.mark.parametrize("kind,key", [("network", "net.ipv4.ip_forward"),
                                      ("ipc", "kernel.shmmni")])
def test_sysctl_in_a_joined_host_namespace_is_refused(run, kind, key):
    """linux.sysctl with the host's own namespace joined by path would
    write the host's sysctl.  The value asked is the host's current one,
    so not even a failure of this test changes the host."""
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        value = f.read().strip()

    def m(spec):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] != kind]
        spec["linux"]["namespaces"].append({"type": kind, "path": f"/proc/self/ns/"
                                            + ("net" if kind == "network" else kind)})
        spec["linux"]["sysctl"] = {key: value}
    with pytest.raises(runtime.InvalidSpec) as ei:
        run(["true"], m)
    assert f"linux.sysctl.{key}" in str(ei.value)
    assert "host" in str(ei.value)


def test_sysctl_without_its_namespace_is_refused(run):
    def m(spec):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] != "network"]
        spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "0"}
    with pytest.raises(runtime.InvalidSpec) as ei:
        run(["true"], m)
    assert "linux.sysctl.net.ipv4.ip_forward" in str(ei.value)


# ------------------------------------------------------------ devices
# On this hybrid host both the v1 devices files and the BPF program on the
# unified cgroup enforce the rules; test_cli_escapes.py runs the same
# attacks in a pure cgroup v2 view, where the BPF program alone does.


@pytest.fixture
def loop_disk(tmp_path):
    """A loop device over a scratch file: the "host disk" a container must
    not read.  Its first bytes are a marker."""
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.write(b"BARERUN-HOST-DISK\n".ljust(1 << 20, b"\0"))
    r = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no loop device: {r.stderr.strip()}")
    dev = r.stdout.strip()
    try:
        yield dev, os.stat(dev).st_rdev
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def with_disk_node(rdev, rules):
    def m(spec):
        spec["linux"]["devices"] = [{"path": "/dev/hostdisk", "type": "b",
                                     "major": os.major(rdev), "minor": os.minor(rdev),
                                     "fileMode": 0o600, "uid": 0, "gid": 0}]
        spec["linux"]["resources"]["devices"] = rules
        spec["process"]["capabilities"] = {k: ["CAP_MKNOD", "CAP_DAC_OVERRIDE"]
                                           for k in ("bounding", "effective", "permitted")}
    return m


@pytest.mark.parametrize("rules", [[{"allow": False, "access": "rwm"}], []],
                         ids=["deny-all", "no-rules"])
def test_a_listed_device_is_not_readable_unless_allowed(sh, loop_disk, rules):
    """linux.devices lists the disk; the rules deny it (or say nothing,
    which must mean deny): reading it must fail with EPERM."""
    dev, rdev = loop_disk
    status, out, err = sh("head -c 17 /dev/hostdisk", with_disk_node(rdev, rules))
    assert "BARERUN-HOST-DISK" not in out, "the container read the host disk"
    assert status != 0 and os.strerror(errno.EPERM) in err, (status, out, err)


def test_mknod_of_a_host_disk_is_not_readable(sh, loop_disk):
    """CAP_MKNOD (containerd's and Docker's default) and no rule for the
    disk: the node can be made, but not read."""
    dev, rdev = loop_disk

    def m(spec):
        spec["mounts"] = [mm for mm in spec["mounts"] if mm["destination"] != "/tmp"]
        spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                               "options": ["size=1m"]})
        spec["process"]["capabilities"] = {k: ["CAP_MKNOD", "CAP_DAC_OVERRIDE"]
                                           for k in ("bounding", "effective", "permitted")}
    status, out, err = sh(f"mknod /tmp/d b {os.major(rdev)} {os.minor(rdev)} && "
                          "head -c 17 /tmp/d", m)
    assert "BARERUN-HOST-DISK" not in out, "the container read the host disk"
    assert os.strerror(errno.EPERM) in err, (status, out, err)


def test_an_allowed_device_is_readable(sh, loop_disk):
    """The check above can fail: with an allow rule the disk is read."""
    dev, rdev = loop_disk
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "b", "major": os.major(rdev), "minor": os.minor(rdev),
              "access": "r"}]
    status, out, err = sh("head -c 17 /dev/hostdisk", with_disk_node(rdev, rules))
    assert (status, out) == (0, "BARERUN-HOST-DISK"), err


# ------------------------------------------------------- the cgroup tree


def _without_cgroupns(spec):
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                   if n["type"] != "cgroup"]
    if not any(m["destination"] == "/sys/fs/cgroup" for m in spec["mounts"]):
        spec["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup",
                               "source": "cgroup", "options": ["ro", "nosuid", "noexec"]})


@pytest.mark.parametrize("cgroupns", [False, True], ids=["no-cgroupns", "cgroupns"])
def test_the_container_sees_its_own_cgroup_not_the_hosts_tree(sh, cgroupns):
    """Without a cgroup namespace the container's cgroup mount must be its
    own cgroup, not the host's root: the host's own barerun/ directory
    (where every container's cgroup lives) must not be visible, and the
    limit it reads is its own."""
    layout = cgroups.detect()

    def m(spec):
        _without_cgroupns(spec)
        if cgroupns:
            spec["linux"]["namespaces"].append({"type": "cgroup"})
        spec["linux"]["resources"]["pids"] = {"limit": 77}
    if layout.mode == "v2":
        script = "ls /sys/fs/cgroup; cat /sys/fs/cgroup/pids.max"
    else:
        script = "ls /sys/fs/cgroup/pids; cat /sys/fs/cgroup/pids/pids.max"
    status, out, err = sh(script, m)
    assert status == 0, err
    names = out.split()
    assert "barerun" not in names, "the host's cgroup tree is visible in the container"
    assert names[-1] == "77", out


# ------------------------------------------------------ recursive read-only


def test_rro_makes_submounts_read_only_too(sh, tmp_path):
    """An `rro` bind of a tree holding a submount: writes must fail in the
    submount as in the top (a plain `ro` bind leaves submounts writable).
    The tree and its tmpfs submount are scratch ones of this test."""
    top = tmp_path / "tree"
    sub = top / "sub"
    sub.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "barerun-test-rro", str(sub)],
                   check=True)
    try:
        def m(spec):
            spec["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(top),
                                   "options": ["rbind", "rro"]})
        status, out, err = sh("touch /mnt/top; echo top=$?; touch /mnt/sub/f; echo sub=$?", m)
        assert not os.path.exists(sub / "f"), "rro left the submount writable"
        assert not os.path.exists(top / "top"), "rro left the mount writable"
        assert "top=1" in out and "sub=1" in out, (out, err)
    finally:
        subprocess.run(["umount", "-l", str(sub)], check=False)


def test_update_replaces_the_device_rules(create, loop_disk):
    """`update` with new device rules takes effect in a running container:
    allowed, the disk is read; denied by an update, it is not, and the
    unified cgroup holds one device program (the old one was detached
    after the new one was attached)."""
    _dev, rdev = loop_disk
    allow = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "b", "major": os.major(rdev), "minor": os.minor(rdev),
              "access": "r"}]
    o = create(["sleep", "60"], with_disk_node(rdev, allow))
    c = o.c
    c.start()

    def read_disk(tag):
        out, err = f"{o.stdout_path}.{tag}", f"{o.stdout_path}.{tag}.err"
        spec = {"args": ["head", "-c", "17", "/dev/hostdisk"], "cwd": "/",
                "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
        p = c.exec(runtime.ExecOpts(spec=json.dumps(spec).encode(),
                                    io=runtime.IO(stdout=out, stderr=err)))
        status = p.wait(timeout=10)
        with open(out) as f, open(err) as e:
            return status, f.read(), e.read()

    try:
        assert read_disk("before")[:2] == (0, "BARERUN-HOST-DISK")
        c.update({"devices": [{"allow": False, "access": "rwm"}]})
        status, out, err = read_disk("after")
        assert "BARERUN-HOST-DISK" not in out, "update left the disk readable"
        assert status != 0 and os.strerror(errno.EPERM) in err, (status, out, err)
        layout = cgroups.detect()
        if layout.unified:
            from lowlevel.cgroups import devices
            path = c.cgroup.paths["unified"]
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                assert len(devices.attached(fd, path)) == 1
            finally:
                os.close(fd)
    finally:
        c.delete(force=True)


def test_update_and_stats_need_a_live_container(create):
    o = create(["true"])
    c = o.c
    c.start()
    c.wait(timeout=10)
    for op in (lambda: c.update({"pids": {"limit": 10}}), c.stats):
        with pytest.raises(runtime.InvalidState) as ei:
            op()
        assert c.id in str(ei.value)
    c.delete()


def test_failed_execs_leave_no_unreaped_process(create):
    """Each exec that fails in the process itself (a cwd it may not have)
    is reaped: no zombie child of ours is left (one would keep the
    container's init from ever finishing), and delete finishes."""
    o = create(["sleep", "60"])
    c = o.c
    c.start()
    spec = {"args": ["true"], "cwd": "/proc/self/fd/9", "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0}}
    try:
        for _ in range(20):
            with pytest.raises(runtime.ContainerError):
                c.exec(runtime.ExecOpts(spec=json.dumps(spec).encode()))
            left = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            assert left is None, f"an exec'd process left unreaped: pid {left.si_pid}"
    finally:
        c.delete(force=True)
