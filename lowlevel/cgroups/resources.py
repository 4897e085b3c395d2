"""Resource limits as plain values, and the pure conversions to v2 files.

``Resources`` uses the cgroup v1 / OCI units (bytes, cpu shares,
microseconds); None means "leave unchanged".  cgroup v2 names some of
these differently; the conversions below are the ones runc uses, so a
container gets the same limits from barerun as from runc.

Which file each field goes to ("skip": not written, and reported back by
``Cgroup.set_resources`` as left out, as runc ignores it there):

========================= ================================ ============================
field                     cgroup v1 file                   cgroup v2 file
========================= ================================ ============================
memory_limit              memory.limit_in_bytes            memory.max
memory_reservation        memory.soft_limit_in_bytes       memory.low
memory_swap               memory.memsw.limit_in_bytes      memory.swap.max
                          (memory + swap)                  (swap only)
memory_swappiness         memory.swappiness                (error: no such file)
memory_kernel             skip (runc 1.1 ignores kernel    skip
                          memory limits)
memory_kernel_tcp         memory.kmem.tcp.limit_in_bytes   skip
                          (skip where it does not exist)
memory_disable_oom_killer memory.oom_control "1"           skip
cpu_shares                cpu.shares                       cpu.weight (converted)
cpu_quota                 cpu.cfs_quota_us                 cpu.max "quota period"
cpu_period                cpu.cfs_period_us                cpu.max
cpu_burst                 cpu.cfs_burst_us (skip where     cpu.max.burst
                          it does not exist)
cpu_idle                  cpu.idle                         cpu.idle
cpu_rt_runtime            cpu.rt_runtime_us                skip
cpu_rt_period             cpu.rt_period_us                 skip
cpuset_cpus               cpuset.cpus                      cpuset.cpus
cpuset_mems               cpuset.mems                      cpuset.mems
pids_limit                pids.max                         pids.max
blkio_weight              blkio.weight, else               io.bfq.weight, else
                          blkio.bfq.weight                 io.weight (converted)
blkio_leaf_weight         blkio.leaf_weight                skip
blkio_weight_device       blkio.weight_device, else        io.bfq.weight "MAJ:MIN W"
                          blkio.bfq.weight_device;         (skip where bfq has no
                          leaf: blkio.leaf_weight_device   per-device weights)
blkio_throttle_read_bps   blkio.throttle.read_bps_device   io.max "MAJ:MIN rbps=N"
blkio_throttle_write_bps  blkio.throttle.write_bps_device  io.max "MAJ:MIN wbps=N"
blkio_throttle_read_iops  blkio.throttle.read_iops_device  io.max "MAJ:MIN riops=N"
blkio_throttle_write_iops blkio.throttle.write_iops_device io.max "MAJ:MIN wiops=N"
hugetlb_limits            hugetlb.<size>.limit_in_bytes    hugetlb.<size>.max
                          (and .rsvd. where it exists)     (and .rsvd. where it exists)
net_cls_classid           net_cls.classid                  skip (no such controller)
net_prio_ifpriomap        net_prio.ifpriomap "ifname N"    skip (no such controller)
rdma_limits               rdma.max "dev hca_handle=N       rdma.max (same)
                          hca_object=N"
unified                   (not v1: the v2 directory)       <key>: value, as given
========================= ================================ ============================

net_cls and net_prio exist in v1 only: on a pure v2 host they are skipped
(as runc), on a v1 or hybrid host without their hierarchy they are an
error.  The controller of each field is in ``CONTROLLER_FIELDS``; v2 calls
the blkio controller "io" (``V2_NAMES``).
"""

from __future__ import annotations

import errno
import os

from ..record import Record
from ..tracing import error, trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import ClassVar, TypeAlias

    #: what a set_* function returns: the fields it left out, each with why
    Skipped: TypeAlias = list[tuple[str, str]]


class Resources(Record):
    """Limits for one cgroup; None leaves a setting as it is.

    memory_* are bytes (-1: unlimited); memory_swap is memory *plus* swap,
    as in OCI and cgroup v1.  cpu_shares is a relative weight (default
    1024); cpu_quota and cpu_period are microseconds (quota -1: no limit).
    cpuset_* are kernel list strings ("0-2,4").  pids_limit <= 0 means no
    limit.  memory_swappiness (0-100) is v1 only: cgroup v2 has no such
    file, and asking for it there is an error.

    memory_kernel is never written (kernel memory limits are deprecated and
    runc 1.1 ignores them); memory_kernel_tcp is bytes;
    memory_disable_oom_killer True stops the OOM killer (v1).  cpu_burst
    (microseconds a cgroup may run over its quota), cpu_idle (0 or 1: the
    SCHED_IDLE policy for the whole cgroup), cpu_rt_runtime / cpu_rt_period
    (microseconds of real-time CPU per period; runtime -1: no limit).

    blkio_weight / blkio_leaf_weight are 10-1000 (v1 units);
    blkio_weight_device holds (major, minor, weight, leaf_weight) tuples,
    either weight None; each blkio_throttle_* holds (major, minor, rate)
    tuples (bytes or I/Os per second; 0 removes the limit).
    hugetlb_limits holds (page size as the kernel names it, "2MB", bytes);
    net_cls_classid is the 32-bit class id; net_prio_ifpriomap holds
    (interface, priority); rdma_limits holds (device, hca_handles,
    hca_objects), either count None; unified holds (file name, value)
    written as given into the cgroup's v2 directory.
    """
    _fields: ClassVar[tuple[str, ...]] = (
        "memory_limit", "memory_reservation", "memory_swap", "memory_swappiness",
        "memory_kernel", "memory_kernel_tcp", "memory_disable_oom_killer",
        "cpu_shares", "cpu_quota", "cpu_period", "cpu_burst", "cpu_idle",
        "cpu_rt_runtime", "cpu_rt_period", "cpuset_cpus", "cpuset_mems", "pids_limit",
        "blkio_weight", "blkio_leaf_weight", "blkio_weight_device",
        "blkio_throttle_read_bps", "blkio_throttle_write_bps",
        "blkio_throttle_read_iops", "blkio_throttle_write_iops",
        "hugetlb_limits", "net_cls_classid", "net_prio_ifpriomap", "rdma_limits",
        "unified")
    _defaults = dict.fromkeys(_fields)
    __slots__ = _fields
    FIELDS = _fields  # the settings, for callers

    memory_limit: int | None
    memory_reservation: int | None
    memory_swap: int | None
    memory_swappiness: int | None
    memory_kernel: int | None
    memory_kernel_tcp: int | None
    memory_disable_oom_killer: bool | None
    cpu_shares: int | None
    cpu_quota: int | None
    cpu_period: int | None
    cpu_burst: int | None
    cpu_idle: int | None
    cpu_rt_runtime: int | None
    cpu_rt_period: int | None
    cpuset_cpus: str | None
    cpuset_mems: str | None
    pids_limit: int | None
    blkio_weight: int | None
    blkio_leaf_weight: int | None
    blkio_weight_device: list[tuple[int, int, int | None, int | None]] | None
    blkio_throttle_read_bps: list[tuple[int, int, int]] | None
    blkio_throttle_write_bps: list[tuple[int, int, int]] | None
    blkio_throttle_read_iops: list[tuple[int, int, int]] | None
    blkio_throttle_write_iops: list[tuple[int, int, int]] | None
    hugetlb_limits: list[tuple[str, int]] | None
    net_cls_classid: int | None
    net_prio_ifpriomap: list[tuple[str, int]] | None
    rdma_limits: list[tuple[str, int | None, int | None]] | None
    unified: list[tuple[str, str]] | None

    def wants(self, controller: str) -> bool:
        """True when any field for ``controller`` is set."""
        return any(getattr(self, f) is not None for f in _FIELDS[controller])

    def only(self, controller: str) -> Resources:
        """A copy with the fields of ``controller`` alone (so a caller can
        tell which controller a failed write belonged to)."""
        return Resources(**{f: getattr(self, f) for f in _FIELDS[controller]})


_FIELDS: dict[str, tuple[str, ...]] = {
    "memory": ("memory_limit", "memory_reservation", "memory_swap", "memory_swappiness",
               "memory_kernel", "memory_kernel_tcp", "memory_disable_oom_killer"),
    "cpu": ("cpu_shares", "cpu_quota", "cpu_period", "cpu_burst", "cpu_idle",
            "cpu_rt_runtime", "cpu_rt_period"),
    "cpuset": ("cpuset_cpus", "cpuset_mems"),
    "pids": ("pids_limit",),
    "blkio": ("blkio_weight", "blkio_leaf_weight", "blkio_weight_device",
              "blkio_throttle_read_bps", "blkio_throttle_write_bps",
              "blkio_throttle_read_iops", "blkio_throttle_write_iops"),
    "hugetlb": ("hugetlb_limits",),
    "net_cls": ("net_cls_classid",),
    "net_prio": ("net_prio_ifpriomap",),
    "rdma": ("rdma_limits",),
    # not a controller: files written as given into the v2 directory, last
    # (so they win over the same setting made from another field, as runc)
    "unified": ("unified",),
}
CONTROLLERS = tuple(_FIELDS)
CONTROLLER_FIELDS = _FIELDS  # controller -> its fields, for callers
#: the controllers that exist in cgroup v1 only (a v2 host has no such files)
V1_ONLY = ("net_cls", "net_prio")
#: controller names that differ in cgroup v2
V2_NAMES = {"blkio": "io"}


def skip(path: str, field: str, why: str) -> tuple[str, str]:
    """Report (trace) a setting that is left out in the cgroup ``path``, and
    return (field, why) for the caller's list of what was not applied."""
    trace("cgroup.skip", path=path, field=field, why=why)
    return field, why


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] to cpu.weight [1, 10000] (runc's linear map:
    2 -> 1, 1024 -> 39, 262144 -> 10000)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def max_or_number(value: int | None) -> str:
    """v2 files write "max" for no limit; we take -1 for that."""
    return "max" if value is None or value < 0 else str(value)


def pids_max(limit: int) -> str:
    """pids.max in both versions: a positive number, or "max"."""
    return str(limit) if limit > 0 else "max"


def swap_v2(memory_swap: int | None, memory_limit: int | None, path: str) -> int | None:
    """memory.swap.max from the OCI memory+swap total (runc's conversion):
    swap alone is total minus memory; -1 stays unlimited.  Returns None
    when nothing is to be written."""
    if memory_swap is None:
        # unlimited memory without a swap value means unlimited swap too
        return -1 if memory_limit == -1 else None
    if memory_swap == -1:
        return -1
    if memory_limit is None or memory_limit == -1:
        raise error(errno.EINVAL, f"convert memory_swap={memory_swap} "
                    "without a memory_limit for " + path)
    if memory_swap < memory_limit:
        raise error(errno.EINVAL, f"convert memory_swap={memory_swap} below "
                    f"memory_limit={memory_limit} for " + path)
    return memory_swap - memory_limit


def cpu_max(quota: int | None, period: int | None, current_quota: str = "max") -> str:
    """cpu.max is "$QUOTA $PERIOD" ("max" for no quota).  The quota always
    has to be written, so without one the current quota is written back;
    without a period the kernel keeps its current period."""
    if quota is None:
        text = current_quota
    else:
        text = str(quota) if quota > 0 else "max"
    if period is not None:
        text += f" {period}"
    return text


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] to io.weight [1, 10000] (runc's linear map:
    10 -> 1, 100 -> 910, 500 -> 4950, 1000 -> 10000)."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def device_line(major: int, minor: int, value: int) -> str:
    """"MAJ:MIN VALUE", the v1 per-device line (weights, throttles; a
    throttle rate of 0 removes the device's limit)."""
    return f"{major}:{minor} {value}"


def io_max_line(major: int, minor: int, key: str, rate: int) -> str:
    """An io.max line, "MAJ:MIN rbps=N" (key rbps, wbps, riops or wiops).
    A rate of 0 is "max": what 0 means in v1 (no limit); the v2 kernel
    itself refuses 0 (ERANGE)."""
    return f"{major}:{minor} {key}={rate if rate > 0 else 'max'}"


def rdma_line(device: str, handles: int | None, objects: int | None) -> str:
    """An rdma.max line: "mlx5_1 hca_handle=3 hca_object=10000" (a count
    left None is not written, so the kernel keeps it)."""
    text = device
    if handles is not None:
        text += f" hca_handle={handles}"
    if objects is not None:
        text += f" hca_object={objects}"
    return text


def page_size_name(kib: int) -> str:
    """A huge page size in KiB as the hugetlb files name it: 2048 -> "2MB",
    1048576 -> "1GB", 64 -> "64KB" (the kernel's mem_fmt: the largest unit
    the size reaches)."""
    if kib >= 1 << 20:
        return f"{kib >> 20}GB"
    if kib >= 1 << 10:
        return f"{kib >> 10}MB"
    return f"{kib}KB"


HUGEPAGES = "/sys/kernel/mm/hugepages"


def hugepage_sizes(where: str = HUGEPAGES) -> list[str]:
    """The huge page sizes this kernel has, named as the hugetlb files name
    them ("2MB", "1GB"), from the hugepages-<N>kB directories in
    /sys/kernel/mm/hugepages; [] when there are none."""
    try:
        names = os.listdir(where)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise error(exc.errno, f"list on {where}") from None
    out = []
    for name in names:
        if name.startswith("hugepages-") and name.endswith("kB"):
            digits = name[len("hugepages-"):-2]
            if digits.isdigit():
                out.append((int(digits), page_size_name(int(digits))))
    return [n for _, n in sorted(out)]
