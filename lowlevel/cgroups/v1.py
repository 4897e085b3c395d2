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
from .resources import device_line, hugepage_sizes, pids_max, rdma_line, skip

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from ._fs import Stats
    from .resources import Resources, Skipped

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


def set_cpuset(path: str, res: Resources) -> Skipped:
    """cpuset.cpus / cpuset.mems: the CPUs and memory nodes allowed
    (same files in v2)."""
    if res.cpuset_cpus is not None:
        _fs.write(os.path.join(path, "cpuset.cpus"), res.cpuset_cpus)
    if res.cpuset_mems is not None:
        _fs.write(os.path.join(path, "cpuset.mems"), res.cpuset_mems)
    return []

# ---------------------------------------------------------------- pids


def set_pids(path: str, res: Resources) -> Skipped:
    """pids.max: fork() and clone() fail with EAGAIN once the cgroup holds
    that many tasks (same file in v2)."""
    if res.pids_limit is not None:
        _fs.write(os.path.join(path, "pids.max"), pids_max(res.pids_limit))
    return []

# ---------------------------------------------------------------- memory


def set_memory(path: str, res: Resources) -> Skipped:
    """memory.limit_in_bytes (RAM), memory.memsw.limit_in_bytes (RAM plus
    swap, present only with swap accounting) and memory.soft_limit_in_bytes
    (reclaimed down to under pressure); memory.kmem.tcp.limit_in_bytes
    (socket buffers) where the kernel still has it, and memory.oom_control
    1 (the OOM killer off: tasks wait at the limit instead).  A kernel
    memory limit (memory_kernel) is never written, as runc 1.1.

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
    skipped: Skipped = []
    if res.memory_kernel is not None:
        skipped.append(skip(path, "memory_kernel", "kernel memory limits are "
                            "ignored (deprecated by the kernel; runc ignores them too)"))
    if res.memory_kernel_tcp is not None:
        tcp_file = os.path.join(path, "memory.kmem.tcp.limit_in_bytes")
        if os.path.exists(tcp_file):
            _fs.write(tcp_file, res.memory_kernel_tcp)
        else:
            skipped.append(skip(path, "memory_kernel_tcp", "this kernel has no "
                                "memory.kmem.tcp.limit_in_bytes (no kernel memory accounting)"))
    if res.memory_disable_oom_killer:
        _fs.write(os.path.join(path, "memory.oom_control"), 1)
    return skipped

# ---------------------------------------------------------------- cpu


def set_cpu(path: str, res: Resources) -> Skipped:
    """cpu.shares (relative weight), cpu.cfs_period_us and cpu.cfs_quota_us
    (at most quota microseconds of CPU time per period), cpu.cfs_burst_us
    (unused quota that may be spent later; left out where the kernel has no
    such file, as runc), cpu.idle (1: the cgroup runs as SCHED_IDLE) and
    cpu.rt_period_us / cpu.rt_runtime_us (real-time CPU time per period)."""
    skipped: Skipped = []
    if res.cpu_shares is not None:
        _fs.write(os.path.join(path, "cpu.shares"), res.cpu_shares)
    period_file = os.path.join(path, "cpu.cfs_period_us")
    burst_file = os.path.join(path, "cpu.cfs_burst_us")
    # A shorter period or a larger burst can be refused (EINVAL) as long
    # as the old quota stands (its ratio to the new period exceeds the
    # parent's, or the burst exceeds it): write the quota, then try again.
    period_pending = res.cpu_period is not None and not _write_or_later(
        period_file, res.cpu_period, res.cpu_quota)
    burst_pending = False
    if res.cpu_burst is not None:
        if os.path.exists(burst_file):
            burst_pending = not _write_or_later(burst_file, res.cpu_burst,
                                                    res.cpu_quota)
        else:
            skipped.append(skip(path, "cpu_burst", "this kernel has no cpu.cfs_burst_us"))
    if res.cpu_quota is not None:
        _fs.write(os.path.join(path, "cpu.cfs_quota_us"), res.cpu_quota)
        if period_pending:
            _fs.write(period_file, res.cpu_period)
        if burst_pending:
            _fs.write(burst_file, res.cpu_burst)
    if res.cpu_idle is not None:
        idle_file = os.path.join(path, "cpu.idle")
        if res.cpu_idle == 0 and not os.path.exists(idle_file):
            skipped.append(skip(path, "cpu_idle", "this kernel has no cpu.idle "
                                "(0, the default, is what it does anyway)"))
        else:
            _fs.write(idle_file, res.cpu_idle)
    set_rt(path, res)
    return skipped


def _write_or_later(file: str, value: int, other: int | None) -> bool:
    """Write ``value``; False when the kernel refused it (EINVAL) while the
    value it depends on (``other``: the quota, the rt runtime) is about to
    change too, after which it is to be written again."""
    try:
        _fs.write(file, value)
    except OSError as exc:
        if exc.errno != errno.EINVAL or other is None:
            raise
        return False
    return True


def set_rt(path: str, res: Resources) -> None:
    """cpu.rt_period_us and cpu.rt_runtime_us: the real-time tasks of the
    cgroup get at most runtime microseconds each period (-1: no limit).
    The kernel checks that the runtime fits in the period and in what the
    parent cgroup's own cpu.rt_runtime_us leaves to its children (0 in a
    new cgroup), so a period refused first is written again after the
    runtime."""
    period_file = os.path.join(path, "cpu.rt_period_us")
    pending = res.cpu_rt_period is not None and not _write_or_later(
        period_file, res.cpu_rt_period, res.cpu_rt_runtime)
    if res.cpu_rt_runtime is not None:
        runtime_file = os.path.join(path, "cpu.rt_runtime_us")
        try:
            _fs.write(runtime_file, res.cpu_rt_runtime)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            parent_file = os.path.join(os.path.dirname(path), "cpu.rt_runtime_us")
            parent = _try(_fs.read, parent_file)
            raise error(errno.EINVAL, f"write '{res.cpu_rt_runtime}' on {runtime_file} "
                        "(the runtime must fit in the period and in what the parent's "
                        f"{parent_file}, {parent}, leaves to its children)") from None
        if pending:
            _fs.write(period_file, res.cpu_rt_period)

# ---------------------------------------------------------------- blkio

#: (field, v1 file part, v2 io.max key) of each throttle
THROTTLES = (("blkio_throttle_read_bps", "read_bps", "rbps"),
              ("blkio_throttle_write_bps", "write_bps", "wbps"),
              ("blkio_throttle_read_iops", "read_iops", "riops"),
              ("blkio_throttle_write_iops", "write_iops", "wiops"))


def write_device_line(file: str, line: str, missing: str) -> None:
    """Write one per-device line.  The kernel answers ENODEV for a device
    it does not have; that is reported as ENXIO with ``missing`` (what is
    not there), not as a missing controller."""
    try:
        _fs.write(file, line)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise error(errno.ENXIO, f"write {line!r} on {file} ({missing})") from None
        if exc.errno == errno.EOPNOTSUPP and ".bfq." in file:
            raise error(errno.EOPNOTSUPP, f"write {line!r} on {file} (per-device "
                        "weights need the bfq I/O scheduler on that disk)") from None
        raise


def _no_disk(major: int, minor: int) -> str:
    return (f"no block device {major}:{minor} here; limits take a whole disk, "
            "not a partition")


def set_blkio(path: str, res: Resources) -> Skipped:
    """blkio.weight (or blkio.bfq.weight when there is no CFQ, as runc),
    blkio.leaf_weight, per-device weights ("MAJ:MIN weight" in
    blkio.weight_device or blkio.bfq.weight_device, and
    blkio.leaf_weight_device) and the throttles ("MAJ:MIN rate" in
    blkio.throttle.{read,write}_{bps,iops}_device; rate 0 removes it)."""
    if os.path.exists(os.path.join(path, "blkio.weight")):
        weight_name, device_name = "blkio.weight", "blkio.weight_device"
    else:
        weight_name, device_name = "blkio.bfq.weight", "blkio.bfq.weight_device"
    if res.blkio_weight is not None:
        _fs.write(os.path.join(path, weight_name), res.blkio_weight)
    if res.blkio_leaf_weight is not None:
        _fs.write(os.path.join(path, "blkio.leaf_weight"), res.blkio_leaf_weight)
    for major, minor, weight, leaf in res.blkio_weight_device or ():
        if weight is not None:
            write_device_line(os.path.join(path, device_name),
                              device_line(major, minor, weight), _no_disk(major, minor))
        if leaf is not None:
            write_device_line(os.path.join(path, "blkio.leaf_weight_device"),
                              device_line(major, minor, leaf), _no_disk(major, minor))
    for field, name, _ in THROTTLES:
        for major, minor, rate in getattr(res, field) or ():
            write_device_line(os.path.join(path, f"blkio.throttle.{name}_device"),
                              device_line(major, minor, rate), _no_disk(major, minor))
    return []

# ---------------------------------------------------------------- hugetlb


def set_hugetlb_files(path: str, res: Resources, suffix: str) -> None:
    """hugetlb.<size><suffix> (the limit on faulted pages) and
    hugetlb.<size>.rsvd<suffix> (on reserved ones, where the kernel has
    it), both to the same bytes, as runc.  A size the kernel does not have
    (see /sys/kernel/mm/hugepages) is EINVAL naming the sizes it has."""
    sizes: list[str] | None = None
    for size, limit in res.hugetlb_limits or ():
        if sizes is None:
            sizes = hugepage_sizes()
        if size not in sizes:
            raise error(errno.EINVAL, f"set a {size} huge page limit on {path} (this "
                        f"kernel's huge page sizes: {', '.join(sizes) or 'none'})")
        _fs.write(os.path.join(path, f"hugetlb.{size}{suffix}"), limit)
        rsvd = os.path.join(path, f"hugetlb.{size}.rsvd{suffix}")
        if os.path.exists(rsvd):
            _fs.write(rsvd, limit)


def set_hugetlb(path: str, res: Resources) -> Skipped:
    """hugetlb.<size>.limit_in_bytes and .rsvd.limit_in_bytes (bytes)."""
    set_hugetlb_files(path, res, ".limit_in_bytes")
    return []

# ---------------------------------------------------------------- net_cls, net_prio


def set_net_cls(path: str, res: Resources) -> Skipped:
    """net_cls.classid: the class id (0xAAAABBBB: major AAAA, minor BBBB)
    the container's packets carry, for tc and iptables to match."""
    if res.net_cls_classid is not None:
        _fs.write(os.path.join(path, "net_cls.classid"), res.net_cls_classid)
    return []


def set_net_prio(path: str, res: Resources) -> Skipped:
    """net_prio.ifpriomap, one "ifname priority" line per interface (the
    priority of the container's packets on it).  The kernel looks the name
    up in the writer's network namespace (as with runc, the host's)."""
    file = os.path.join(path, "net_prio.ifpriomap")
    for name, prio in res.net_prio_ifpriomap or ():
        try:
            _fs.write(file, f"{name} {prio}")
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise
            raise error(errno.ENXIO, f"write '{name} {prio}' on {file} (no network "
                        f"interface {name} in barerun's network namespace)") from None
    return []

# ---------------------------------------------------------------- rdma


def set_rdma(path: str, res: Resources) -> Skipped:
    """rdma.max, one "device hca_handle=N hca_object=N" line per RDMA
    device (same file in v2)."""
    file = os.path.join(path, "rdma.max")
    for device, handles, objects in res.rdma_limits or ():
        write_device_line(file, rdma_line(device, handles, objects),
                          f"no RDMA device {device} here")
    return []

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
