"""Where the cgroup hierarchies are mounted, and which one a process is in.

A *hierarchy* is one mounted cgroup filesystem:

- cgroup v1 ("cgroup" filesystem): one hierarchy per controller, or per
  group of controllers mounted together (``cpu,cpuacct``); a hierarchy may
  also have no controller and only a name (``name=systemd``), used just to
  group processes;
- cgroup v2 ("cgroup2" filesystem): one single hierarchy for every
  controller, called the *unified* hierarchy.

A host is ``v1`` (only v1 hierarchies), ``v2`` (only the unified one, apart
from named v1 hierarchies) or ``hybrid`` (v1 controllers plus a cgroup2
mount, usually at /sys/fs/cgroup/unified, holding the controllers v1 did
not take).  ``/proc/self/mountinfo`` tells which it is.
"""

from __future__ import annotations

import errno
import os
from collections import namedtuple

from ..tracing import error

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import NamedTuple

    class _Layout(NamedTuple):
        mode: str                 # "v1", "v2" or "hybrid"
        v1: dict[str, str]
        unified: str | None

    class _Mount(NamedTuple):
        mount_id: int
        parent_id: int
        root: str
        mountpoint: str
        fstype: str
        super_options: str
else:
    _Layout = namedtuple("Layout", "mode v1 unified")
    _Mount = namedtuple("_Mount", "mount_id parent_id root mountpoint fstype super_options")

# Words in a v1 mount's super options that are options, not controllers.
_V1_OPTIONS = {"rw", "ro", "noprefix", "clone_children", "xattr",
               "cpuset_v2_mode", "favordynmods", "all", "none"}


class Layout(_Layout):
    """The cgroup hierarchies visible to this process.

    ``v1`` maps each v1 controller (``"memory"``) and each named hierarchy
    (``"name=systemd"``) to its mountpoint; co-mounted controllers share
    one mountpoint.  ``unified`` is the cgroup2 mountpoint or None.
    """
    __slots__ = ()


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _parse_mountinfo(text: str) -> list[_Mount]:
    mounts: list[_Mount] = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        fields, after = head.split(), tail.split()
        if len(fields) < 6 or len(after) < 3:
            continue
        mounts.append(_Mount(int(fields[0]), int(fields[1]),
                             _unescape(fields[3]), _unescape(fields[4]),
                             after[0], after[2]))
    return mounts


def _covers(outer: str, inner: str) -> bool:
    """True when path ``outer`` is ``inner`` or one of its ancestors."""
    return (outer == inner or outer == "/"
            or inner.startswith(outer.rstrip("/") + "/"))


def _visible(mount: _Mount, by_id: dict[int, _Mount], mounts: list[_Mount]) -> bool:
    """False when a later mount on the same path (or on a parent path)
    hides ``mount``: e.g. cgroup2 mounted over /sys/fs/cgroup hides the v1
    hierarchies below it, which still appear in mountinfo."""
    chain: set[int] = set()
    parent = by_id.get(mount.parent_id)
    while parent is not None and parent.mount_id not in chain:
        chain.add(parent.mount_id)
        parent = by_id.get(parent.parent_id)
    for other in mounts:
        if (other is not mount and other.mount_id not in chain
                and _covers(other.mountpoint, mount.mountpoint)):
            return False
    return True


def _parse_layout(text: str) -> Layout:
    mounts = _parse_mountinfo(text)
    by_id = {m.mount_id: m for m in mounts}
    v1: dict[str, str] = {}            # controller or name=... -> mountpoint
    v1_roots: dict[str, str] = {}      # and the root of that mount
    unified: str | None = None
    has_controller = False
    for m in mounts:
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        if not _visible(m, by_id, mounts):
            continue
        if m.fstype == "cgroup2":
            if unified is None:
                unified = m.mountpoint
            continue
        for opt in m.super_options.split(","):
            if opt in _V1_OPTIONS or ("=" in opt and not opt.startswith("name=")):
                continue
            # A hierarchy may be mounted twice (a bind of a sub-cgroup):
            # prefer the mount that shows the hierarchy's root.
            if opt not in v1 or (v1_roots[opt] != "/" and m.root == "/"):
                v1[opt], v1_roots[opt] = m.mountpoint, m.root
            has_controller = has_controller or not opt.startswith("name=")
    if not v1 and unified is None:
        raise error(errno.ENOENT, "find a cgroup mount on /proc/self/mountinfo")
    if unified is None:
        mode = "v1"
    elif has_controller:
        mode = "hybrid"
    else:
        mode = "v2"
    return Layout(mode, v1, unified)


_cache: dict[tuple[int, int], Layout] = {}


def detect(mountinfo_text: str | None = None, *, refresh: bool = False) -> Layout:
    """The Layout of this process's cgroup hierarchies.

    Without an argument /proc/self/mountinfo is read once per process and
    mount namespace (the result is cached; ``refresh=True`` reads again,
    e.g. after mounting a cgroup filesystem).  With ``mountinfo_text`` it
    only parses that text.
    """
    if mountinfo_text is not None:
        return _parse_layout(mountinfo_text)
    try:
        key = (os.getpid(), os.stat("/proc/self/ns/mnt").st_ino)
    except OSError:
        key = (os.getpid(), 0)
    layout = None if refresh else _cache.get(key)
    if layout is None:
        try:
            with open("/proc/self/mountinfo") as f:
                text = f.read()
        except OSError as exc:
            raise error(exc.errno, "read on /proc/self/mountinfo") from None
        layout = _parse_layout(text)
        _cache.clear()
        _cache[key] = layout
    return layout


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Parse the text of /proc/<pid>/cgroup (see own_cgroup)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, names, path = parts
        if names == "":
            out["unified"] = path          # "0::/path" is the cgroup2 line
            continue
        for name in names.split(","):
            out[name] = path
    return out


def own_cgroup(pid: int | None = None) -> dict[str, str]:
    """The cgroup a process is in, per hierarchy, read from
    /proc/<pid>/cgroup: {"memory": "/barerun/abc", "name=systemd": "/",
    "unified": "/", ...}.  ``pid=None`` means this process."""
    path = f"/proc/{'self' if pid is None else int(pid)}/cgroup"
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise error(exc.errno, f"read on {path}") from None
    return parse_proc_cgroup(text)
