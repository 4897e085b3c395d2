"""cgroup v2: the files of the unified hierarchy, one cgroup at a time.

In v2 every controller lives in one tree.  A controller's files appear in a
cgroup only when its parent lists the controller in
``cgroup.subtree_control``; the controllers a parent may hand down are in
its ``cgroup.controllers``.
"""

from __future__ import annotations

import errno
import os
import select
import time

from ..tracing import error, trace
from . import _fs, v1
from . import resources as _res
from .v1 import set_cpuset, set_pids, set_rdma, stats_pids  # noqa: F401  (same files in v2)

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from typing import Any, TypeVar

    from ._fs import Stats
    from .resources import Resources, Skipped

    _T = TypeVar("_T")


def enable_controllers(root: str, rel: str, wanted: Collection[str] | None = None) -> None:
    """Write "+name" to cgroup.subtree_control of the root and of each
    parent on ``rel`` so the leaf gets those controllers' files.

    ``wanted`` None means every controller the level offers (as runc).
    Best effort: the kernel refuses domain controllers below a cgroup that
    holds processes ("no internal processes" rule), so a refused write is
    retried one controller at a time and otherwise ignored."""
    parts = rel.split("/")
    here = root
    for depth in range(len(parts)):
        try:
            available = _fs.read(os.path.join(here, "cgroup.controllers")).split()
            enabled = set(_fs.read(os.path.join(here, "cgroup.subtree_control")).split())
        except OSError:
            return
        todo = [c for c in available
                if c not in enabled and (wanted is None or c in wanted)]
        if todo:
            control = os.path.join(here, "cgroup.subtree_control")
            try:
                _fs.write(control, " ".join("+" + c for c in todo))
            except OSError:
                for c in todo:
                    try:
                        _fs.write(control, "+" + c)
                    except OSError:
                        pass
        here = os.path.join(here, parts[depth])

# ---------------------------------------------------------------- memory, cpu


def set_memory(path: str, res: Resources) -> Skipped:
    """memory.max (hard limit), memory.low (protected from reclaim) and
    memory.swap.max (swap alone, not memory + swap as in v1).  v2 has no
    separate kernel or TCP memory limits (memory.max counts them) and no
    switch to turn the OOM killer off: those settings are left out, as
    runc does."""
    if res.memory_swappiness is not None:
        raise error(errno.EINVAL, "set memory_swappiness (cgroup v2 has no "
                    f"per-cgroup swappiness) on {path}")
    swap_file = os.path.join(path, "memory.swap.max")
    swap = _res.swap_v2(res.memory_swap, res.memory_limit, swap_file)
    if swap is not None:
        _fs.write(swap_file, _res.max_or_number(swap))
    if res.memory_limit is not None:
        _fs.write(os.path.join(path, "memory.max"),
                  _res.max_or_number(res.memory_limit))
    if res.memory_reservation is not None:
        _fs.write(os.path.join(path, "memory.low"),
                  _res.max_or_number(res.memory_reservation))
    skipped: Skipped = []
    for field, why in (("memory_kernel", "kernel memory limits are ignored "
                        "(memory.max counts kernel memory)"),
                       ("memory_kernel_tcp", "cgroup v2 has no TCP memory limit "
                        "(memory.max counts socket buffers)"),
                       ("memory_disable_oom_killer", "cgroup v2 cannot turn the "
                        "OOM killer off")):
        if getattr(res, field):
            skipped.append(_res.skip(path, field, why))
    return skipped


def set_cpu(path: str, res: Resources) -> Skipped:
    """cpu.idle, cpu.weight (converted from shares), cpu.max.burst and
    cpu.max "quota period".  v2 has no real-time CPU limits: those are left
    out, as runc does."""
    skipped: Skipped = []
    if res.cpu_idle is not None:
        idle_file = os.path.join(path, "cpu.idle")
        if res.cpu_idle == 0 and not os.path.exists(idle_file):
            skipped.append(_res.skip(path, "cpu_idle", "this kernel has no cpu.idle "
                                "(0, the default, is what it does anyway)"))
        else:
            _fs.write(idle_file, res.cpu_idle)
    if res.cpu_shares is not None:
        _fs.write(os.path.join(path, "cpu.weight"),
                  _res.shares_to_weight(res.cpu_shares))
    burst_file = os.path.join(path, "cpu.max.burst")
    burst_pending = False
    if res.cpu_burst is not None:
        if res.cpu_burst == 0 and not os.path.exists(burst_file):
            skipped.append(_res.skip(path, "cpu_burst", "this kernel has no cpu.max.burst "
                                "(0, the default, is what it does anyway)"))
        else:
            try:
                _fs.write(burst_file, res.cpu_burst)
            except OSError as exc:
                # a larger burst than the current quota allows: again
                # once the new quota is written
                if exc.errno != errno.EINVAL or res.cpu_quota is None:
                    raise
                burst_pending = True
    if res.cpu_quota is not None or res.cpu_period is not None:
        max_file = os.path.join(path, "cpu.max")
        current = "max"
        if res.cpu_quota is None:
            current = _fs.read(max_file).split()[0]
        _fs.write(max_file, _res.cpu_max(res.cpu_quota, res.cpu_period, current))
    if burst_pending:
        _fs.write(burst_file, res.cpu_burst)
    for field in ("cpu_rt_runtime", "cpu_rt_period"):
        if getattr(res, field) is not None:
            skipped.append(_res.skip(path, field, "cgroup v2 has no real-time CPU limits"))
    return skipped

# ---------------------------------------------------------------- io


def _bfq_device_weights(bfq_file: str) -> bool:
    """io.bfq.weight takes "MAJ:MIN weight" lines when it reads as
    "default N" (a kernel with per-device bfq weights), not as a bare
    number (runc's test)."""
    return not _fs.read(bfq_file).strip().isdigit()


def set_blkio(path: str, res: Resources) -> Skipped:
    """The io controller: io.bfq.weight (the v1 weight as is) where bfq is
    available, else io.weight (converted, as runc); per-device weights in
    io.bfq.weight where bfq has them; the throttles as io.max lines
    ("MAJ:MIN rbps=N", rate 0: "max").  v2 has no leaf weights."""
    skipped: Skipped = []
    bfq_file = os.path.join(path, "io.bfq.weight")
    bfq = os.path.exists(bfq_file)
    if res.blkio_weight is not None:
        if bfq:
            _fs.write(bfq_file, res.blkio_weight)
        else:
            _fs.write(os.path.join(path, "io.weight"), _res.blkio_to_io_weight(res.blkio_weight))
    if res.blkio_leaf_weight is not None:
        skipped.append(_res.skip(path, "blkio_leaf_weight", "cgroup v2 has no leaf weights"))
    devices = res.blkio_weight_device or []
    if any(w is not None for _, _, w, _ in devices):
        if bfq and _bfq_device_weights(bfq_file):
            for major, minor, weight, _ in devices:
                if weight is not None:
                    v1.write_device_line(bfq_file, _res.device_line(major, minor, weight),
                                      f"no block device {major}:{minor} here")
        else:
            skipped.append(_res.skip(path, "blkio_weight_device", "no per-device weights "
                                "without bfq (io.bfq.weight)"))
    if any(leaf is not None for _, _, _, leaf in devices):
        skipped.append(_res.skip(path, "blkio_weight_device", "cgroup v2 has no leaf weights"))
    max_file = os.path.join(path, "io.max")
    for field, _, key in v1.THROTTLES:
        for major, minor, rate in getattr(res, field) or ():
            v1.write_device_line(max_file, _res.io_max_line(major, minor, key, rate),
                              f"no block device {major}:{minor} here; limits take "
                              "a whole disk, not a partition")
    return skipped

# ---------------------------------------------------------------- hugetlb, net


def set_hugetlb(path: str, res: Resources) -> Skipped:
    """hugetlb.<size>.max and hugetlb.<size>.rsvd.max (bytes)."""
    v1.set_hugetlb_files(path, res, ".max")
    return []


def set_net_cls(path: str, res: Resources) -> Skipped:
    """cgroup v2 has no net_cls controller: left out, as runc does (a v2
    host matches a cgroup's packets by its path instead)."""
    if res.net_cls_classid is None:
        return []
    return [_res.skip(path, "net_cls_classid", "cgroup v2 has no net_cls controller")]


def set_net_prio(path: str, res: Resources) -> Skipped:
    """cgroup v2 has no net_prio controller: left out, as runc does."""
    if res.net_prio_ifpriomap is None:
        return []
    return [_res.skip(path, "net_prio_ifpriomap", "cgroup v2 has no net_prio controller")]

# ---------------------------------------------------------------- unified


def set_unified(path: str, res: Resources) -> Skipped:
    """Each (file name, value) of res.unified written as given into the
    cgroup's directory, after every other setting (so it wins, as runc).
    A file that is not there is ENOENT saying whether its controller is
    missing from this cgroup (cgroup.controllers) or the kernel has no
    such file."""
    for key, value in res.unified or ():
        if not key or "/" in key or key in (".", ".."):
            raise error(errno.EINVAL, f"write unified {key!r} (not a file name) in {path}")
        file = os.path.join(path, key)
        try:
            _fs.write(file, value)
        except FileNotFoundError:
            controller = key.split(".", 1)[0]
            offered = _try(_fs.read, os.path.join(path, "cgroup.controllers"))
            if offered is not None and controller != "cgroup" and \
                    controller not in offered.split():
                why = (f"the {controller} controller is not available in this cgroup, "
                       "see cgroup.controllers")
            else:
                why = "no such file in this kernel's cgroup v2"
            raise error(errno.ENOENT, f"write {value!r} on {file} ({why})") from None
    return []

# ---------------------------------------------------------------- freezer


def _frozen(events_fd: int) -> bool:
    text = os.pread(events_fd, 4096, 0).decode()
    return "frozen 1" in text.splitlines()


def freeze(path: str, timeout: float) -> None:
    """Write 1 to cgroup.freeze and wait for "frozen 1" in cgroup.events.

    The kernel signals a change of cgroup.events to poll() as POLLPRI, so
    the wait sleeps in poll() instead of spinning.  On timeout the cgroup
    is thawed again and EBUSY raised."""
    events = os.path.join(path, "cgroup.events")
    try:
        fd = os.open(events, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise error(exc.errno, f"freeze (open) on {events}") from None
    try:
        _fs.write(os.path.join(path, "cgroup.freeze"), "1")
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        deadline = time.monotonic() + timeout
        while not _frozen(fd):
            left = deadline - time.monotonic()
            if left <= 0:
                thaw(path)
                raise error(errno.EBUSY, f"freeze (not frozen after "
                            f"{timeout}s) on {events}")
            # never sleep long without looking again, in case an event
            # was missed
            poller.poll(min(left, 0.05) * 1000)
    finally:
        os.close(fd)


def thaw(path: str) -> None:
    """Write 0 to cgroup.freeze."""
    _fs.write(os.path.join(path, "cgroup.freeze"), "0")


def state(path: str) -> str:
    """FROZEN when cgroup.events says "frozen 1", FREEZING while
    cgroup.freeze is 1 but not every task has stopped, else THAWED."""
    events = _fs.read_keyed(os.path.join(path, "cgroup.events"))
    if events.get("frozen") == 1:
        return "FROZEN"
    if _fs.read(os.path.join(path, "cgroup.freeze")) == "1":
        return "FREEZING"
    return "THAWED"


def kill(path: str) -> None:
    """Write 1 to cgroup.kill: the kernel SIGKILLs every process in the
    cgroup and its descendants, including ones forking at that moment."""
    _fs.write(os.path.join(path, "cgroup.kill"), "1")

# ---------------------------------------------------------------- stats


def _try(fn: Callable[..., _T], *args: Any) -> _T | None:
    try:
        return fn(*args)
    except (OSError, ValueError):
        return None


def stats_cpu(path: str) -> Stats:
    """cpu.stat: usage_usec, user_usec, system_usec and throttling
    (reported in ns, as in v1)."""
    stat = _try(_fs.read_keyed, os.path.join(path, "cpu.stat")) or {}
    out: Stats = {}
    for key, name, scale in (("usage", "usage_usec", 1000),
                             ("user", "user_usec", 1000),
                             ("system", "system_usec", 1000),
                             ("periods", "nr_periods", 1),
                             ("throttled_periods", "nr_throttled", 1),
                             ("throttled_time", "throttled_usec", 1000)):
        if isinstance(stat.get(name), int):
            out[key] = stat[name] * scale
    return out


def stats_memory(path: str) -> Stats:
    """memory.current, memory.max (None for "max"), memory.peak,
    memory.swap.max, and from memory.events: max (as failcnt) and
    oom_kill."""
    out: Stats = {}
    for key, name in (("usage", "memory.current"), ("limit", "memory.max"),
                      ("max_usage", "memory.peak"),
                      ("swap_limit", "memory.swap.max")):
        value = _try(_fs.read, os.path.join(path, name))
        if value is not None:
            out[key] = None if value == "max" else _try(int, value)
    events = _try(_fs.read_keyed, os.path.join(path, "memory.events")) or {}
    for key, name in (("failcnt", "max"), ("oom_kill", "oom_kill")):
        if name in events:
            out[key] = events[name]
    return out


def open_dir(path: str) -> int:
    """An O_PATH directory fd of the cgroup, for clone3(CLONE_INTO_CGROUP)."""
    trace("cgroup.open", path=path, flags="O_DIRECTORY|O_PATH|O_CLOEXEC")
    try:
        return os.open(path, os.O_DIRECTORY | os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise error(exc.errno, f"open O_PATH on {path}") from None
