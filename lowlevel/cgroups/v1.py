"""cgroup v1: the files of the v1 controllers, one cgroup directory at a time.

In v1 each controller has its own hierarchy, so each function here takes
the directory of the cgroup *in that controller's hierarchy*
(e.g. /sys/fs/cgroup/memory/barerun/abc).
"""

from __future__ import annotations

import errno
import os
import time

from ..tracing import error
from . import _fs
from .resources import pids_max

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from ._fs import Stats
    from .resources import Resources

    _T = TypeVar("_T")

# ---------------------------------------------------------------- cpuset


def init_cpuset(root: str, rel: str) -> None:
    """A new v1 cpuset cgroup starts with empty cpuset.cpus and cpuset.mems,
    and the kernel refuses (ENOSPC) to attach a process to it.  Copy both
    from the parent, level by level, wherever they are still empty."""
    parent = root
    for part in rel.split("/"):
        here = os.path.join(parent, part)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if _fs.read(os.path.join(here, name)) == "":
                _fs.write(os.path.join(here, name),
                          _fs.read(os.path.join(parent, name)))
        parent = here


def set_cpuset(path: str, res: Resources) -> None:
    """cpuset.cpus / cpuset.mems: the CPUs and memory nodes allowed
    (same files in v2)."""
    if res.cpuset_cpus is not None:
        _fs.write(os.path.join(path, "cpuset.cpus"), res.cpuset_cpus)
    if res.cpuset_mems is not None:
        _fs.write(os.path.join(path, "cpuset.mems"), res.cpuset_mems)

# ---------------------------------------------------------------- pids


def set_pids(path: str, res: Resources) -> None:
    """pids.max: fork() and clone() fail with EAGAIN once the cgroup holds
    that many tasks (same file in v2)."""
    if res.pids_limit is not None:
        _fs.write(os.path.join(path, "pids.max"), pids_max(res.pids_limit))

# ---------------------------------------------------------------- memory


def set_memory(path: str, res: Resources) -> None:
    """memory.limit_in_bytes (RAM), memory.memsw.limit_in_bytes (RAM plus
    swap, present only with swap accounting) and memory.soft_limit_in_bytes
    (reclaimed down to under pressure).

    The kernel insists limit <= memsw at every moment, so when both change
    they are written in the order that keeps that true (as runc does)."""
    limit, swap = res.memory_limit, res.memory_swap
    limit_file = os.path.join(path, "memory.limit_in_bytes")
    memsw_file = os.path.join(path, "memory.memsw.limit_in_bytes")
    has_memsw = os.path.exists(memsw_file)
    if limit == -1 and swap is None and has_memsw:
        swap = -1           # unlimited memory: unlimited memory+swap too
    if swap is not None and not has_memsw:
        raise error(errno.ENOENT, f"set memory_swap={swap} (no swap "
                    f"accounting in this kernel) on {memsw_file}")
    if limit is not None and swap is not None:
        current = int(_fs.read(limit_file))
        if swap == -1 or current < swap:
            _fs.write(memsw_file, swap)
            _fs.write(limit_file, limit)
        else:
            _fs.write(limit_file, limit)
            _fs.write(memsw_file, swap)
    elif limit is not None:
        _fs.write(limit_file, limit)
    elif swap is not None:
        _fs.write(memsw_file, swap)
    if res.memory_reservation is not None:
        _fs.write(os.path.join(path, "memory.soft_limit_in_bytes"),
                  res.memory_reservation)
    if res.memory_swappiness is not None:
        _fs.write(os.path.join(path, "memory.swappiness"), res.memory_swappiness)

# ---------------------------------------------------------------- cpu


def set_cpu(path: str, res: Resources) -> None:
    """cpu.shares (relative weight), cpu.cfs_period_us and cpu.cfs_quota_us
    (at most quota microseconds of CPU time per period)."""
    if res.cpu_shares is not None:
        _fs.write(os.path.join(path, "cpu.shares"), res.cpu_shares)
    period_pending = False
    if res.cpu_period is not None:
        try:
            _fs.write(os.path.join(path, "cpu.cfs_period_us"), res.cpu_period)
        except OSError as exc:
            # A shorter period can be refused (EINVAL) because the old
            # quota / new period ratio exceeds the parent's; set the quota
            # first and try again.
            if exc.errno != errno.EINVAL or res.cpu_quota is None:
                raise
            period_pending = True
    if res.cpu_quota is not None:
        _fs.write(os.path.join(path, "cpu.cfs_quota_us"), res.cpu_quota)
        if period_pending:
            _fs.write(os.path.join(path, "cpu.cfs_period_us"), res.cpu_period)

# ---------------------------------------------------------------- freezer


def freeze(path: str, timeout: float) -> None:
    """Write FROZEN to freezer.state and wait until it reads FROZEN.

    The kernel stops each task at its next return to user space; until all
    have stopped the state reads FREEZING.  Writing FROZEN again retries
    the tasks that were missed (e.g. just forked), so the loop re-writes it
    between short sleeps that grow from 100us.  On timeout the cgroup is
    thawed again and EBUSY raised."""
    state_file = os.path.join(path, "freezer.state")
    deadline = time.monotonic() + timeout
    delay = 0.0001
    _fs.write(state_file, "FROZEN")
    while True:
        state = _fs.read(state_file)
        if state == "FROZEN":
            return
        if time.monotonic() >= deadline:
            thaw(path)
            raise error(errno.EBUSY, f"freeze (still {state} after "
                        f"{timeout}s) on {state_file}")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
        _fs.write(state_file, "FROZEN")


def thaw(path: str) -> None:
    """Write THAWED to freezer.state: every task runs again."""
    _fs.write(os.path.join(path, "freezer.state"), "THAWED")


def state(path: str) -> str:
    """freezer.state: THAWED, FREEZING or FROZEN."""
    return _fs.read(os.path.join(path, "freezer.state"))

# ---------------------------------------------------------------- stats


def _try(fn: Callable[..., _T], *args: Any) -> _T | None:
    try:
        return fn(*args)
    except (OSError, ValueError):
        return None


def _put(out: Stats, key: str, value: int | str | None) -> None:
    if value is not None:
        out[key] = value


def stats_cpu(cpu_path: str | None, cpuacct_path: str | None) -> Stats:
    """cpuacct.usage / usage_user / usage_sys (ns) and cpu.stat
    (throttling: nr_periods, nr_throttled, throttled_time in ns)."""
    out: Stats = {}
    if cpuacct_path:
        for key, name in (("usage", "cpuacct.usage"),
                          ("user", "cpuacct.usage_user"),
                          ("system", "cpuacct.usage_sys")):
            _put(out, key, _try(lambda p: int(_fs.read(p)),
                                os.path.join(cpuacct_path, name)))
    if cpu_path:
        stat = _try(_fs.read_keyed, os.path.join(cpu_path, "cpu.stat")) or {}
        for key, name in (("periods", "nr_periods"),
                          ("throttled_periods", "nr_throttled"),
                          ("throttled_time", "throttled_time")):
            _put(out, key, stat.get(name))
    return out


def stats_memory(path: str) -> Stats:
    """memory.usage_in_bytes, limit_in_bytes, max_usage_in_bytes,
    failcnt (times the limit was hit) and oom_kill from memory.oom_control."""
    out: Stats = {}
    for key, name in (("usage", "memory.usage_in_bytes"),
                      ("limit", "memory.limit_in_bytes"),
                      ("max_usage", "memory.max_usage_in_bytes"),
                      ("failcnt", "memory.failcnt"),
                      ("swap_limit", "memory.memsw.limit_in_bytes")):
        _put(out, key, _try(lambda p: int(_fs.read(p)),
                            os.path.join(path, name)))
    oom = _try(_fs.read_keyed, os.path.join(path, "memory.oom_control")) or {}
    _put(out, "oom_kill", oom.get("oom_kill"))
    return out


def stats_pids(path: str) -> Stats:
    """pids.current and pids.max (None for "max")."""
    out: Stats = {}
    _put(out, "current", _try(lambda p: int(_fs.read(p)),
                              os.path.join(path, "pids.current")))
    limit = _try(_fs.read, os.path.join(path, "pids.max"))
    if limit is not None:
        out["limit"] = None if limit == "max" else int(limit)
    return out
