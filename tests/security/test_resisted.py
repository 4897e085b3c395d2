"""The security invariants of DESIGN.md, each checked on a real container:
ids, paths resolved inside the rootfs, no fd leak, a non-dumpable runtime
inside the container's namespaces, masked/read-only paths that stay so,
and the default cgroup path."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import runtime
from runtime import Status
from tests.conftest import leftover_cgroups

# ---------------------------------------------------------------- container ids


@pytest.mark.parametrize("bad_id", ["../x", "a/b", "", "x" * 200, ".hidden", "-x", "a b",
                                    "..", "x\n", None])
def test_invalid_id_refused_before_anything(bad_id, root, bundle, tmp_path):
    b = bundle(["true"])
    before = sorted(os.listdir(tmp_path))
    cgroups_before = _barerun_cgroups()
    with pytest.raises(runtime.InvalidId) as ei:
        runtime.create(bad_id, b, root=root)
    assert "invalid container id" in str(ei.value)
    assert os.listdir(root) == []
    assert sorted(os.listdir(tmp_path)) == before  # "../x" made nothing beside the root
    assert _barerun_cgroups() <= cgroups_before


def _barerun_cgroups():
    try:
        return set(os.listdir("/sys/fs/cgroup/memory/barerun"))
    except FileNotFoundError:
        return set()


@pytest.mark.parametrize("bad_id", ["../x", "a/b", ".hidden"])
def test_invalid_id_refused_by_load(bad_id, root):
    with pytest.raises(runtime.InvalidId):
        runtime.load(bad_id, root=root)


def test_longest_valid_id(create):
    cid = "barerun-test-" + "x" * (128 - len("barerun-test-"))
    o = create(["true"], cid=cid)
    assert o.c.id == cid
    o.c.start()
    assert o.c.wait(timeout=10) == 0


# ---------------------------------------------------------------- paths stay in the rootfs


@pytest.mark.parametrize("link", ["/", "../../../..", "/../.."])
def test_mount_through_symlink_stays_in_rootfs(sh, private_rootfs, link, new_id):
    os.symlink(link, os.path.join(private_rootfs, "evil"))
    name = new_id().replace("barerun-test-", "barerun-test-x")
    host_path = f"/{name}"
    assert not os.path.exists(host_path)

    def m(spec):
        spec["mounts"].append({"destination": f"/evil/{name}", "type": "tmpfs",
                               "source": "tmpfs", "options": ["size=1m"]})
    try:
        status, out, err = sh(f"grep ' /{name} ' /proc/mounts", m, rootfs_path=private_rootfs)
    finally:
        host_made = os.path.exists(host_path)
        if host_made:
            os.rmdir(host_path)
    assert not host_made, f"{host_path} was created on the host"
    assert status == 0, err
    assert out.split()[:3] == ["tmpfs", f"/{name}", "tmpfs"]
    # created inside the rootfs instead
    assert os.path.isdir(os.path.join(private_rootfs, name))


def test_mount_destination_dotdot_stays_in_rootfs(sh, private_rootfs):
    name = "barerun-test-dotdot"
    assert not os.path.exists(f"/{name}")

    def m(spec):
        spec["mounts"].append({"destination": f"/../../../{name}", "type": "tmpfs",
                               "source": "tmpfs"})
    try:
        status, out, err = sh(f"grep ' /{name} ' /proc/mounts", m, rootfs_path=private_rootfs)
    finally:
        host_made = os.path.exists(f"/{name}")
        if host_made:
            os.rmdir(f"/{name}")
    assert not host_made
    assert status == 0, err
    assert os.path.isdir(os.path.join(private_rootfs, name))


def test_device_through_symlinked_dir_stays_in_rootfs(sh, private_rootfs, tmp_path):
    """linux.devices paths are resolved in the rootfs too: /dev is the
    container's tmpfs, so a rootfs symlink cannot even be reached; a
    device under a symlinked /dev subdirectory lands inside."""
    outside = tmp_path / "outside"
    outside.mkdir()

    def m(spec):
        spec["linux"]["devices"] = [{"path": "/dev/sub/barerun-test-null", "type": "c",
                                     "major": 1, "minor": 3}]
    status, out, err = sh("stat -c '%t %T' /dev/sub/barerun-test-null", m,
                          rootfs_path=private_rootfs)
    assert (status, out) == (0, "1 3\n"), err
    assert os.listdir(outside) == []


def test_bind_file_onto_symlink_to_existing_file(sh, private_rootfs, tmp_path):
    """/etc/evil-file -> /etc/passwd: the bind lands on the rootfs's
    /etc/passwd (what the symlink names inside the container), never on
    the host's."""
    os.symlink("/etc/passwd", os.path.join(private_rootfs, "etc/evil-file"))
    src = tmp_path / "src"
    src.write_text("payload\n")

    def m(spec):
        spec["mounts"].append({"destination": "/etc/evil-file", "type": "bind",
                               "source": str(src), "options": ["bind", "ro"]})
    status, out, err = sh("cat /etc/passwd", m, rootfs_path=private_rootfs)
    assert (status, out) == (0, "payload\n"), err


def test_bind_file_onto_dangling_symlink_stays_in_rootfs(root, bundle, private_rootfs,
                                                         tmp_path, new_id):
    """/etc/evil-file -> /tmp/barerun-test-host-target, missing: the bind
    must not create the host's /tmp/barerun-test-host-target; it may fail
    (ELOOP: a dangling symlink is not followed) or create it in the rootfs."""
    target = "/tmp/barerun-test-host-target"
    assert not os.path.exists(target)
    os.symlink(target, os.path.join(private_rootfs, "etc/evil-file"))
    src = tmp_path / "src"
    src.write_text("payload\n")

    def m(spec):
        spec["mounts"].append({"destination": "/etc/evil-file", "type": "bind",
                               "source": str(src), "options": ["bind", "ro"]})
    cid = new_id()
    try:
        c = runtime.create(cid, bundle(["cat", "/etc/evil-file"], m, private_rootfs),
                           root=root)
    except runtime.ChildError as exc:
        assert "/etc/evil-file" in str(exc)
        assert os.listdir(root) == []
    else:
        root.track(c)
        c.start()
        assert c.wait(timeout=10) == 0
        assert os.path.exists(private_rootfs + target)
    finally:
        made = os.path.exists(target)
        if made:
            os.unlink(target)
    assert not made, "the bind followed a symlink out of the rootfs"


# ---------------------------------------------------------------- file descriptors


def test_no_fd_leak(sh, tmp_path):
    leak_path = str(tmp_path / "barerun-test-leak")
    fd = os.open(leak_path, os.O_RDWR | os.O_CREAT, 0o600)
    os.set_inheritable(fd, True)
    fd2 = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd2, True)
    try:
        status, out, err = sh("ls /proc/self/fd; ls -l /proc/self/fd/")
    finally:
        os.close(fd)
        os.close(fd2)
    assert status == 0, err
    listing, _, detail = out.partition("total")
    fds = sorted(int(x) for x in listing.split())
    # 0, 1, 2 and the directory `ls` itself opened
    assert fds == [0, 1, 2, 3], out
    assert leak_path not in detail


def test_no_fd_leak_into_created_init(create, tmp_path):
    """Before start too: the waiting init holds only stdio and the fifo."""
    fd = os.open(str(tmp_path / "leak"), os.O_RDWR | os.O_CREAT, 0o600)
    os.set_inheritable(fd, True)
    try:
        c = create(["true"]).c
    finally:
        os.close(fd)
    pid = c.state().pid
    # (the waiting init may still hold host fds: all close-on-exec, and it
    # is not dumpable, see below)
    for n in os.listdir(f"/proc/{pid}/fd"):
        if int(n) > 2:
            flags = int(open(f"/proc/{pid}/fdinfo/{n}").read().split("flags:")[1].split()[0], 8)
            assert flags & 0o2000000, f"fd {n} of the init ({os.readlink(f'/proc/{pid}/fd/{n}')}) is not close-on-exec"


# ---------------------------------------------------------------- /proc and the host interpreter


def test_proc_1_exe_is_the_program(sh):
    status, out, err = sh("readlink /proc/1/exe; readlink /proc/self/exe")
    assert (status, out.split()) == (0, ["/bin/busybox", "/bin/busybox"]), err


def test_created_init_is_not_dumpable(create, sh):
    """While CREATED the init is still the runtime's Python, inside the
    container's namespaces: another container in its pid namespace (same
    uid and capabilities) must not reach its /proc/<pid>/exe (the host
    interpreter).  Once started (execve) it is the container's program and
    dumpable again."""
    first = create(["sleep", "60"]).c
    pid = first.state().pid
    # from the host (root, CAP_SYS_PTRACE) it is the runtime's interpreter
    assert "python" in os.path.basename(os.readlink(f"/proc/{pid}/exe"))

    def join_pidns(spec):
        for n in spec["linux"]["namespaces"]:
            if n["type"] == "pid":
                n["path"] = f"/proc/{pid}/ns/pid"
    script = ("readlink /proc/1/exe; echo rc=$?; readlink /proc/1/cwd; echo rc=$?; "
              "readlink /proc/1/fd/0; echo rc=$?; cat /proc/1/environ; echo rc=$?")
    status, out, err = sh(script, join_pidns)
    assert out.split() == ["rc=1"] * 4, out
    assert err.count("Permission denied") >= 1, err

    first.start()
    deadline = time.monotonic() + 5
    while "busybox" not in os.readlink(f"/proc/{pid}/exe") and time.monotonic() < deadline:
        time.sleep(0.005)
    status, out, err = sh("readlink /proc/1/exe; echo rc=$?", join_pidns)
    assert out.split() == ["/bin/busybox", "rc=0"], err


# ---------------------------------------------------------------- masked / read-only stay so


def test_masks_cannot_be_removed(sh):
    status, out, err = sh("umount /proc/keys; echo rc=$?; wc -c < /proc/keys; "
                          "umount /sys/firmware; echo rc=$?; ls -A /sys/firmware | wc -l; "
                          "umount /proc/sys; echo rc=$?; "
                          "mount -o remount,rw /; echo rc=$?; touch /x; echo rc=$?")
    assert out.split() == ["rc=1", "0", "rc=1", "0", "rc=1", "rc=1", "rc=1"], err


def test_no_cap_sys_admin_no_new_mounts(sh):
    status, out, err = sh("mount -t tmpfs tmpfs /dev/shm; echo rc=$?; "
                          "mount -t proc proc /dev/shm; echo rc=$?")
    assert out.split() == ["rc=1", "rc=1"]


def test_sys_readonly_and_sysrq(sh):
    status, out, err = sh("echo 1 > /sys/kernel/profiling; echo rc=$?; "
                          "echo 1 > /proc/irq/default_smp_affinity; echo rc=$?")
    assert out.split() == ["rc=1", "rc=1"]
    assert err.count("Read-only file system") == 2, err


# ---------------------------------------------------------------- cgroups


def test_default_cgroup_path_in_every_hierarchy(create):
    c = create(["sleep", "60"]).c
    pid = c.state().pid
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    hierarchies = [line.split(":")[1] for line in lines]
    assert "memory" in ",".join(hierarchies) and "" in hierarchies  # v1 and unified
    for line in lines:
        assert line.split(":", 2)[2] == f"/barerun/{c.id}", line
    for d in leftover_cgroups(f"barerun/{c.id}"):
        with open(os.path.join(d, "cgroup.procs")) as f:
            assert str(pid) in f.read().split(), d
    assert len(leftover_cgroups(f"barerun/{c.id}")) == len(lines)
    # running too: the program stays there
    c.start()
    assert c.state().status == Status.RUNNING
    with open(f"/proc/{pid}/cgroup") as f:
        assert all(line.endswith(f"/barerun/{c.id}") for line in f.read().splitlines())
    c.delete(force=True)
    assert leftover_cgroups(f"barerun/{c.id}") == []


def test_container_cannot_write_its_cgroup(sh):
    status, out, err = sh("echo 1 > /sys/fs/cgroup/pids/pids.max; echo rc=$?; "
                          "mkdir /sys/fs/cgroup/memory/x; echo rc=$?")
    assert out.split() == ["rc=1", "rc=1"]


# ---------------------------------------------------------------- mount propagation


SHARED_HOST = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {repo!r})
    from lowlevel import mounts as M, namespaces as N
    # a private "host": every mount shared, as on a systemd machine
    N.unshare(N.FLAGS["mnt"])
    M.mount(None, "/", None, M.MS["MS_SHARED"] | M.MS["MS_REC"])
    def mounts():
        return sorted(m["mountpoint"] for m in M.mountinfo())
    before = mounts()
    import runtime
    c = runtime.create({cid!r}, {bundle!r}, root={root!r},
                       io=runtime.IO(stdout={out!r}))
    c.start()
    status = c.wait(timeout=10)
    c.delete()
    print(json.dumps({{"status": status, "before": before, "after": mounts()}}))
""")


@pytest.mark.parametrize("prop", [None, "rslave", "rprivate", "rshared", "shared"])
def test_container_never_unmounts_host_mounts(prop, bundle, root, new_id, tmp_path):
    """On a host whose mounts are shared, the container's detach of the
    old root (and its own mounts) must not propagate back: the host keeps
    every mount, whatever rootfsPropagation says."""
    def m(spec):
        if prop:
            spec["linux"]["rootfsPropagation"] = prop
    b = bundle(["sh", "-c", "grep -c . /proc/self/mountinfo"], m)
    out = str(tmp_path / "out")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = SHARED_HOST.format(repo=repo, cid=new_id(), bundle=b, root=str(root), out=out)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["status"] == 0
    assert res["after"] == res["before"]
    with open(out) as f:
        assert int(f.read()) > 5  # the container had its own mounts


def test_created_init_does_not_show_the_runtime_command_line(create):
    """Until it execs, the init is a fork of the runtime: its /proc/<pid>/
    cmdline must not show the caller's command line to the container."""
    c = create(["true"]).container
    with open(f"/proc/{c.pid}/cmdline", "rb") as f:
        cmdline = f.read().rstrip(b"\0")
    with open(f"/proc/{c.pid}/comm") as f:
        comm = f.read().strip()
    assert cmdline == b"barerun init"
    assert comm == "barerun init"


def test_kill_minus_one_stays_in_the_container(sh):
    """`kill -9 -1` by the container's root reaches only the processes of
    its own pid namespace: a host process (a child of this test) lives on."""
    victim = subprocess.Popen(["sleep", "60"])
    try:
        sh("kill -9 -1; echo survived")
        assert victim.poll() is None, "kill -1 in the container killed a host process"
    finally:
        victim.kill()
        victim.wait()
