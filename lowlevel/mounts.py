"""Mounts: mount(2), umount2(2), pivot_root(2), mount_setattr(2), and
resolving a path *inside* a root directory with openat2(RESOLVE_IN_ROOT).

A container's mount destinations come from an untrusted spec and an
untrusted rootfs: "/etc/../../x" or a symlink "/data -> /" must never lead
out of the rootfs.  ``open_in_root`` asks the kernel to resolve the path
as if the root directory were "/", then the runtime mounts onto the fd
through its /proc/self/fd/N magic link, so nothing can swap a component
for a symlink between the check and the mount.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from ._ffi import ffi, lib
from .tracing import check, error, proc_error, trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TypedDict

    class MountInfo(TypedDict):
        """One line of /proc/<pid>/mountinfo, as ``mountinfo`` parses it."""
        id: int
        parent: int
        major_minor: str
        root: str
        mountpoint: str
        options: str
        optional: list[str]
        fstype: str
        source: str
        super_options: str

MS: dict[str, int] = {name: getattr(lib, name) for name in dir(lib) if name.startswith("MS_")}
HAS_OPENAT2 = bool(lib.HAS_OPENAT2)
HAS_MOUNT_SETATTR = bool(lib.HAS_MOUNT_SETATTR)
RESOLVE_IN_ROOT: int = lib.RESOLVE_IN_ROOT
RESOLVE_NO_MAGICLINKS: int = lib.RESOLVE_NO_MAGICLINKS
RESOLVE_NO_XDEV: int = lib.RESOLVE_NO_XDEV
AT_FDCWD = -100
MOUNT_ATTR: dict[str, int] = {
    "ro": lib.MOUNT_ATTR_RDONLY, "nosuid": lib.MOUNT_ATTR_NOSUID,
    "nodev": lib.MOUNT_ATTR_NODEV, "noexec": lib.MOUNT_ATTR_NOEXEC}


def flag_names(flags: int) -> str:
    names = [n for n, v in MS.items() if v and flags & v == v and n != "MS_SILENT"]
    return "|".join(sorted(names)) or "0"


def _c(s: str | None) -> object:
    """A C string argument: the encoded path or text, NULL for None."""
    return ffi.NULL if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2).  ``target`` may be a /proc/self/fd/N path."""
    trace("mount", source=source, target=target, fstype=fstype,
          flags=flag_names(flags), data=data)
    check(lib.mount(_c(source), _c(target), _c(fstype), flags, _c(data)),
          f"mount {source or fstype} on {target} ({flag_names(flags)})")


def make_private(target: str = "/", recursive: bool = True) -> None:
    """Stop mount events propagating to/from the host (MS_PRIVATE)."""
    mount(None, target, None, MS["MS_PRIVATE"] | (MS["MS_REC"] if recursive else 0))


def umount(target: str, flags: int = 0) -> None:
    """umount2(2); flags e.g. MNT_DETACH."""
    trace("umount2", target=target, flags=flags)
    check(lib.umount2(os.fsencode(target), flags), f"umount {target}")


MNT_DETACH: int = lib.MNT_DETACH


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): make ``new_root`` the root, the old root goes to ``put_old``.

    Called as pivot_root(".", ".") from inside new_root, the old root is
    stacked on top of the new one and can be detached with umount(".",
    MNT_DETACH) -- no directory for the old root is needed.
    """
    trace("pivot_root", new_root=new_root, put_old=put_old)
    check(lib.barerun_pivot_root(os.fsencode(new_root), os.fsencode(put_old)),
          f"pivot_root {new_root} (old root to {put_old})")


def mount_setattr(path: str, *, set_flags: str | Iterable[str] = (),
                  clear_flags: str | Iterable[str] = (), recursive: bool = False,
                  dirfd: int = AT_FDCWD) -> None:
    """mount_setattr(2): change ro/nosuid/nodev/noexec of a mount (tree).

    Unlike a MS_REMOUNT|MS_BIND, it applies to a whole tree with
    AT_RECURSIVE in one call.  Flags are names from MOUNT_ATTR ("ro", ...).
    Where the running kernel has no mount_setattr (before 5.12, or ENOSYS
    from a seccomp filter; probed on the first call), each mount of the
    tree is remounted (MS_BIND|MS_REMOUNT) with its own flags changed.
    """
    global _setattr_works
    set_flags = (set_flags,) if isinstance(set_flags, str) else tuple(set_flags)
    clear_flags = (clear_flags,) if isinstance(clear_flags, str) else tuple(clear_flags)
    aset = _attrs(set_flags)
    aclr = _attrs(clear_flags)
    flags = lib.AT_RECURSIVE if recursive else 0
    trace("mount_setattr", path=path, set=list(set_flags), clear=list(clear_flags),
          recursive=recursive)
    what = (f"mount_setattr {path} (set {','.join(set_flags) or '-'}, "
            f"clear {','.join(clear_flags) or '-'}{', recursive' if recursive else ''})")
    if _setattr_works is not False:
        if lib.barerun_mount_setattr(dirfd, os.fsencode(path), flags, aset, aclr, 0) == 0:
            _setattr_works = True
            return
        err = ffi.errno
        if err != errno.ENOSYS:
            raise error(err, what)
        _setattr_works = False
    if dirfd != AT_FDCWD:
        path = os.path.join(os.readlink(fd_path(dirfd)), path)
    _remount_tree(path, set_flags, clear_flags, recursive)


_setattr_works: bool | None = None  # mount_setattr on this kernel: probed on first use

# per-mount flags as mountinfo's options name them, and what mount_setattr calls them
_PER_MOUNT = {"ro": "MS_RDONLY", "nosuid": "MS_NOSUID", "nodev": "MS_NODEV",
              "noexec": "MS_NOEXEC", "noatime": "MS_NOATIME", "nodiratime": "MS_NODIRATIME",
              "relatime": "MS_RELATIME"}


def _remount_tree(path: str, set_flags: tuple[str, ...], clear_flags: tuple[str, ...],
                  recursive: bool) -> None:
    """mount_setattr's work without it: the mount at ``path`` (and with
    ``recursive`` every mount below it, found by parent id in mountinfo),
    each remounted MS_BIND|MS_REMOUNT with its current per-mount flags,
    ``set_flags`` added and ``clear_flags`` taken away."""
    real = os.path.realpath(path)
    mounts = mountinfo()
    top = [m for m in mounts if m["mountpoint"] == real]
    if not top:
        raise error(errno.EINVAL, f"remount {path}: not a mount point")
    tree = [top[-1]]  # the last one mounted there is the one seen
    if recursive:
        ids = {tree[0]["id"]}
        grew = True
        while grew:  # mountinfo lists parents first, but do not count on it
            grew = False
            for m in mounts:
                if m["parent"] in ids and m["id"] not in ids:
                    ids.add(m["id"])
                    tree.append(m)
                    grew = True
    for m in tree:
        opts = set(m["options"].split(","))
        opts = (opts | set(set_flags)) - set(clear_flags)
        flags = MS["MS_BIND"] | MS["MS_REMOUNT"]
        for name in opts & set(_PER_MOUNT):
            flags |= MS[_PER_MOUNT[name]]
        trace("mount", target=m["mountpoint"], flags=flag_names(flags),
              instead_of="mount_setattr (ENOSYS)")
        check(lib.mount(ffi.NULL, os.fsencode(m["mountpoint"]), ffi.NULL, flags, ffi.NULL),
              f"remount {m['mountpoint']} ({flag_names(flags)})")


def _attrs(names: Iterable[str]) -> int:
    mask = 0
    for n in names:
        try:
            mask |= MOUNT_ATTR[n]
        except KeyError:
            raise ValueError(f"unknown mount attribute {n!r} "
                             f"(known: {', '.join(MOUNT_ATTR)})") from None
    return mask


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2) with resolve flags (RESOLVE_IN_ROOT ...)."""
    flags |= os.O_CLOEXEC
    trace("openat2", dirfd=dirfd, path=path, flags=open_flag_names(flags),
          resolve=_resolve_names(resolve).strip(" ()") or "0")
    fd = lib.barerun_openat2(dirfd, os.fsencode(path), flags, mode, resolve)
    if fd == -1:
        err = ffi.errno
        raise error(err, f"openat2 {path}{_in_dir(dirfd)}{_resolve_names(resolve)}")
    return fd


_OPEN_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND",
               "O_NONBLOCK", "O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC", "O_PATH")


def open_flag_names(flags: int) -> str:
    """open(2) flags by name: "O_RDONLY|O_DIRECTORY" (O_RDONLY is 0)."""
    names = [n for n in _OPEN_FLAGS if flags & getattr(os, n)]
    if not flags & (os.O_WRONLY | os.O_RDWR | os.O_PATH):
        names.insert(0, "O_RDONLY")
    rest = flags & ~sum(getattr(os, n) for n in _OPEN_FLAGS)
    return "|".join(names + ([hex(rest)] if rest else []))


def _in_dir(dirfd: int) -> str:
    """" in /the/dir (fd N)" for an error message; only computed on failure."""
    if dirfd == AT_FDCWD:
        return ""
    try:
        return f" in {os.readlink(fd_path(dirfd))} (fd {dirfd})"
    except OSError:
        return f" in fd {dirfd}"


def _resolve_names(resolve: int) -> str:
    names = [n for n in ("IN_ROOT", "BENEATH", "NO_SYMLINKS", "NO_MAGICLINKS", "NO_XDEV")
             if resolve & getattr(lib, "RESOLVE_" + n)]
    return f" (RESOLVE_{'|RESOLVE_'.join(names)})" if names else ""


def open_root(root: str) -> int:
    """An O_PATH directory fd for a root directory."""
    try:
        return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise error(exc.errno, f"open root {root}") from None


_openat2_works: bool | None = None  # probed on first use: the kernel, not the headers


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH, mode: int = 0) -> int:
    """Open ``path`` resolved inside the directory ``root_fd``.

    "..", absolute symlinks and relative symlinks all stay within the root
    (RESOLVE_IN_ROOT); magic links (/proc/self/...) are refused.  Where
    openat2 fails with ENOSYS (kernels before 5.6, or a seccomp filter) the
    same walk is done one component at a time (walk_in_root).
    """
    global _openat2_works
    rel = path.lstrip("/") or "."
    if _openat2_works is not False:
        try:
            fd = openat2(root_fd, rel, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
            _openat2_works = True
            return fd
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            _openat2_works = False
    return walk_in_root(root_fd, rel, flags, mode)


MAX_SYMLINKS = 40  # as the kernel's path walk
PROC_SUPER_MAGIC = 0x9FA0


def fs_type(fd: int) -> int:
    """The filesystem magic of the file ``fd`` is open on (fstatfs)."""
    buf = ffi.new("struct statfs *")
    check(lib.fstatfs(fd, buf), f"fstatfs fd {fd}")
    return buf.f_type


def walk_in_root(root_fd: int, path: str, flags: int = os.O_PATH, mode: int = 0) -> int:
    """RESOLVE_IN_ROOT by hand: each component opened O_PATH|O_NOFOLLOW
    relative to its parent's fd; a symlink's target is spliced into the
    remaining path (an absolute one restarts at the root), ".." never goes
    above the root, and the last component is opened with ``flags`` and
    O_NOFOLLOW (a symlink there is resolved the same way)."""
    trace("walk_in_root", dirfd=root_fd, path=path, flags=flag_names(flags))
    parts = [p for p in path.split("/") if p not in ("", ".")]
    try:
        stack = [os.dup(root_fd)]
    except OSError as exc:
        raise error(exc.errno, f"open {path} in fd {root_fd} (RESOLVE_IN_ROOT, walked)") from None
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not parts
            want = (flags if last else os.O_PATH) | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(name, want, mode, dir_fd=stack[-1])
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise error(exc.errno, f"open {path}{_in_dir(root_fd)} "
                                "(RESOLVE_IN_ROOT, walked)") from None
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                magic = fs_type(fd) == PROC_SUPER_MAGIC
                os.close(fd)
                if magic:
                    # RESOLVE_NO_MAGICLINKS: a procfs link (/proc/self/root,
                    # /proc/<pid>/fd/N ...) is never followed
                    raise error(errno.ELOOP, f"open {path}{_in_dir(root_fd)}: "
                                f"{name} is a procfs link")
                links += 1
                if links > MAX_SYMLINKS:
                    raise error(errno.ELOOP, f"open {path}{_in_dir(root_fd)} "
                                "(RESOLVE_IN_ROOT, walked)")
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if last:
                return fd
            stack.append(fd)
        # the path named the root itself (or ended in "..")
        return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=stack[-1]) \
            if flags != os.O_PATH else os.dup(stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def fd_path(fd: int) -> str:
    """The magic link naming an open fd: a safe mount target."""
    return f"/proc/self/fd/{fd}"


def resolve_in_root(root: str, path: str) -> str:
    """The host path that ``path`` names inside ``root`` (symlinks stay in)."""
    rfd = open_root(root)
    try:
        fd = open_in_root(rfd, path)
        try:
            real = os.readlink(fd_path(fd))
        finally:
            os.close(fd)
    finally:
        os.close(rfd)
    return real


def mkdir_in_root(root_fd: int, path: str, mode: int = 0o755, *, file: bool = False) -> int:
    """Create ``path`` (and its parents) inside root_fd; returns an O_PATH fd.

    Every component is created with mkdirat relative to the fd of its parent,
    which itself was opened with RESOLVE_IN_ROOT, so a symlink in the rootfs
    cannot redirect the creation outside.  With ``file=True`` the last
    component is an empty file (a bind-mount target for a file).
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    try:
        return open_in_root(root_fd, path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    cur = os.dup(root_fd)
    done = ""
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            done += "/" + part
            try:
                nxt = open_in_root(root_fd, done)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                trace("mkdirat" if not (last and file) else "mknodat", path=done)
                try:
                    if last and file:
                        fd = os.open(part, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                                     0o644, dir_fd=_dirfd(cur))
                        os.close(fd)
                    else:
                        os.mkdir(part, mode, dir_fd=_dirfd(cur))
                except FileExistsError:
                    pass
                except OSError as exc2:
                    raise error(exc2.errno, f"create {done} in container root") from None
                try:
                    nxt = open_in_root(root_fd, done)
                except FileNotFoundError:
                    # it exists, yet cannot be resolved: a symlink whose
                    # target (inside the root) does not exist; never follow
                    # it by hand
                    raise error(errno.ENOENT, f"create {path} in container root: "
                                f"{done} is a dangling symlink") from None
            os.close(cur)
            cur = nxt
        return cur
    except BaseException:
        os.close(cur)
        raise


def _dirfd(fd: int) -> int:
    """os.mkdir(dir_fd=) needs a real fd, not O_PATH on old kernels: reopen."""
    return fd


def is_dir_fd(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def mountinfo(pid: int | str = "self") -> list[MountInfo]:
    """Parse /proc/<pid>/mountinfo: a list of dicts (id, parent, major_minor,
    root, mountpoint, options, optional (e.g. ["shared:1"]), fstype, source,
    super_options), in the kernel's order (parents before children)."""
    path = f"/proc/{pid}/mountinfo"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise proc_error(exc.errno, pid, f"read {path}") from None
    out: list[MountInfo] = []
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        left, _, right = line.partition(" - ")
        a = left.split(" ")
        b = right.split(" ")
        out.append({
            "id": int(a[0]), "parent": int(a[1]), "major_minor": a[2],
            "root": _unescape(a[3]), "mountpoint": _unescape(a[4]), "options": a[5],
            "optional": a[6:],
            "fstype": b[0], "source": _unescape(b[1]) if len(b) > 1 else "",
            "super_options": _unescape(b[2]) if len(b) > 2 else "",
        })
    return out


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(s: str) -> str:
    """Undo the kernel's octal escapes (\\040 for space, \\134 for \\ ...)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), s)
