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
from . import _fs
from .resources import cpu_max, max_or_number, shares_to_weight, swap_v2
from .v1 import set_cpuset, set_pids, stats_pids  # noqa: F401  (same files in v2)

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from typing import Any, TypeVar

    from ._fs import Stats
    from .resources import Resources

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


def set_memory(path: str, res: Resources) -> None:
    """memory.max (hard limit), memory.low (protected from reclaim) and
    memory.swap.max (swap alone, not memory + swap as in v1)."""
    if res.memory_swappiness is not None:
        raise error(errno.EINVAL, "set memory_swappiness (cgroup v2 has no "
                    f"per-cgroup swappiness) on {path}")
    swap_file = os.path.join(path, "memory.swap.max")
    swap = swap_v2(res.memory_swap, res.memory_limit, swap_file)
    if swap is not None:
        _fs.write(swap_file, max_or_number(swap))
    if res.memory_limit is not None:
        _fs.write(os.path.join(path, "memory.max"),
                  max_or_number(res.memory_limit))
    if res.memory_reservation is not None:
        _fs.write(os.path.join(path, "memory.low"),
                  max_or_number(res.memory_reservation))


def set_cpu(path: str, res: Resources) -> None:
    """cpu.weight (converted from shares) and cpu.max "quota period"."""
    if res.cpu_shares is not None:
        _fs.write(os.path.join(path, "cpu.weight"),
                  shares_to_weight(res.cpu_shares))
    if res.cpu_quota is not None or res.cpu_period is not None:
        max_file = os.path.join(path, "cpu.max")
        current = "max"
        if res.cpu_quota is None:
            current = _fs.read(max_file).split()[0]
        _fs.write(max_file, cpu_max(res.cpu_quota, res.cpu_period, current))

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
