"""lowlevel.mounts against the real kernel: mount, bind + remount ro,
mount_setattr, umount, pivot_root, openat2(RESOLVE_IN_ROOT) resolution and
mkdir_in_root, and the mountinfo parser.  Every mount is made in a forked
child with a private mount namespace, on /tmp/barerun-test-* directories."""

import errno
import os
import shutil
import stat
import subprocess

import pytest

from lowlevel import mounts
from .helpers import (capture, child, dead_pid, no_leaks,  # noqa: F401
                      private_mount_ns, run_in_child, tmp)

MS = mounts.MS
BUSYBOX = "/bin/busybox"


def mounted_at(path, pid="self"):
    return [m for m in mounts.mountinfo(pid) if m["mountpoint"] == path]


def can_write(path):
    try:
        with open(os.path.join(path, "probe"), "w") as f:
            f.write("x")
        os.unlink(os.path.join(path, "probe"))
        return True
    except OSError as exc:
        return errno.errorcode[exc.errno]


# --- mount / umount --------------------------------------------------------

def test_tmpfs_mount_is_visible_in_the_child_only(tmp):
    target = os.path.join(tmp, "mnt")
    os.mkdir(target)

    def body():
        private_mount_ns()
        mounts.mount("barerun-tmpfs", target, "tmpfs", MS["MS_NOSUID"], "size=1m,mode=0700")
        with open(os.path.join(target, "inside"), "w") as f:
            f.write("hi")
        m = mounted_at(target)[-1]
        return {"listing": os.listdir(target), "mount": m,
                "mode": stat.S_IMODE(os.stat(target).st_mode)}

    with child(body) as (pid, res):
        assert res["listing"] == ["inside"]
        assert res["mount"]["fstype"] == "tmpfs"
        assert res["mount"]["source"] == "barerun-tmpfs"
        assert "nosuid" in res["mount"]["options"].split(",")
        assert "size=1024k" in res["mount"]["super_options"]
        assert res["mode"] == 0o700
        # the parent's view: nothing mounted, the directory still empty
        assert os.listdir(target) == []
        assert mounted_at(target) == []
        # but the child's own mountinfo, read from outside, has it
        assert [m["fstype"] for m in mounted_at(target, pid)] == ["tmpfs"]


def test_make_private_stops_propagation():
    def body():
        private_mount_ns()
        return [m["optional"] for m in mounts.mountinfo()]
    optional = run_in_child(body)
    assert all(not any(o.startswith(("shared:", "master:")) for o in opt) for opt in optional)


def test_bind_mount_then_remount_read_only(tmp):
    src, dst = os.path.join(tmp, "src"), os.path.join(tmp, "dst")
    os.mkdir(src)
    os.mkdir(dst)
    with open(os.path.join(src, "file"), "w") as f:
        f.write("data")

    def body():
        private_mount_ns()
        mounts.mount(src, dst, None, MS["MS_BIND"])
        out = {"seen": open(os.path.join(dst, "file")).read(), "rw": can_write(dst)}
        mounts.mount(None, dst, None, MS["MS_REMOUNT"] | MS["MS_BIND"] | MS["MS_RDONLY"])
        out["ro"] = can_write(dst)
        out["src_still_rw"] = can_write(src)
        out["options"] = mounted_at(dst)[-1]["options"].split(",")
        return out

    res = run_in_child(body)
    assert res["seen"] == "data"
    assert res["rw"] is True
    assert res["ro"] == "EROFS"
    assert res["src_still_rw"] is True
    assert "ro" in res["options"]


def test_mount_errors_name_source_and_target(tmp):
    def body():
        private_mount_ns()
        return {
            "nosrc": capture(mounts.mount, "/nonexistent/barerun-src", tmp, None, MS["MS_BIND"]),
            "nodst": capture(mounts.mount, "tmpfs", "/nonexistent/barerun-dst", "tmpfs"),
            "nofs": capture(mounts.mount, "x", tmp, "barerunfs"),
        }
    res = run_in_child(body)
    assert res["nosrc"]["error"]["errno"] == errno.ENOENT
    assert "/nonexistent/barerun-src" in res["nosrc"]["error"]["message"]
    assert tmp in res["nosrc"]["error"]["message"]
    assert "MS_BIND" in res["nosrc"]["error"]["message"]
    assert res["nodst"]["error"]["errno"] == errno.ENOENT
    assert "/nonexistent/barerun-dst" in res["nodst"]["error"]["message"]
    assert res["nofs"]["error"]["errno"] == errno.ENODEV
    assert tmp in res["nofs"]["error"]["message"]


def test_umount(tmp):
    def body():
        private_mount_ns()
        mounts.mount("tmpfs", tmp, "tmpfs")
        open(os.path.join(tmp, "f"), "w").close()
        before = (os.listdir(tmp), len(mounted_at(tmp)))
        mounts.umount(tmp)
        return {"before": before, "after": (os.listdir(tmp), len(mounted_at(tmp))),
                "again": capture(mounts.umount, tmp),
                "missing": capture(mounts.umount, "/nonexistent/barerun")}
    res = run_in_child(body)
    assert res["before"] == [["f"], 1]
    assert res["after"] == [[], 0]
    assert res["again"]["error"]["errno"] == errno.EINVAL  # not a mount point
    assert tmp in res["again"]["error"]["message"]
    assert res["missing"]["error"]["errno"] == errno.ENOENT
    assert "/nonexistent/barerun" in res["missing"]["error"]["message"]


def test_umount_detach_of_a_busy_mount(tmp):
    def body():
        private_mount_ns()
        mounts.mount("tmpfs", tmp, "tmpfs")
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)  # keeps it busy
        try:
            busy = capture(mounts.umount, tmp)
            mounts.umount(tmp, mounts.MNT_DETACH)
            return {"busy": busy, "left": len(mounted_at(tmp))}
        finally:
            os.close(fd)
    res = run_in_child(body)
    assert res["busy"]["error"]["errno"] == errno.EBUSY
    assert res["left"] == 0


@pytest.fixture(params=[pytest.param("mount_setattr", marks=[
    pytest.mark.skipif(not mounts.HAS_MOUNT_SETATTR, reason="no mount_setattr(2)"),
    pytest.mark.needs_syscall("mount_setattr")]), "remount"])
def setattr_path(request):
    """A mount_setattr test twice: through the syscall, and through the
    MS_BIND|MS_REMOUNT of each mount used where it is ENOSYS (where it is,
    the "mount_setattr" run would be the remount again: skipped)."""
    before = mounts._setattr_works
    mounts._setattr_works = None if request.param == "mount_setattr" else False
    yield request.param
    mounts._setattr_works = before


@pytest.mark.usefixtures("setattr_path")
def test_mount_setattr_recursive_read_only(tmp):
    top, sub = os.path.join(tmp, "top"), os.path.join(tmp, "top", "sub")
    os.mkdir(top)

    def body():
        private_mount_ns()
        mounts.mount("tmpfs", top, "tmpfs")
        os.mkdir(sub)
        mounts.mount("tmpfs", sub, "tmpfs")
        out = {"before": [can_write(top), can_write(sub)]}
        mounts.mount_setattr(top, set_flags=["ro"], recursive=True)
        out["recursive"] = [can_write(top), can_write(sub)]
        mounts.mount_setattr(top, clear_flags=["ro"], recursive=True)
        out["cleared"] = [can_write(top), can_write(sub)]
        mounts.mount_setattr(top, set_flags="ro")  # one name is fine too
        out["top_only"] = [can_write(top), can_write(sub)]
        mounts.mount_setattr(sub, set_flags=["nosuid", "nodev", "noexec"])
        out["sub_options"] = mounted_at(sub)[-1]["options"].split(",")
        return out

    res = run_in_child(body)
    assert res["before"] == [True, True]
    assert res["recursive"] == ["EROFS", "EROFS"]
    assert res["cleared"] == [True, True]
    assert res["top_only"] == ["EROFS", True]
    assert {"nosuid", "nodev", "noexec"} <= set(res["sub_options"])


def test_mount_setattr_unknown_flag_is_a_value_error(tmp):
    with pytest.raises(ValueError, match="bogus"):
        mounts.mount_setattr(tmp, set_flags=["bogus"])


@pytest.mark.needs_syscall("mount_setattr")  # the kernel's own errnos
def test_mount_setattr_errors():
    with pytest.raises(FileNotFoundError) as ei:
        mounts.mount_setattr("/nonexistent/barerun", set_flags=["ro"])
    assert "mount_setattr /nonexistent/barerun (set ro" in str(ei.value)
    with pytest.raises(OSError) as ei:
        mounts.mount_setattr("x", set_flags=["ro"], dirfd=9999)
    assert ei.value.errno == errno.EBADF


# --- pivot_root ---------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static not installed")
def test_pivot_root_into_a_tmpfs_root(tmp):
    newroot = os.path.join(tmp, "root")
    os.mkdir(newroot)

    def body():
        private_mount_ns()
        mounts.mount("barerun-root", newroot, "tmpfs")
        os.mkdir(os.path.join(newroot, "bin"))
        shutil.copy2(BUSYBOX, os.path.join(newroot, "bin", "busybox"))
        os.mkdir(os.path.join(newroot, "proc"))
        with open(os.path.join(newroot, "marker"), "w") as f:
            f.write("new root")
        os.chdir(newroot)
        mounts.pivot_root(".", ".")
        mounts.umount(".", mounts.MNT_DETACH)
        os.chdir("/")
        mounts.mount("proc", "/proc", "proc", MS["MS_NOSUID"] | MS["MS_NODEV"] | MS["MS_NOEXEC"])
        ls = subprocess.run(["/bin/busybox", "ls", "/"], capture_output=True,
                            text=True, check=True).stdout.split()
        return {"listdir": sorted(os.listdir("/")), "busybox_ls": sorted(ls),
                "marker": open("/marker").read(),
                "mounts": [(m["mountpoint"], m["fstype"], m["source"])
                           for m in mounts.mountinfo()]}

    res = run_in_child(body)
    assert res["listdir"] == ["bin", "marker", "proc"]
    assert res["busybox_ls"] == ["bin", "marker", "proc"]
    assert res["marker"] == "new root"
    # the old root is gone: only the new root and its /proc remain
    assert res["mounts"] == [["/", "tmpfs", "barerun-root"], ["/proc", "proc", "proc"]]
    assert os.path.exists("/etc/passwd")  # the parent's root is untouched


def test_pivot_root_errors_name_the_paths(tmp):
    sub = os.path.join(tmp, "sub")

    def body():
        private_mount_ns()
        out = {"missing": capture(mounts.pivot_root, "/nonexistent/barerun", tmp),
               # tmp is on the root's file system: a loop
               "same_fs": capture(mounts.pivot_root, tmp, tmp)}
        mounts.mount("tmpfs", tmp, "tmpfs")
        os.makedirs(os.path.join(sub, "old"))
        # sub is a plain directory on that tmpfs, not a mount point
        out["not_a_mount"] = capture(mounts.pivot_root, sub, os.path.join(sub, "old"))
        return out
    res = run_in_child(body)
    assert res["missing"]["error"]["errno"] == errno.ENOENT
    assert "pivot_root /nonexistent/barerun" in res["missing"]["error"]["message"]
    assert res["same_fs"]["error"]["errno"] == errno.EBUSY
    assert res["not_a_mount"]["error"]["errno"] == errno.EINVAL
    assert f"pivot_root {sub} (old root to {sub}/old)" in res["not_a_mount"]["error"]["message"]


# --- resolving inside a root ---------------------------------------------

@pytest.fixture
def rootfs(tmp):
    """A small root with escaping symlinks, and a host "outside" dir."""
    root = os.path.join(tmp, "root")
    outside = os.path.join(tmp, "outside")
    os.makedirs(os.path.join(root, "etc"))
    os.makedirs(os.path.join(root, "data"))
    os.mkdir(outside)
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root-inside\n")
    with open(os.path.join(outside, "secret"), "w") as f:
        f.write("host secret\n")
    os.symlink("/", os.path.join(root, "abs"))
    os.symlink("../../../../../..", os.path.join(root, "etc", "rel"))
    os.symlink("/etc", os.path.join(root, "etclink"))
    os.symlink(outside, os.path.join(root, "hostlink"))            # absolute host path
    os.symlink("../../outside", os.path.join(root, "data", "up"))  # relative, escapes
    os.symlink("/proc/self/root", os.path.join(root, "procroot"))
    return root, outside


@pytest.fixture(params=[pytest.param("openat2", marks=pytest.mark.needs_syscall("openat2")),
                        "walk"])
def resolver(request):
    """Each in-root test twice: through openat2(RESOLVE_IN_ROOT), and
    through the component-by-component walk used where openat2 is ENOSYS
    (where it is, the "openat2" run would be the walk again: skipped)."""
    before = mounts._openat2_works
    mounts._openat2_works = None if request.param == "openat2" else False
    yield request.param
    mounts._openat2_works = before


@pytest.mark.usefixtures("resolver")
def test_resolve_in_root_keeps_escaping_symlinks_inside(rootfs):
    root, outside = rootfs
    r = mounts.resolve_in_root
    assert r(root, "/") == root
    assert r(root, "abs") == root
    assert r(root, "/abs/abs/etc/passwd") == os.path.join(root, "etc", "passwd")
    assert r(root, "etc/rel") == root
    assert r(root, "/etc/rel/etc/passwd") == os.path.join(root, "etc", "passwd")
    assert r(root, "../../../etc/passwd") == os.path.join(root, "etc", "passwd")
    assert r(root, "etclink/passwd") == os.path.join(root, "etc", "passwd")
    # a symlink to the host's "outside" directory resolves inside the root
    # (where that path does not exist) or to the root itself
    with pytest.raises(FileNotFoundError):
        r(root, "hostlink/secret")
    with pytest.raises(FileNotFoundError):
        r(root, "data/up/secret")


@pytest.mark.usefixtures("resolver")
def test_open_in_root_reads_the_roots_file_not_the_hosts(rootfs):
    root, _ = rootfs
    rfd = mounts.open_root(root)
    try:
        for path in ("/etc/passwd", "abs/etc/passwd", "etc/rel/etc/passwd",
                     "../../etc/passwd", "etclink/passwd"):
            fd = mounts.open_in_root(rfd, path, os.O_RDONLY)
            try:
                assert not os.get_inheritable(fd)
                assert os.read(fd, 100) == b"root-inside\n", path
            finally:
                os.close(fd)
    finally:
        os.close(rfd)


@pytest.mark.usefixtures("resolver")
def test_open_in_root_refuses_magic_links(rootfs):
    root, _ = rootfs
    rfd = mounts.open_root("/")
    try:
        with pytest.raises(OSError) as ei:
            mounts.open_in_root(rfd, "/proc/self/root/etc/passwd", os.O_RDONLY)
        assert ei.value.errno in (errno.ELOOP, errno.EXDEV)
        assert "proc/self/root/etc/passwd" in str(ei.value)
    finally:
        os.close(rfd)
    rfd = mounts.open_root(root)
    try:  # inside the root, "/proc/self/root" is just a missing path
        with pytest.raises(FileNotFoundError):
            mounts.open_in_root(rfd, "procroot/etc/passwd")
    finally:
        os.close(rfd)


@pytest.mark.usefixtures("resolver")
def test_open_in_root_errors_name_path_and_root(rootfs):
    root, _ = rootfs
    rfd = mounts.open_root(root)
    try:
        with pytest.raises(FileNotFoundError) as ei:
            mounts.open_in_root(rfd, "/no/such/file")
        msg = str(ei.value)
        assert "no/such/file" in msg and root in msg and "RESOLVE_IN_ROOT" in msg
    finally:
        os.close(rfd)
    with pytest.raises(OSError) as ei:
        mounts.open_in_root(9999, "etc")
    assert ei.value.errno == errno.EBADF and "fd 9999" in str(ei.value)
    with pytest.raises(FileNotFoundError, match="open root /nonexistent/barerun"):
        mounts.open_root("/nonexistent/barerun")
    with pytest.raises(NotADirectoryError, match="open root"):
        mounts.open_root(os.path.join(root, "etc", "passwd"))


@pytest.mark.needs_syscall("openat2")
def test_openat2_plain_and_create(tmp):
    dfd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = mounts.openat2(dfd, "new", os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"x")
        os.close(fd)
        assert stat.S_IMODE(os.stat(os.path.join(tmp, "new")).st_mode) == 0o600 & ~_umask()
        fd = mounts.openat2(mounts.AT_FDCWD, os.path.join(tmp, "new"), os.O_RDONLY)
        assert os.read(fd, 10) == b"x"
        os.close(fd)
        os.symlink("new", os.path.join(tmp, "link"))
        with pytest.raises(OSError) as ei:
            mounts.openat2(dfd, "link", os.O_RDONLY, resolve=mounts.lib.RESOLVE_NO_SYMLINKS)
        assert ei.value.errno == errno.ELOOP
        assert "RESOLVE_NO_SYMLINKS" in str(ei.value)
    finally:
        os.close(dfd)


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_fd_path_and_is_dir_fd(tmp):
    fd = os.open(tmp, os.O_PATH)
    try:
        assert os.readlink(mounts.fd_path(fd)) == tmp
        assert mounts.is_dir_fd(fd)
    finally:
        os.close(fd)


def test_flag_names():
    assert mounts.flag_names(MS["MS_BIND"] | MS["MS_REC"]) == "MS_BIND|MS_REC"
    assert mounts.flag_names(0) == "0"


# --- mkdir_in_root -------------------------------------------------------

def _inside(root, fd):
    try:
        return os.readlink(mounts.fd_path(fd))
    finally:
        os.close(fd)


@pytest.mark.usefixtures("resolver")
def test_mkdir_in_root_creates_parents(rootfs):
    root, _ = rootfs
    rfd = mounts.open_root(root)
    try:
        assert _inside(root, mounts.mkdir_in_root(rfd, "/a/b/c")) == os.path.join(root, "a/b/c")
        assert os.path.isdir(os.path.join(root, "a/b/c"))
        # existing: just opened
        assert _inside(root, mounts.mkdir_in_root(rfd, "a/b")) == os.path.join(root, "a/b")
        # a file as the last component
        got = _inside(root, mounts.mkdir_in_root(rfd, "/x/y/file", file=True))
        assert got == os.path.join(root, "x/y/file")
        assert os.path.isfile(got) and os.path.getsize(got) == 0
        # ".." never climbs out
        got = _inside(root, mounts.mkdir_in_root(rfd, "../../../z"))
        assert got == os.path.join(root, "z")
    finally:
        os.close(rfd)


@pytest.mark.usefixtures("resolver")
def test_mkdir_in_root_never_creates_outside_through_symlinks(rootfs):
    root, outside = rootfs
    tmpdir = os.path.dirname(root)
    before = sorted(os.listdir(outside)), sorted(os.listdir(tmpdir))
    rfd = mounts.open_root(root)
    try:
        # absolute symlink to "/": the new directories land in the root
        got = _inside(root, mounts.mkdir_in_root(rfd, "abs/made/by/abs"))
        assert got == os.path.join(root, "made/by/abs")
        # relative symlink climbing out: stays at the root too
        got = _inside(root, mounts.mkdir_in_root(rfd, "etc/rel/made2"))
        assert got == os.path.join(root, "made2")
        # a symlink to the host's "outside": inside the root that is a
        # dangling link; it is refused, never followed on the host
        for path in ("hostlink/sub", "data/up/sub"):
            with pytest.raises(FileNotFoundError) as ei:
                mounts.mkdir_in_root(rfd, path)
            assert "dangling symlink" in str(ei.value), path
        # a host path spelled through "/" lands inside the root
        spelled = "abs" + outside + "/sub"
        got = _inside(root, mounts.mkdir_in_root(rfd, spelled))
        assert got == root + outside + "/sub"
    finally:
        os.close(rfd)
    assert (sorted(os.listdir(outside)), sorted(os.listdir(tmpdir))) == before


@pytest.mark.usefixtures("resolver")
def test_mkdir_in_root_through_a_file_is_enotdir(rootfs):
    root, _ = rootfs
    rfd = mounts.open_root(root)
    try:
        with pytest.raises(NotADirectoryError) as ei:
            mounts.mkdir_in_root(rfd, "etc/passwd/sub")
        assert "etc/passwd/sub" in str(ei.value)
    finally:
        os.close(rfd)


# --- mountinfo ---------------------------------------------------------

def test_mountinfo_parses_the_test_mounts(tmp):
    spaced = os.path.join(tmp, "with space\tand\\tab")
    os.mkdir(spaced)

    def body():
        private_mount_ns()
        mounts.mount("barerun src", spaced, "tmpfs", MS["MS_NODEV"], "size=2m")
        mounts.mount(spaced, os.path.join(tmp), None, MS["MS_BIND"])
        return [m for m in mounts.mountinfo() if m["mountpoint"].startswith(tmp)]

    found = run_in_child(body)
    assert len(found) == 2
    first, second = found
    assert first["mountpoint"] == spaced
    assert first["fstype"] == "tmpfs"
    assert first["source"] == "barerun src"
    assert first["root"] == "/"
    assert "nodev" in first["options"].split(",")
    assert "size=2048k" in first["super_options"]
    assert second["mountpoint"] == tmp
    assert second["parent"] != first["id"]
    assert isinstance(first["id"], int) and ":" in first["major_minor"]
    me = mounts.mountinfo()
    assert [m["mountpoint"] for m in me].count("/") >= 1
    assert all({"id", "parent", "root", "mountpoint", "fstype", "source"} <= set(m) for m in me)


def test_mountinfo_of_a_dead_pid_is_esrch():
    pid = dead_pid()
    with pytest.raises(ProcessLookupError) as ei:
        mounts.mountinfo(pid)
    assert f"/proc/{pid}/mountinfo" in str(ei.value)
