"""Namespaces: clone3/clone, unshare, setns, and /proc/<pid>/ns introspection.

A namespace type is named as in OCI and /proc/<pid>/ns: "mnt" (also
"mount"), "uts", "ipc", "net" ("network"), "pid", "user", "cgroup", "time".
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections import namedtuple

from ._ffi import ffi, lib
from .tracing import check, error, proc_error, trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any, NamedTuple

    class _NsId(NamedTuple):
        type: str
        inode: int
else:
    _NsId = namedtuple("NsId", "type inode")

# /proc/<pid>/ns file name -> CLONE_NEW* flag
FLAGS: dict[str, int] = {
    "mnt": lib.CLONE_NEWNS,
    "uts": lib.CLONE_NEWUTS,
    "ipc": lib.CLONE_NEWIPC,
    "net": lib.CLONE_NEWNET,
    "pid": lib.CLONE_NEWPID,
    "user": lib.CLONE_NEWUSER,
    "cgroup": lib.CLONE_NEWCGROUP,
    "time": lib.CLONE_NEWTIME,
}
# OCI's names for the same namespaces
OCI_NAMES = {"mount": "mnt", "network": "net"}

CLONE_PIDFD: int = lib.CLONE_PIDFD
CLONE_INTO_CGROUP: int = lib.CLONE_INTO_CGROUP
HAS_CLONE3 = bool(lib.HAS_CLONE3)

# the legacy clone() path runs the child on one static stack (CLONE_VM |
# CLONE_VFORK): two threads spawning at once would share it
_legacy_clone_lock = threading.Lock()


def ns_name(name: str) -> str:
    """The /proc/<pid>/ns name for an OCI or kernel namespace name."""
    name = OCI_NAMES.get(name, name)
    if name not in FLAGS:
        raise ValueError(f"unknown namespace type {name!r}")
    return name


def flags_for(names: Iterable[str]) -> int:
    """The CLONE_NEW* bit mask for an iterable of namespace names."""
    mask = 0
    for name in names:
        mask |= FLAGS[ns_name(name)]
    return mask


def names_for(flags: int) -> list[str]:
    return [name for name, bit in FLAGS.items() if flags & bit]


def describe(flags: int) -> str:
    """Namespace flags for a message: "uts|net", unknown bits in hex."""
    names = names_for(flags)
    rest = flags & ~flags_for(names)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def unshare(flags: int) -> None:
    """unshare(2): move the calling process into new namespaces."""
    trace("unshare", flags=names_for(flags))
    check(lib.unshare(flags), f"unshare {describe(flags)}")


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2) by a namespace fd (/proc/<pid>/ns/<x>) or by a pidfd.

    With a pidfd, ``nstype`` may hold several CLONE_NEW* flags at once: the
    caller enters all of them atomically (kernel >= 5.8).
    """
    trace("setns", fd=fd, nstype=names_for(nstype))
    check(lib.setns(fd, nstype), f"setns fd {fd} {describe(nstype) if nstype else 'any'}")


def setns_pidfd(pidfd: int, pid: int, names: Iterable[str]) -> None:
    """Join namespace ``names`` of process ``pid`` (whose pidfd is given).

    Tries one setns(pidfd, all flags); on a kernel without pidfd setns
    (EINVAL) falls back to ``setns_each``.
    """
    names = [ns_name(n) for n in names]
    if not names:
        return
    try:
        setns(pidfd, flags_for(names))
        return
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: kernel too old for pidfd setns
            raise
    setns_each(pid, names)


def setns_each(pid: int | str, names: Iterable[str]) -> None:
    """Join namespaces ``names`` of ``pid`` one by one through
    /proc/<pid>/ns/<name>, the user namespace first as the kernel requires.

    Every namespace file is opened before the first setns: once inside the
    target's mount (or user) namespace, /proc/<pid> may name another
    process or nothing at all.
    """
    names = list(dict.fromkeys(ns_name(n) for n in names))
    names.sort(key=lambda n: n != "user")
    fds = []
    try:
        for name in names:
            fds.append(open_ns(pid, name))
        for name, fd in zip(names, fds, strict=True):
            setns(fd, FLAGS[name])
    finally:
        for fd in fds:
            os.close(fd)


def open_ns(pid: int | str, name: str) -> int:
    """An O_RDONLY|O_CLOEXEC fd for /proc/<pid>/ns/<name>."""
    path = f"/proc/{pid}/ns/{ns_name(name)}"
    trace("open", path=path)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise proc_error(exc.errno, pid, f"open namespace {path}") from None


class NsId(_NsId):
    """A namespace identity: its type and inode (as in "uts:[4026531838]")."""
    __slots__ = ()


def ns_id(pid: int | str, name: str) -> NsId:
    """The identity of process ``pid``'s namespace ``name``."""
    path = f"/proc/{pid}/ns/{ns_name(name)}"
    try:
        link = os.readlink(path)
    except OSError as exc:
        raise proc_error(exc.errno, pid, f"readlink {path}") from None
    kind, _, rest = link.partition(":[")
    return NsId(kind, int(rest.rstrip("]")))


def namespaces_of(pid: int | str) -> dict[str, NsId]:
    """Every namespace of ``pid``: {name: NsId}.

    A namespace type the kernel lacks is left out; a process that does
    not exist is an error (ESRCH), not an empty answer.
    """
    out: dict[str, NsId] = {}
    for name in FLAGS:
        try:
            out[name] = ns_id(pid, name)
        except FileNotFoundError:
            pass  # a kernel without that namespace type
    return out


def fork(cgroup_fd: int | None = None, sibling: bool = False) -> tuple[int, bool]:
    """os.fork(), but through clone3 so that with ``cgroup_fd`` (an fd of a
    cgroup v2 directory) the child starts in that cgroup (CLONE_INTO_CGROUP):
    no later cgroup.procs write, which on this kernel waits for an RCU grace
    period (~5 ms).  Python runs normally in the child, as after os.fork.

    With ``sibling`` (CLONE_PARENT) the child is this process's parent's
    child, not its own.  That is for a forked child with one thread, which
    hands the new process over and exits: Python's at-fork handlers
    (~0.4 ms, run already when this process was forked) are not run again.

    Returns (pid, joined): ``joined`` is False when the kernel refused
    clone3 and a plain clone was made instead."""
    used = ffi.new("int *", 0)
    flags = (["CLONE_INTO_CGROUP"] if cgroup_fd is not None else []) + (
        ["CLONE_PARENT"] if sibling else [])
    trace("clone3", flags=flags, cgroup_fd=cgroup_fd)
    if sibling and _threads() != 1:
        raise ValueError("fork(sibling=True) is for a process with one thread")
    pid = lib.barerun_fork(-1 if cgroup_fd is None else cgroup_fd,
                           lib.CLONE_PARENT if sibling else 0, int(sibling), used)
    if pid == -1:
        raise error(ffi.errno, f"clone3 (fork) into cgroup fd {cgroup_fd}")
    return pid, bool(used[0])


def _threads() -> int:
    threading = sys.modules.get("threading")
    return 1 if threading is None else threading.active_count()


def _cstrings(items: Iterable[str]) -> tuple[list[Any], Any]:
    """C strings for ``items`` and a NULL-terminated char *[] of them (the
    list keeps the strings alive as long as the array is used)."""
    keep = [ffi.new("char[]", os.fsencode(s)) for s in items]
    return keep, ffi.new("char *[]", keep + [ffi.NULL])


_clone3_works: bool | None = None  # clone3 on this kernel (spawn): probed on first use


def spawn(argv: Sequence[str], *, flags: int = 0, env: Mapping[str, str] | None = None,
          cgroup_fd: int | None = None, use_clone3: bool | None = None) -> tuple[int, int]:
    """clone3 (or clone) a child that execve()s ``argv`` at once, in C.

    The child runs no Python: it is made by a raw syscall, so it may use
    namespace flags (CLONE_NEW*) and CLONE_INTO_CGROUP (with ``cgroup_fd``,
    a cgroup v2 directory fd) that os.fork cannot.  Returns (pid, pidfd);
    the pidfd is close-on-exec and the caller owns it.
    ``argv[0]`` is the program's path (no $PATH search).
    ``use_clone3=False`` forces the legacy clone() path, which cannot place
    the child in a cgroup: combined with ``cgroup_fd`` it is a ValueError.
    By default clone3 is used while the running kernel has it (probed on
    the first call: ENOSYS means the legacy path from then on).
    """
    global _clone3_works
    if not argv:
        raise ValueError("spawn needs a non-empty argv")
    auto = use_clone3 is None
    if auto:
        use_clone3 = HAS_CLONE3 and _clone3_works is not False
    if cgroup_fd is not None and not use_clone3:
        raise ValueError("spawn: cgroup_fd (CLONE_INTO_CGROUP) needs clone3")
    flags |= CLONE_PIDFD
    if cgroup_fd is not None:
        flags |= CLONE_INTO_CGROUP
    path = argv[0]
    # the child can only report a failed execve as exit status 127: check
    # the program here so the usual mistake gets a precise error
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        err = errno.ENOENT if not os.path.exists(path) else errno.EACCES
        raise error(err, f"spawn {path}")
    envl = [f"{k}={v}" for k, v in (os.environ if env is None else env).items()]
    keep_a, c_argv = _cstrings(argv)
    keep_e, c_envp = _cstrings(envl)
    pidfd = ffi.new("int *", -1)
    trace("clone3" if use_clone3 else "clone", flags=names_for(flags),
          cgroup_fd=cgroup_fd, argv=list(argv))
    if use_clone3:
        pid = lib.barerun_spawn(flags, -1 if cgroup_fd is None else cgroup_fd, pidfd,
                                1, os.fsencode(path), c_argv, c_envp)
    else:
        with _legacy_clone_lock:
            pid = lib.barerun_spawn(flags, -1, pidfd, 0, os.fsencode(path), c_argv, c_envp)
    if pid == -1 and auto and use_clone3 and ffi.errno == errno.ENOSYS:
        _clone3_works = False
        if cgroup_fd is not None:
            raise error(errno.ENOSYS, f"clone3 {path} (into cgroup fd {cgroup_fd}): "
                        "this kernel has no clone3, and only clone3 starts a child "
                        "in a cgroup")
        trace("clone", flags=names_for(flags), argv=list(argv), instead_of="clone3 (ENOSYS)")
        use_clone3 = False
        with _legacy_clone_lock:
            pid = lib.barerun_spawn(flags, -1, pidfd, 0, os.fsencode(path), c_argv, c_envp)
    if pid == -1:
        ns = describe(flags & ~CLONE_PIDFD & ~CLONE_INTO_CGROUP)
        what = f"{'clone3' if use_clone3 else 'clone'} {path} ({ns}"
        if cgroup_fd is not None:
            what += f", into cgroup fd {cgroup_fd}"
        raise error(ffi.errno, what + ")")
    del keep_a, keep_e
    os.set_inheritable(pidfd[0], False)
    return pid, pidfd[0]
