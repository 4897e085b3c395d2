"""One cgroup, seen in every mounted hierarchy.

A container's cgroup is a relative path such as ``barerun/abc``; it is one
directory under each hierarchy's mountpoint (v1: one per controller, plus
named ones such as name=systemd; v2: one in the unified tree).  ``Cgroup``
does each operation in the hierarchy that owns it: on a hybrid host the
resource controllers and the freezer are v1, the unified tree only tracks
the processes.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import time

from ..tracing import error, trace
from . import _fs, devices, v1, v2
from .detect import detect
from .resources import CONTROLLERS, V1_ONLY, V2_NAMES

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from typing import Protocol

    from ._fs import Stats
    from .detect import Layout
    from .devices import Rule
    from .resources import Resources, Skipped

    class _Freezer(Protocol):
        """The freezer functions of module v1 or v2."""
        def freeze(self, path: str, timeout: float) -> None: ...
        def thaw(self, path: str) -> None: ...
        def state(self, path: str) -> str: ...


def _clean_rel(path: str | os.PathLike[str]) -> str:
    parts = [p for p in str(path).split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"cgroup path {path!r}: want a relative path "
                         "like 'barerun/<id>', without '.' or '..'")
    return "/".join(parts)


class Cgroup:
    """The cgroup ``path`` (relative to each hierarchy's root) under
    ``layout`` (default: ``detect()``)."""

    def __init__(self, path: str | os.PathLike[str], layout: Layout | None = None) -> None:
        self.rel = _clean_rel(path)
        self.layout = layout or detect()
        #: hierarchy name ("memory", "name=systemd", "unified") -> directory
        self.paths: dict[str, str] = {name: os.path.join(mnt, self.rel)
                                      for name, mnt in self.layout.v1.items()}
        if self.layout.unified:
            self.paths["unified"] = os.path.join(self.layout.unified, self.rel)
        # the same directory once, with its hierarchy root (co-mounted
        # controllers such as cpu,cpuacct share one directory)
        self._dirs: dict[str, str] = {}
        for name, mnt in self.layout.v1.items():
            self._dirs.setdefault(self.paths[name], mnt)
        if self.layout.unified:
            self._dirs.setdefault(self.paths["unified"], self.layout.unified)

    def __repr__(self) -> str:
        return f"Cgroup({self.rel!r}, mode={self.layout.mode!r})"

    # ------------------------------------------------------------ helpers

    def _controller(self, name: str) -> tuple[str, str] | None:
        """("v1" | "v2", directory) of the hierarchy that holds controller
        ``name``, or None when no hierarchy has it."""
        if name in self.layout.v1:
            return "v1", self.paths[name]
        if self.layout.unified:
            return "v2", self.paths["unified"]
        return None

    def _freezer(self) -> tuple[_Freezer, str]:
        """The freezer to use: the v1 one when mounted, else cgroup2's."""
        if "freezer" in self.layout.v1:
            return v1, self.paths["freezer"]
        if self.layout.unified:
            return v2, self.paths["unified"]
        raise error(errno.ENODEV, f"freeze {self.rel} (no freezer "
                    "hierarchy mounted) on /proc/self/mountinfo")

    # ------------------------------------------------------------ life cycle

    def create(self, v2_controllers: Collection[str] | None = None) -> None:
        """mkdir -p the cgroup in every hierarchy.

        v1 cpuset: cpuset.cpus/mems are copied down from the parent where
        empty.  v2: the controllers in ``v2_controllers`` are enabled in
        the parents' cgroup.subtree_control, best effort.  None means all
        the parent offers on a pure v2 host, and none on a hybrid host,
        where the unified tree usually only tracks processes (so the
        host's root cgroup.subtree_control is not changed)."""
        for path, root in self._dirs.items():
            _mkdir_p(path, root)
        if "cpuset" in self.layout.v1:
            v1.init_cpuset(self.layout.v1["cpuset"], self.rel)
        if self.layout.unified and (self.layout.mode == "v2" or v2_controllers):
            v2.enable_controllers(self.layout.unified, self.rel,
                                  v2_controllers)

    def exists(self) -> bool:
        """True when the cgroup directory exists in at least one hierarchy
        (a half-removed cgroup still exists)."""
        return any(os.path.isdir(p) for p in self._dirs)

    def attach(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into this cgroup: write
        it to cgroup.procs in every hierarchy."""
        for path in self._dirs:
            _fs.write(os.path.join(path, "cgroup.procs"), int(pid))

    def join(self, unified: bool = True) -> None:
        """Move the calling process into this cgroup (e.g. a freshly forked
        child, before it execs the container's process).

        Measured on this kernel: every write of a pid to cgroup.procs takes
        the global cgroup_threadgroup_rwsem for writing, which waits for an
        RCU grace period (5-15 ms).  A single-threaded process can instead
        write "0" (itself) to each v1 hierarchy's ``tasks`` file, which
        moves only the calling thread and skips that lock (~25 us each).
        cgroup v2 has no such shortcut (cgroup.threads cannot cross
        domains): cgroup.procs is written there, unless ``unified=False``
        because the process was already cloned into it with
        CLONE_INTO_CGROUP."""
        single = len(os.listdir("/proc/self/task")) == 1
        unified_dir = self.paths.get("unified")
        for path in self._dirs:
            if path == unified_dir:
                if unified:
                    _fs.write(os.path.join(path, "cgroup.procs"), 0)
            elif single:
                _fs.write(os.path.join(path, "tasks"), 0)
            else:
                _fs.write(os.path.join(path, "cgroup.procs"), 0)

    def procs(self) -> list[int]:
        """Sorted pids in the cgroup (not its children), read from
        cgroup.procs of the freezer hierarchy (v1) or the unified one.  A
        half-made or half-removed cgroup (a create killed part way) may
        lack that directory: then every hierarchy where it exists is read."""
        if "freezer" in self.layout.v1:
            path = self.paths["freezer"]
        elif self.layout.unified:
            path = self.paths["unified"]
        else:
            path = next(iter(self._dirs))
        if os.path.isdir(path) or not self.exists():  # gone everywhere: ENOENT
            text = _fs.read(os.path.join(path, "cgroup.procs"))
            return sorted({int(p) for p in text.split()})
        pids: set[int] = set()
        for other in self._dirs:
            try:
                pids.update(int(p) for p in _fs.read(os.path.join(other, "cgroup.procs")).split())
            except FileNotFoundError:
                continue
        return sorted(pids)

    # ------------------------------------------------------------ freezer

    def freeze(self, timeout: float = 2.0) -> None:
        """Stop every process in the cgroup; returns once all are stopped
        (state FROZEN), or thaws again and raises EBUSY after ``timeout``."""
        mod, path = self._freezer()
        mod.freeze(path, timeout)

    def thaw(self) -> None:
        """Let every process in the cgroup run again."""
        mod, path = self._freezer()
        mod.thaw(path)

    def state(self) -> str:
        """"THAWED", "FREEZING" or "FROZEN"."""
        mod, path = self._freezer()
        return mod.state(path)

    def kill_all(self, signal: int = _signal.SIGKILL) -> None:
        """Send ``signal`` to every process in the cgroup.

        Pure v2 with SIGKILL: one write to cgroup.kill.  Otherwise the
        cgroup is frozen first, so no process can fork a new one between
        reading cgroup.procs and the kill, then each pid is signalled and
        the cgroup thawed (frozen tasks act on the signal as they thaw).
        Processes that already exited (ESRCH) are skipped."""
        if (signal == _signal.SIGKILL and self.layout.mode == "v2"
                and os.path.exists(os.path.join(self.paths["unified"],
                                                "cgroup.kill"))):
            v2.kill(self.paths["unified"])
            return
        frozen = False
        try:
            try:
                self.freeze()
                frozen = True
            except OSError as exc:
                # no freezer, or it could not stop everyone: signal anyway
                if exc.errno not in (errno.EBUSY, errno.ENODEV):
                    raise
            for pid in self.procs():
                trace("kill", pid=pid, signal=int(signal))
                try:
                    os.kill(pid, signal)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    # ------------------------------------------------------------ resources

    def set_resources(self, res: Resources) -> Skipped:
        """Write the limits in ``res`` (a Resources) to the files of the
        hierarchy that holds each controller (v1 or v2, per the layout);
        ``unified`` goes to the v2 directory.  Returns the settings left
        out, (field, why) each: those this kernel or cgroup version has no
        file for where runc ignores them too (see resources).

        A controller no hierarchy offers the cgroup is ENODEV.  On a hybrid
        host a controller (or a unified file's controller) taken from the
        unified tree is enabled in cgroup.subtree_control of the cgroup's
        parents, best effort, but never at the root: only where the host
        enabled it there already."""
        skipped: Skipped = []
        for name in CONTROLLERS:
            if not res.wants(name):
                continue
            where = self._controller(name)
            if where is None or (name in V1_ONLY and where[0] == "v2"
                                 and self.layout.mode != "v2"):
                what = ("no cgroup v2 hierarchy mounted" if name == "unified"
                        else f"no {name} hierarchy mounted")
                raise error(errno.ENODEV, f"set {name} limits for {self.rel} "
                            f"({what}) on /proc/self/mountinfo")
            version, path = where
            mod = v1 if version == "v1" else v2
            if version == "v2" and self.layout.mode != "v2":
                self._enable_below_root(self._v2_names(name, res))
            try:
                skipped += getattr(mod, "set_" + name)(path, res)
            except FileNotFoundError:
                # v2: a controller's files exist only where the parent
                # enabled it in cgroup.subtree_control
                if version == "v2" and name != "unified" and os.path.isdir(path):
                    v2name = V2_NAMES.get(name, name)
                    offered = _fs.read(os.path.join(path, "cgroup.controllers")).split()
                    if v2name not in offered:
                        raise error(errno.ENODEV, f"set {name} limits on {path} (no "
                                    f"{v2name} controller enabled for it, see "
                                    "cgroup.controllers)") from None
                raise
        return skipped

    @staticmethod
    def _v2_names(name: str, res: Resources) -> list[str]:
        """The v2 controllers a setting of ``name`` needs: its own, or for
        unified the prefix of each file ("memory.high" -> memory)."""
        if name == "unified":
            return sorted({key.split(".", 1)[0] for key, _ in res.unified or ()})
        return [V2_NAMES.get(name, name)]

    def _enable_below_root(self, wanted: list[str]) -> None:
        """Hybrid host: enable ``wanted`` for this cgroup in the parents'
        cgroup.subtree_control below the unified root, where the root has
        them enabled (the host's choice, not changed here)."""
        root = self.layout.unified
        if root is None or "/" not in self.rel:
            return
        try:
            at_root = _fs.read(os.path.join(root, "cgroup.subtree_control")).split()
        except OSError:
            return
        wanted = [c for c in wanted if c in at_root]
        if wanted:
            first, rest = self.rel.split("/", 1)
            v2.enable_controllers(os.path.join(root, first), rest, wanted)

    def set_devices(self, rules: Sequence[Rule], known: dict | None = None) -> None:
        """Make ``rules`` (see ``devices``) the cgroup's device rules: the
        v1 devices hierarchy's files where it is mounted, and a BPF device
        program on the unified hierarchy where there is one (the only
        device control on a pure v2 host; on a hybrid host both apply, so
        the same rules hold in either).  An empty list changes nothing.
        ``known``: the programs loaded before, see devices.attach."""
        if not rules:
            return
        if "devices" in self.layout.v1:
            devices.write_v1(self.paths["devices"], rules)
        if self.layout.unified:
            devices.attach(self.paths["unified"], rules, known)

    def stats(self) -> dict[str, Stats]:
        """{"cpu": {...}, "memory": {...}, "pids": {...}} from whichever
        files exist; a missing file or controller leaves its keys out."""
        out: dict[str, Stats] = {"cpu": {}, "memory": {}, "pids": {}}
        cpu, acct = self._controller("cpu"), self._controller("cpuacct")
        if cpu and cpu[0] == "v2":
            out["cpu"] = v2.stats_cpu(cpu[1])
        elif cpu or acct:
            out["cpu"] = v1.stats_cpu(cpu[1] if cpu else None,
                                      acct[1] if acct and acct[0] == "v1" else None)
        mem = self._controller("memory")
        if mem:
            out["memory"] = (v1 if mem[0] == "v1" else v2).stats_memory(mem[1])
        pids = self._controller("pids")
        if pids:
            out["pids"] = v1.stats_pids(pids[1])
        return out

    # ------------------------------------------------------------ removal

    def remove(self, timeout: float = 1.0) -> None:
        """rmdir the cgroup in every hierarchy, then its now-empty parents
        named in the relative path (never the hierarchy root).

        Child cgroups (made inside the container) are removed first.  While
        exiting processes drain the kernel answers EBUSY: retried until
        ``timeout``.  A cgroup already gone (ENOENT) is fine; the first
        other error is raised after every hierarchy was tried."""
        deadline = time.monotonic() + timeout
        first: OSError | None = None
        for path, root in self._dirs.items():
            try:
                _remove_tree(path, deadline)
            except OSError as exc:
                first = first or exc
                continue
            parent = os.path.dirname(path)
            while len(parent) > len(root.rstrip("/")):
                try:
                    _fs.rmdir(parent)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        break       # EBUSY / ENOTEMPTY: still in use
                parent = os.path.dirname(parent)
        if first is not None:
            raise first

    def open_unified_fd(self) -> int | None:
        """An O_PATH fd of the cgroup's v2 directory, for clone3 with
        CLONE_INTO_CGROUP (the child starts inside the cgroup); None when
        there is no unified hierarchy."""
        if not self.layout.unified:
            return None
        return v2.open_dir(self.paths["unified"])


def _mkdir_p(path: str, root: str) -> None:
    """mkdir the cgroup, and its parents below ``root`` when missing (one
    mkdir in the common case where the parent exists)."""
    try:
        _fs.mkdir(path)
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if len(parent) <= len(root.rstrip("/")):
            raise
        _mkdir_p(parent, root)
        _fs.mkdir(path)


def _remove_tree(path: str, deadline: float) -> None:
    """rmdir ``path`` after its child cgroups, retrying on EBUSY."""
    try:
        children = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(exc.errno, f"list on {path}") from None
    for child in children:
        _remove_tree(child, deadline)
    delay = 0.0001
    while True:
        try:
            _fs.rmdir(path)
            return
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
