"""lowlevel.namespaces against the real kernel: unshare, setns (by ns fd and
by pidfd, all at once and one by one), /proc/<pid>/ns identities, and
spawn() through clone3/clone with namespace flags and CLONE_INTO_CGROUP.
Everything that changes namespaces happens in forked children."""

import errno
import os
import time
import uuid

import pytest

from lowlevel import mounts, namespaces, pidfd, system
from .helpers import (capture, child, dead_pid, hostname, no_leaks,  # noqa: F401
                              private_mount_ns, reap, run_in_child, tmp)

NEW = namespaces.FLAGS
# spawn through clone3 and through the legacy clone (only where clone3 is)
USE_CLONE3 = [pytest.param(True, marks=pytest.mark.needs_syscall("clone3")), False]


def ids(nsmap):
    """{name: NsId} -> {name: inode} (JSON-friendly)."""
    return {k: v.inode for k, v in nsmap.items()}


# --- names and flags ------------------------------------------------------

def test_ns_name_accepts_kernel_and_oci_names():
    assert namespaces.ns_name("mount") == "mnt"
    assert namespaces.ns_name("network") == "net"
    for name in ("mnt", "uts", "ipc", "net", "pid", "user", "cgroup", "time"):
        assert namespaces.ns_name(name) == name


@pytest.mark.parametrize("call", [
    lambda: namespaces.ns_name("bogus"),
    lambda: namespaces.flags_for(["uts", "bogus"]),
    lambda: namespaces.open_ns(os.getpid(), "bogus"),
    lambda: namespaces.ns_id(os.getpid(), "bogus"),
    lambda: namespaces.setns_pidfd(-1, os.getpid(), ["bogus"]),
    lambda: namespaces.setns_each(os.getpid(), ["uts", "bogus"]),
])
def test_unknown_namespace_name_is_a_value_error(call):
    with pytest.raises(ValueError, match="bogus"):
        call()


def test_flags_for_and_names_for_round_trip():
    mask = namespaces.flags_for(["uts", "network", "mount"])
    assert mask == NEW["uts"] | NEW["net"] | NEW["mnt"]
    assert sorted(namespaces.names_for(mask)) == ["mnt", "net", "uts"]
    assert namespaces.describe(NEW["uts"] | 0x1) == "uts|0x1"
    assert namespaces.describe(0) == "0"


# --- /proc/<pid>/ns --------------------------------------------------------

def test_ns_id_reads_the_kernel_identity():
    me = namespaces.ns_id("self", "uts")
    st = os.stat("/proc/self/ns/uts")
    assert me == namespaces.NsId("uts", st.st_ino)
    assert namespaces.ns_id(os.getpid(), "mount").type == "mnt"
    allns = namespaces.namespaces_of(os.getpid())
    assert set(allns) == set(NEW)  # kernel 6.18 has every type
    assert allns["uts"] == me


def test_open_ns_gives_a_cloexec_fd_of_that_namespace():
    fd = namespaces.open_ns(os.getpid(), "network")
    try:
        assert not os.get_inheritable(fd)
        assert os.fstat(fd).st_ino == namespaces.ns_id("self", "net").inode
    finally:
        os.close(fd)


def test_dead_pid_is_esrch_naming_the_pid():
    pid = dead_pid()
    for call in (lambda: namespaces.ns_id(pid, "uts"),
                 lambda: namespaces.open_ns(pid, "uts"),
                 lambda: namespaces.namespaces_of(pid)):
        with pytest.raises(ProcessLookupError) as ei:
            call()
        assert ei.value.errno == errno.ESRCH
        assert str(pid) in str(ei.value)


# --- unshare ------------------------------------------------------------

def test_unshare_uts_hostname_is_private_to_the_child():
    parent_name = hostname()
    parent_ns = ids(namespaces.namespaces_of(os.getpid()))

    def body():
        before = ids(namespaces.namespaces_of("self"))
        namespaces.unshare(NEW["uts"])
        system.sethostname("barerun-uts-child")
        return {"before": before, "after": ids(namespaces.namespaces_of("self")),
                "hostname": hostname()}

    with child(body) as (pid, res):
        assert res["hostname"] == "barerun-uts-child"
        assert hostname() == parent_name
        assert res["before"] == parent_ns
        assert res["after"]["uts"] != parent_ns["uts"]
        # only the UTS namespace changed
        assert {k: v for k, v in res["after"].items() if k != "uts"} == \
            {k: v for k, v in parent_ns.items() if k != "uts"}
        # and the parent sees the child's new namespace from outside
        assert namespaces.ns_id(pid, "uts").inode == res["after"]["uts"]
        assert namespaces.ns_id(pid, "uts") != namespaces.ns_id(os.getpid(), "uts")
    assert hostname() == parent_name


def test_unshare_several_at_once():
    parent_ns = ids(namespaces.namespaces_of(os.getpid()))

    def body():
        namespaces.unshare(namespaces.flags_for(["uts", "ipc", "net", "cgroup"]))
        return ids(namespaces.namespaces_of("self"))

    after = run_in_child(body)
    for name in ("uts", "ipc", "net", "cgroup"):
        assert after[name] != parent_ns[name], name
    for name in ("mnt", "pid", "user", "time"):
        assert after[name] == parent_ns[name], name


def test_unshare_invalid_flags_is_einval_naming_them():
    def body():
        return capture(namespaces.unshare, NEW["uts"] | 0x1)  # 0x1: a CSIGNAL bit
    res = run_in_child(body)
    assert res["error"]["errno"] == errno.EINVAL
    assert "unshare uts|0x1" in res["error"]["message"]


# --- setns -----------------------------------------------------------------

def _holder(hostname_, flags):
    """Child body: new namespaces, a hostname, then wait."""
    def body():
        namespaces.unshare(flags)
        system.sethostname(hostname_)
        return ids(namespaces.namespaces_of("self"))
    return body


def test_setns_by_proc_ns_fd_enters_the_childs_uts_namespace():
    with child(_holder("barerun-holder", NEW["uts"])) as (hpid, hns):
        def joiner():
            fd = namespaces.open_ns(hpid, "uts")
            try:
                namespaces.setns(fd, NEW["uts"])
            finally:
                os.close(fd)
            return {"hostname": hostname(), "uts": namespaces.ns_id("self", "uts").inode}
        res = run_in_child(joiner)
        assert res == {"hostname": "barerun-holder", "uts": hns["uts"]}

        def joiner_any_type():  # nstype 0: whatever the fd is
            fd = namespaces.open_ns(hpid, "uts")
            try:
                namespaces.setns(fd)
            finally:
                os.close(fd)
            return hostname()
        assert run_in_child(joiner_any_type) == "barerun-holder"
    assert hostname() != "barerun-holder"


def test_setns_wrong_type_is_einval_naming_the_fd():
    fd = namespaces.open_ns(os.getpid(), "uts")
    try:
        def body():
            return capture(namespaces.setns, fd, NEW["net"])
        res = run_in_child(body)
    finally:
        os.close(fd)
    assert res["error"]["errno"] == errno.EINVAL
    assert f"setns fd {fd} net" in res["error"]["message"]


def test_setns_bad_fd_is_ebadf_naming_the_fd():
    with pytest.raises(OSError) as ei:
        namespaces.setns(9999, NEW["uts"])
    assert ei.value.errno == errno.EBADF
    assert "fd 9999" in str(ei.value)


def _join_report():
    return {"hostname": hostname(),
            "ns": ids(namespaces.namespaces_of("self"))}


@pytest.mark.needs_syscall("pidfd_open")  # setns(2) of a real pidfd
def test_setns_pidfd_enters_uts_ipc_net_at_once():
    flags = namespaces.flags_for(["uts", "ipc", "net"])
    parent_ns = ids(namespaces.namespaces_of(os.getpid()))
    with child(_holder("barerun-multi", flags)) as (hpid, hns):
        def joiner():
            pfd = pidfd.pidfd_open(hpid)
            try:
                namespaces.setns_pidfd(pfd, hpid, ["uts", "ipc", "network"])
            finally:
                os.close(pfd)
            return _join_report()
        res = run_in_child(joiner)
    assert res["hostname"] == "barerun-multi"
    for name in ("uts", "ipc", "net"):
        assert res["ns"][name] == hns[name] != parent_ns[name], name
    for name in ("mnt", "pid", "cgroup"):
        assert res["ns"][name] == parent_ns[name], name


def test_setns_each_fallback_enters_every_namespace():
    flags = namespaces.flags_for(["uts", "ipc", "net"])
    with child(_holder("barerun-each", flags)) as (hpid, hns):
        res = run_in_child(lambda: (namespaces.setns_each(hpid, ["net", "uts", "ipc"]),
                                    _join_report())[1])
    assert res["hostname"] == "barerun-each"
    for name in ("uts", "ipc", "net"):
        assert res["ns"][name] == hns[name], name


def test_setns_pidfd_falls_back_on_einval():
    # setns() on an fd that is neither a pidfd nor a namespace is EINVAL,
    # just what a kernel without pidfd setns answers: the per-namespace
    # fallback must then do the work
    flags = namespaces.flags_for(["uts", "ipc"])
    with child(_holder("barerun-fallback", flags)) as (hpid, hns):
        def joiner():
            with open("/dev/null") as f:
                namespaces.setns_pidfd(f.fileno(), hpid, ["uts", "ipc"])
            return _join_report()
        res = run_in_child(joiner)
    assert res["hostname"] == "barerun-fallback"
    assert res["ns"]["uts"] == hns["uts"] and res["ns"]["ipc"] == hns["ipc"]


def _proc_hiding_holder():
    """Child body: a mount namespace with /proc hidden under a tmpfs, and
    a UTS namespace named barerun-mntns."""
    namespaces.unshare(NEW["mnt"] | NEW["uts"])
    mounts.make_private("/")
    mounts.mount("tmpfs", "/proc", "tmpfs")
    system.sethostname("barerun-mntns")
    return None


def test_setns_each_opens_every_ns_file_before_entering_a_mount_ns():
    # The holder hides /proc under a tmpfs in its own mount namespace: once
    # the joiner is in that namespace, /proc/<pid>/ns/... cannot be opened
    # any more, so every file must be opened first.
    with child(_proc_hiding_holder) as (hpid, _):
        hns = ids(namespaces.namespaces_of(hpid))

        def joiner():
            namespaces.setns_each(hpid, ["mnt", "uts"])
            return {"hostname": hostname(), "proc": os.listdir("/proc")}
        res = run_in_child(joiner)
        assert res == {"hostname": "barerun-mntns", "proc": []}
        assert hns["mnt"] != namespaces.ns_id("self", "mnt").inode


@pytest.mark.needs_syscall("pidfd_open")  # setns(2) of a real pidfd
def test_setns_pidfd_enters_a_mount_ns_that_hides_proc():
    # the same through a pidfd: one setns() for both, no /proc needed
    with child(_proc_hiding_holder) as (hpid, _):
        hns = ids(namespaces.namespaces_of(hpid))

        def joiner_pidfd():
            pfd = pidfd.pidfd_open(hpid)
            try:
                namespaces.setns_pidfd(pfd, hpid, ["mnt", "uts"])
            finally:
                os.close(pfd)
            return {"hostname": hostname(), "proc": os.listdir("/proc")}
        assert run_in_child(joiner_pidfd) == {"hostname": "barerun-mntns", "proc": []}
        assert hns["mnt"] != namespaces.ns_id("self", "mnt").inode


def test_setns_each_dead_pid_is_esrch_and_changes_nothing():
    pid = dead_pid()

    def body():
        before = namespaces.ns_id("self", "uts").inode
        res = capture(namespaces.setns_each, pid, ["uts", "net"])
        res["same"] = namespaces.ns_id("self", "uts").inode == before
        return res
    res = run_in_child(body)
    assert res["error"]["errno"] == errno.ESRCH
    assert str(pid) in res["error"]["message"]
    assert res["same"]


@pytest.mark.needs_syscall("pidfd_open")  # a real pidfd outlives its process
def test_setns_pidfd_of_exited_process_is_esrch():
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0)
    pfd = pidfd.pidfd_open(pid)
    try:
        os.waitpid(pid, 0)
        res = run_in_child(lambda: capture(namespaces.setns_pidfd, pfd, pid, ["uts"]))
    finally:
        os.close(pfd)
    assert res["error"]["errno"] == errno.ESRCH
    assert f"fd {pfd}" in res["error"]["message"]


# --- spawn -----------------------------------------------------------------

def _spawn_and_read(tmpdir, script, **kw):
    """spawn /bin/sh -c script; its output goes to a file named by $OUT."""
    out = os.path.join(tmpdir, "out")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OUT": out}
    pid, pfd = namespaces.spawn(["/bin/sh", "-c", script], env=env, **kw)
    try:
        assert not os.get_inheritable(pfd)
        code = pidfd.waitid(pfd)
    finally:
        os.close(pfd)
        reap(pid, 0)
    with open(out) as f:
        return pid, code, f.read().split("\n")


@pytest.mark.parametrize("use_clone3", USE_CLONE3)
def test_spawn_new_uts_and_pid_namespace(tmp, use_clone3):
    me = hostname()
    flags = NEW["uts"] | NEW["pid"]
    pid, code, lines = _spawn_and_read(
        tmp, 'echo $$ > "$OUT"; hostname barerun-spawned; hostname >> "$OUT"; '
             'readlink /proc/self/ns/uts >> "$OUT"', flags=flags, use_clone3=use_clone3)
    assert code == 0
    assert lines[0] == "1"  # pid 1 of its own pid namespace
    assert lines[1] == "barerun-spawned"
    assert lines[2] != os.readlink("/proc/self/ns/uts")
    assert pid > 1
    assert hostname() == me


@pytest.mark.parametrize("use_clone3", USE_CLONE3)
def test_spawn_without_flags_passes_env_and_exit_code(tmp, use_clone3):
    _, code, lines = _spawn_and_read(
        tmp, 'echo "$$ $OUT" > "$OUT"; exit 7', use_clone3=use_clone3)
    assert code == 7
    mypid, out = lines[0].split(" ")
    assert int(mypid) > 1 and out == os.path.join(tmp, "out")


def test_spawn_default_env_is_ours(tmp, monkeypatch):
    monkeypatch.setenv("BARERUN_TEST_VAR", "hello")
    out = os.path.join(tmp, "out")
    pid, pfd = namespaces.spawn(["/bin/sh", "-c", f'echo "$BARERUN_TEST_VAR" > {out}'])
    try:
        assert pidfd.waitid(pfd) == 0
    finally:
        os.close(pfd)
    with open(out) as f:
        assert f.read() == "hello\n"


@pytest.fixture
def cgroup2_dir():
    base = "/sys/fs/cgroup/unified"
    if not os.path.exists(os.path.join(base, "cgroup.procs")):
        pytest.skip("no cgroup v2 hierarchy at /sys/fs/cgroup/unified")
    path = os.path.join(base, f"barerun-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        # the test kills and reaps its child; the cgroup is empty then
        with open(os.path.join(path, "cgroup.procs")) as f:
            for line in f.read().split():
                try:
                    os.kill(int(line), 9)
                except ProcessLookupError:
                    pass
        for _ in range(200):
            try:
                os.rmdir(path)
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                time.sleep(0.01)
        assert not os.path.exists(path)


@pytest.mark.needs_syscall("clone3")  # CLONE_INTO_CGROUP
def test_spawn_into_cgroup(cgroup2_dir):
    cfd = os.open(cgroup2_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pid, pfd = namespaces.spawn(["/bin/sleep", "30"], cgroup_fd=cfd,
                                    flags=NEW["uts"], use_clone3=True)
    finally:
        os.close(cfd)
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
        assert f"0::/{os.path.basename(cgroup2_dir)}" in lines
        with open(os.path.join(cgroup2_dir, "cgroup.procs")) as f:
            assert f.read().split() == [str(pid)]
        pidfd.send_signal(pfd, 9, pid)
        assert pidfd.waitid(pfd) == 128 + 9
    finally:
        os.close(pfd)
        reap(pid, 0)


def test_spawn_cgroup_needs_clone3():
    with pytest.raises(ValueError, match="clone3"):
        namespaces.spawn(["/bin/true"], cgroup_fd=0, use_clone3=False)


@pytest.mark.needs_syscall("clone3")  # the kernel's errno for CLONE_INTO_CGROUP
def test_spawn_bad_cgroup_fd_is_ebadf_naming_it():
    with pytest.raises(OSError) as ei:
        namespaces.spawn(["/bin/true"], cgroup_fd=9999)
    assert ei.value.errno == errno.EBADF
    assert "cgroup fd 9999" in str(ei.value) and "/bin/true" in str(ei.value)


@pytest.mark.needs_syscall("clone3")  # the kernel's errno for CLONE_INTO_CGROUP
def test_spawn_not_a_cgroup_fd_fails(tmp):
    # a directory that is not a cgroup: the kernel refuses CLONE_INTO_CGROUP
    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError) as ei:
            namespaces.spawn(["/bin/true"], cgroup_fd=fd)
    finally:
        os.close(fd)
    assert ei.value.errno in (errno.EBADF, errno.EINVAL)
    assert f"cgroup fd {fd}" in str(ei.value)


def test_spawn_missing_program_is_enoent_naming_it(tmp):
    with pytest.raises(FileNotFoundError, match="spawn /nonexistent/barerun"):
        namespaces.spawn(["/nonexistent/barerun"])
    plain = os.path.join(tmp, "not-executable")
    with open(plain, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(plain, 0o644)
    with pytest.raises(PermissionError, match=f"spawn {plain}"):
        namespaces.spawn([plain])
    with pytest.raises(PermissionError, match=f"spawn {tmp}"):
        namespaces.spawn([tmp])  # a directory
    with pytest.raises(ValueError):
        namespaces.spawn([])


def test_spawn_invalid_flags_is_einval_naming_them():
    # the kernel refuses a new user namespace with a shared fs_struct
    with pytest.raises(OSError) as ei:
        namespaces.spawn(["/bin/true"], flags=NEW["user"] | 0x200)  # CLONE_FS
    assert ei.value.errno == errno.EINVAL
    assert "user|0x200" in str(ei.value)
