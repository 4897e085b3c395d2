"""The container's filesystem view, built inside its new mount namespace.

Runs in the init process (see init.py), in this order, each step traced:

1. make "/" a slave (or spec.rootfsPropagation) so nothing leaks to the host;
   a shared propagation also makes the rootfs's parent mount private
   (pivot_root refuses a shared new root);
2. bind the rootfs onto itself: pivot_root needs a mount point;
3. every spec mount, its destination created and resolved *inside* the
   rootfs (openat2 RESOLVE_IN_ROOT) and mounted through /proc/self/fd/N;
4. device nodes (the OCI defaults + linux.devices) and /dev symlinks;
5. pivot_root(".", "."), then, from a fd of the old root, make it a slave
   and unmount it lazily;
6. maskedPaths, readonlyPaths, then root.readonly.
"""

import errno
import os
import stat

from lowlevel import cgroups as _cgroups
from lowlevel import mounts as M
from lowlevel.tracing import trace

from .errors import os_message
from .spec import DEFAULT_DEVICES

MS = M.MS
_PROPAGATION_MASK = MS["MS_PRIVATE"] | MS["MS_SLAVE"] | MS["MS_SHARED"] | MS["MS_UNBINDABLE"]
_BIND_KEEP = MS["MS_BIND"] | MS["MS_REC"]
_DEV_SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                 ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))


class StepError(Exception):
    """A failed step: which step, which path, and the OSError behind it."""

    def __init__(self, step, path, exc):
        self.step = step
        self.path = path
        self.exc = exc
        text = os_message(exc) if isinstance(exc, OSError) else str(exc)
        super().__init__(f"{step} {path}: {text}")


def prepare(spec, cgroup_rel=None, before_pivot=None):
    """Steps 1-5; returns with the process inside the new root.
    ``cgroup_rel`` is the container's cgroup (see mount_cgroup);
    ``before_pivot()`` runs once every mount is made, in the rootfs, just
    before pivot_root (the hooks of create)."""
    root = spec.rootfs
    _step("make / a slave mount", "/", M.mount, None, "/", None,
          spec.rootfs_propagation or (MS["MS_SLAVE"] | MS["MS_REC"]))
    if spec.rootfs_propagation & MS["MS_SHARED"]:
        make_parent_private(root)
    _step("bind rootfs onto itself", root, M.mount, root, root, None,
          MS["MS_BIND"] | MS["MS_REC"])
    rootfd = _step("open rootfs", root, M.open_root, root)
    try:
        dev_is_tmpfs = False
        for m in spec.mounts:
            mount_one(rootfd, spec, m, cgroup_rel)
            if m.destination.rstrip("/") == "/dev" and not m.bind:
                dev_is_tmpfs = True
        make_devices(rootfd, spec, dev_is_tmpfs)
        has_devpts = any(m.type == "devpts" and m.destination.rstrip("/") == "/dev/pts"
                         for m in spec.mounts)
        if has_devpts:
            _symlink(rootfd, "pts/ptmx", "/dev/ptmx", replace=True)
        if dev_is_tmpfs:
            for target, link in _DEV_SYMLINKS:
                _symlink(rootfd, target, link)
            if os.path.exists("/proc/kcore"):
                _symlink(rootfd, "/proc/kcore", "/dev/core")
        _step("chdir to rootfs", root, os.fchdir, rootfd)
    finally:
        os.close(rootfd)
    if before_pivot is not None:
        before_pivot()
    pivot(root)


def make_parent_private(root):
    """pivot_root refuses a shared new root (or parent): with a shared
    rootfsPropagation, make the mount holding the rootfs private first, so
    the rootfs bind made from it is private too (finish() makes "/"
    shared again inside the container)."""
    real = os.path.realpath(root)
    parent = None
    for m in _step("read mountinfo", "/proc/self/mountinfo", M.mountinfo):
        mp = m["mountpoint"]
        if real == mp or real.startswith(mp.rstrip("/") + "/"):
            if parent is None or len(mp) >= len(parent):
                parent = mp
    if parent is not None:
        _step("make rootfs parent mount private", parent, M.mount, None, parent, None,
              MS["MS_PRIVATE"])


def pivot(root):
    """pivot_root(".", "."): the old root ends up stacked on the new one,
    made a slave (so the unmount does not propagate) and detached.

    The cwd stays on the *new* root's mount after pivot_root; a fd of the
    old root, opened before, names the old one: the slave step must reach
    the old root's tree only, or the container's own mounts lose the
    propagation the spec gave them."""
    oldroot = _step("open old root", "/", os.open, "/",
                    os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _step("pivot_root", root, M.pivot_root, ".", ".")
        _step("chdir to old root", "/", os.fchdir, oldroot)
    finally:
        os.close(oldroot)
    _step("make old root a slave", "/", M.mount, None, ".", None, MS["MS_SLAVE"] | MS["MS_REC"])
    _step("unmount old root", "/", M.umount, ".", M.MNT_DETACH)
    _step("chdir", "/", os.chdir, "/")


def finish(spec):
    """Step 6, inside the new root."""
    null: list[int] = []
    try:
        for path in spec.masked_paths:
            mask(path, null)
    finally:
        for fd in null:
            os.close(fd)
    for path in spec.readonly_paths:
        make_readonly(path)
    if spec.readonly_root:
        _step("remount / read-only", "/", M.mount, None, "/", None,
              MS["MS_BIND"] | MS["MS_REMOUNT"] | MS["MS_RDONLY"])
    if spec.rootfs_propagation and spec.rootfs_propagation & MS["MS_SHARED"]:
        _step("make / shared", "/", M.mount, None, "/", None, spec.rootfs_propagation)


def _step(step, path, fn, *args, **kwargs):
    """One rootfs step: traced by its name (which names the spec field,
    "mount devpts (mounts[3])") and path, then done; an OSError becomes a
    StepError naming both."""
    trace("step", what=step, path=path)
    try:
        return fn(*args, **kwargs)
    except OSError as exc:
        raise StepError(step, path, exc) from None


def _source_path(spec, m):
    src = m.source
    if not os.path.isabs(src):
        src = os.path.join(spec.bundle, src)
    return src


def mount_one(rootfd, spec, m, cgroup_rel=None):
    """Mount one spec mount at its destination inside the rootfs."""
    dest = m.destination
    if m.type == "cgroup" and not m.bind:
        own = cgroup_rel if "cgroup" not in spec.namespaces else None
        return mount_cgroup(rootfd, m, own)
    if m.bind:
        src = _source_path(spec, m)
        try:
            st = os.stat(src)
        except OSError as exc:
            raise StepError(f"{m.field}.source", src, exc) from None
        is_file = not stat.S_ISDIR(st.st_mode)
    else:
        src = m.source or m.type
        is_file = False
    fd = _step(f"create mount destination ({m.field})", dest,
               M.mkdir_in_root, rootfd, dest, 0o755, file=is_file)
    flags = m.flags & ~_PROPAGATION_MASK
    extra = flags & ~_BIND_KEEP if m.bind else 0
    try:
        target = M.fd_path(fd)
        if m.bind:
            _step(f"bind mount {src} ({m.field})", dest, M.mount, src, target, None,
                  flags & _BIND_KEEP)
        elif m.copyup:
            mount_tmpfs_copyup(rootfd, m, fd, flags)
        else:
            _step(f"mount {m.type} ({m.field})", dest, M.mount, src, target, m.type,
                  flags, m.data or None)
    finally:
        os.close(fd)
    if not (extra or m.recursive or m.propagation):
        return
    # the new mount, resolved once for what follows (fd names the directory
    # under it)
    mfd = _step(f"open the new mount ({m.field})", dest, M.open_in_root, rootfd, dest)
    try:
        if extra:
            _step(f"remount bind mount ({m.field})", dest, M.mount, None,
                  M.fd_path(mfd), None, flags | MS["MS_REMOUNT"] | MS["MS_BIND"])
        if m.recursive:
            # rro, rnosuid ...: the whole tree, submounts included
            _step(f"set recursive mount attributes ({m.field}.options)", dest,
                  M.mount_setattr, M.fd_path(mfd),
                  set_flags=[a for a, on in m.recursive.items() if on],
                  clear_flags=[a for a, on in m.recursive.items() if not on], recursive=True)
        for p in m.propagation:
            _step(f"set propagation ({m.field})", dest, M.mount, None, M.fd_path(mfd), None, p)
    finally:
        os.close(mfd)


def mount_tmpfs_copyup(rootfd, m, fd, flags):
    """A tmpfs with the option ``tmpcopyup`` (as runc and crun): it starts
    with a copy of the directory it covers, so an image's /run, /tmp or
    /etc/x stays populated under a writable tmpfs (podman's --tmpfs,
    --read-only, --systemd).

    ``fd`` (from mkdir_in_root) names the covered directory itself: after
    the tmpfs is mounted over it, the fd still reads the directory below,
    so no temporary mount point outside the rootfs is needed.  The copy
    never follows a symlink (they are copied as symlinks) and keeps modes,
    owners and times; the tmpfs root takes the covered directory's mode
    and owner unless the options say mode=, uid= or gid=.  A read-only
    tmpfs is mounted writable, filled, then remounted read-only."""
    dest = m.destination
    step = f"tmpcopyup ({m.field})"
    old = _step(f"open covered directory ({step})", dest, os.open, ".",
                os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    try:
        st = os.fstat(old)
        _step(f"mount tmpfs ({m.field})", dest, M.mount, m.source or "tmpfs", M.fd_path(fd),
              "tmpfs", flags & ~MS["MS_RDONLY"], m.data or None)
        new = _step(f"open the new tmpfs ({step})", dest, M.open_in_root, rootfd, dest,
                    os.O_RDONLY | os.O_DIRECTORY)
        try:
            opts = {o.split("=", 1)[0] for o in m.data.split(",") if o}
            try:
                if not opts & {"uid", "gid"}:
                    os.fchown(new, st.st_uid, st.st_gid)
                if "mode" not in opts:
                    os.fchmod(new, stat.S_IMODE(st.st_mode))
            except OSError as exc:
                raise StepError(step, dest, exc) from None
            _copy_tree(old, new, dest.rstrip("/"), step)
            if flags & MS["MS_RDONLY"]:
                _step(f"remount tmpfs read-only ({m.field})", dest, M.mount, None,
                      M.fd_path(new), None, flags | MS["MS_REMOUNT"])
        finally:
            os.close(new)
    finally:
        os.close(old)


def _copy_tree(src, dst, path, step):
    """Copy the entries of directory fd ``src`` into directory fd ``dst``
    (recursively, without following symlinks); ``path`` names ``src`` in
    errors."""
    with os.scandir(src) as entries:
        names = [e.name for e in entries]
    for name in names:
        where = f"{path}/{name}"
        try:
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(name, 0o700, dir_fd=dst)
                s = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                            dir_fd=src)
                try:
                    d = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=dst)
                    try:
                        _copy_tree(s, d, where, step)
                        _copy_attrs(d, st)
                    finally:
                        os.close(d)
                finally:
                    os.close(s)
            elif stat.S_ISREG(mode):
                s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
                try:
                    d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                | os.O_CLOEXEC, 0o600, dir_fd=dst)
                    try:
                        while os.sendfile(d, s, None, 1 << 30):
                            pass
                        _copy_attrs(d, st)
                    finally:
                        os.close(d)
                finally:
                    os.close(s)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst,
                         follow_symlinks=False)
            else:  # device, fifo, socket
                os.mknod(name, mode, st.st_rdev, dir_fd=dst)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
                os.chmod(name, stat.S_IMODE(mode), dir_fd=dst)
        except StepError:
            raise
        except OSError as exc:
            raise StepError(step, where, exc) from None


def _copy_attrs(fd, st):
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears set-id bits
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _is_under(path, parent):
    path, parent = path.rstrip("/") or "/", parent.rstrip("/") or "/"
    return path != parent and (parent == "/" or path.startswith(parent + "/"))


def make_restore_mountpoints(spec):
    """Before a CRIU restore (runs in the host's mount namespace): create
    the mount points of the spec's mounts, as runc does, since CRIU mounts
    onto what it finds and a fresh rootfs (podman's restore --import, an
    image's new layer) lacks those a create made (/etc/hosts ...).

    A mount point on the rootfs itself is made there; one inside a bind
    mount is made in that bind's source; one inside any other mount (a
    tmpfs whose content CRIU restores, proc, sysfs, devpts) needs
    nothing.  Every path is resolved inside its root (RESOLVE_IN_ROOT)."""
    for m in spec.mounts:
        parents = [p for p in spec.mounts if p is not m and _is_under(m.destination, p.destination)]
        if parents:
            parent = max(parents, key=lambda p: len(p.destination.rstrip("/")))
            if not parent.bind:
                continue
            root = _source_path(spec, parent)
            rel = m.destination[len(parent.destination.rstrip("/")):]
        else:
            root, rel = spec.rootfs, m.destination
        is_file = False
        if m.bind:
            try:
                is_file = not stat.S_ISDIR(os.stat(_source_path(spec, m)).st_mode)
            except OSError as exc:
                raise StepError(f"{m.field}.source", _source_path(spec, m), exc) from None
        try:
            rootfd = M.open_root(root)
        except OSError as exc:
            if parents:
                continue  # the bind source is missing: restore reports it
            raise StepError("open rootfs", root, exc) from None
        try:
            fd = _step(f"create mount point ({m.field})", m.destination, M.mkdir_in_root,
                       rootfd, rel, 0o755, file=is_file)
            os.close(fd)
        finally:
            os.close(rootfd)


def cgroup_hierarchies(layout, dest):
    """(fstype, host mountpoint, mount options, path in the container) of
    every hierarchy a cgroup mount at ``dest`` shows."""
    if layout.mode == "v2":
        return [("cgroup2", layout.unified, None, dest)]
    out: list[tuple[str, str, str | None, str]] = []
    seen = set()
    for _name, mountpoint in sorted(layout.v1.items()):
        if mountpoint in seen:
            continue
        seen.add(mountpoint)
        opts = ",".join(sorted(k for k, v in layout.v1.items() if v == mountpoint))
        if opts.startswith("name="):
            opts = "none," + opts
        sub = f"{dest.rstrip('/')}/{os.path.basename(mountpoint)}"
        out.append(("cgroup", mountpoint, opts, sub))
    if layout.unified:
        out.append(("cgroup2", layout.unified, None, f"{dest.rstrip('/')}/unified"))
    return out


def cgroup_binds(spec, cgroup_rel):
    """(path in the container, host directory) of every cgroup bind that
    mount_cgroup makes for a container without a cgroup namespace (CRIU
    must be told they are external mounts)."""
    if "cgroup" in spec.namespaces or not cgroup_rel:
        return []
    layout = _cgroups.detect()
    return [(sub, os.path.join(mountpoint, cgroup_rel))
            for m in spec.mounts if m.type == "cgroup" and not m.bind
            for _fs, mountpoint, _opts, sub in cgroup_hierarchies(layout, m.destination)]


def mount_cgroup(rootfd, m, own=None):
    """The container's view of its cgroups: cgroup2 on a v2 host; on v1 and
    hybrid hosts a tmpfs holding one cgroup mount per hierarchy.

    In a cgroup namespace a cgroup mount's root is the namespace's root:
    the container's own cgroup.  Without one it would be the host's whole
    tree (every other container's cgroups visible, the container's own
    limits not: memory.limit_in_bytes would read the host root's value), so
    with ``own`` (the container's cgroup path) each hierarchy's directory
    for the container is bound instead, as runc does."""
    dest = m.destination
    flags = m.flags & ~_PROPAGATION_MASK
    layout = _cgroups.detect()

    def mount_hierarchy(fstype, mountpoint, opts, path, sfd):
        if own is None:
            what = f"{fstype} {opts}" if opts else fstype
            _step(f"mount {what} ({m.field})", path, M.mount, fstype, M.fd_path(sfd), fstype,
                  flags, opts)
            return
        src = os.path.join(mountpoint, own)
        _step(f"bind the container's cgroup {src} ({m.field})", path, M.mount, src,
              M.fd_path(sfd), None, MS["MS_BIND"] | MS["MS_REC"])
        if flags & MS["MS_RDONLY"]:
            # the new mount, not the directory under it that sfd is
            nfd = _step(f"open {path}", path, M.open_in_root, rootfd, path)
            try:
                _step(f"remount cgroup read-only ({m.field})", path, M.mount, None,
                      M.fd_path(nfd), None,
                      MS["MS_BIND"] | MS["MS_REMOUNT"] | (flags & ~MS["MS_REC"]))
            finally:
                os.close(nfd)

    fd = _step(f"create mount destination ({m.field})", dest, M.mkdir_in_root, rootfd, dest)
    hierarchies = cgroup_hierarchies(layout, dest)
    try:
        if layout.mode == "v2":
            fstype, mountpoint, opts, path = hierarchies[0]
            mount_hierarchy(fstype, mountpoint, opts, path, fd)
            return
        _step(f"mount tmpfs for cgroups ({m.field})", dest, M.mount, "tmpfs", M.fd_path(fd),
              "tmpfs", flags & ~MS["MS_RDONLY"], "mode=755")
    finally:
        os.close(fd)
    for fstype, mountpoint, opts, sub in hierarchies:
        sfd = _step("create cgroup mount point", sub, M.mkdir_in_root, rootfd, sub)
        try:
            mount_hierarchy(fstype, mountpoint, opts, sub, sfd)
        finally:
            os.close(sfd)
    if flags & MS["MS_RDONLY"]:
        mfd = _step(f"open {dest}", dest, M.open_in_root, rootfd, dest)
        try:
            _step("remount cgroup tmpfs read-only", dest, M.mount, None, M.fd_path(mfd), None,
                  MS["MS_REMOUNT"] | MS["MS_BIND"] | flags)
        finally:
            os.close(mfd)


def make_devices(rootfd, spec, dev_is_tmpfs):
    """The OCI default devices (when /dev is the container's own tmpfs) and
    linux.devices: mknod, or a bind of the host's node where mknod is denied."""
    devices: list = []
    if dev_is_tmpfs:
        devices.extend(DEFAULT_DEVICES)
    for d in spec.devices:
        devices.append((d.path, d.type, d.major, d.minor, d.mode, d.uid, d.gid))
    for dev in devices:
        path, kind, major, minor, mode = dev[:5]
        uid, gid = (dev[5], dev[6]) if len(dev) > 5 else (0, 0)
        parent, name = os.path.split(path)
        pfd = _step("create device directory", parent, M.mkdir_in_root, rootfd, parent)
        try:
            fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
            try:
                os.unlink(name, dir_fd=pfd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StepError("replace device", path, exc) from None
            try:
                os.mknod(name, fmt | (mode & 0o7777), os.makedev(major, minor), dir_fd=pfd)
            except PermissionError:
                _bind_device(rootfd, path)
                continue
            except OSError as exc:
                raise StepError("mknod", path, exc) from None
            try:
                os.chmod(name, mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
            except NotImplementedError:
                os.chmod(f"{M.fd_path(pfd)}/{name}", mode & 0o7777)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)


def _bind_device(rootfd, path):
    fd = _step("create device bind target", path, M.mkdir_in_root, rootfd, path, file=True)
    try:
        _step("bind device", path, M.mount, path, M.fd_path(fd), None, MS["MS_BIND"])
    finally:
        os.close(fd)


def _symlink(rootfd, target, link, replace=False):
    parent, name = os.path.split(link)
    pfd = _step("create directory", parent, M.mkdir_in_root, rootfd, parent)
    try:
        if replace:
            try:
                os.unlink(name, dir_fd=pfd)
            except FileNotFoundError:
                pass
        try:
            os.symlink(target, name, dir_fd=pfd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StepError("symlink", link, exc) from None
    finally:
        os.close(pfd)


def open_null(flags=os.O_PATH):
    """The container's /dev/null, checked to be the 1:3 character device
    and never reached through a symlink (CVE-2025-31133 class: a rootfs
    whose /dev/null links to /proc/sys/kernel/core_pattern would have
    every masked file bound to that host procfs file, writable)."""
    try:
        fd = os.open("/dev/null", flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            exc = OSError(errno.EPERM, "is a symlink, not the null device")
        raise StepError("open /dev/null", "/dev/null", exc) from None
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise StepError("check /dev/null", "/dev/null",
                        OSError(errno.EPERM, "not the null device (char 1:3)"))
    return fd


def mask(path, null):
    """Hide a path: /dev/null over a file, an empty read-only tmpfs over a
    directory; a symlink is left alone, never followed.  The target is
    opened once (O_PATH|O_NOFOLLOW) and mounted on through its fd, so it
    cannot be swapped for a symlink in between.  ``null`` is the caller's
    list for the checked /dev/null fd (opened on first use, closed by the
    caller)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return
        raise StepError("mask", path, exc) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):
            return
        if stat.S_ISDIR(st.st_mode):
            _step("mask directory", path, M.mount, "tmpfs", M.fd_path(fd), "tmpfs",
                  MS["MS_RDONLY"])
            return
        if not null:
            null.append(open_null())
        _step("mask file", path, M.mount, M.fd_path(null[0]), M.fd_path(fd), None,
              MS["MS_BIND"])
    finally:
        os.close(fd)


def make_readonly(path):
    """Bind a path onto itself and make the whole tree read-only."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return
    _step("bind read-only path", path, M.mount, path, path, None, MS["MS_BIND"] | MS["MS_REC"])
    try:
        M.mount_setattr(path, set_flags=("ro",), recursive=True)
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise StepError("make read-only", path, exc) from None
        _step("remount read-only", path, M.mount, None, path, None,
              MS["MS_BIND"] | MS["MS_REMOUNT"] | MS["MS_RDONLY"] | MS["MS_REC"])
