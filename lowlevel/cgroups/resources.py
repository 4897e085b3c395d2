"""Resource limits as plain values, and the pure conversions to v2 files.

``Resources`` uses the cgroup v1 / OCI units (bytes, cpu shares,
microseconds); None means "leave unchanged".  cgroup v2 names some of
these differently; the conversions below are the ones runc uses, so a
container gets the same limits from barerun as from runc.

Which file each field goes to:

=================== ============================ =====================
field               cgroup v1 file               cgroup v2 file
=================== ============================ =====================
memory_limit        memory.limit_in_bytes        memory.max
memory_reservation  memory.soft_limit_in_bytes   memory.low
memory_swap         memory.memsw.limit_in_bytes  memory.swap.max
                    (memory + swap)              (swap only)
cpu_shares          cpu.shares                   cpu.weight
cpu_quota           cpu.cfs_quota_us             cpu.max "quota period"
cpu_period          cpu.cfs_period_us            cpu.max
cpuset_cpus         cpuset.cpus                  cpuset.cpus
cpuset_mems         cpuset.mems                  cpuset.mems
pids_limit          pids.max                     pids.max
=================== ============================ =====================
"""

from __future__ import annotations

import errno

from ..record import Record
from ..tracing import error

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import ClassVar


class Resources(Record):
    """Limits for one cgroup; None leaves a setting as it is.

    memory_* are bytes (-1: unlimited); memory_swap is memory *plus* swap,
    as in OCI and cgroup v1.  cpu_shares is a relative weight (default
    1024); cpu_quota and cpu_period are microseconds (quota -1: no limit).
    cpuset_* are kernel list strings ("0-2,4").  pids_limit <= 0 means no
    limit.  memory_swappiness (0-100) is v1 only: cgroup v2 has no such
    file, and asking for it there is an error.
    """
    _fields: ClassVar[tuple[str, ...]] = (
        "memory_limit", "memory_reservation", "memory_swap", "memory_swappiness",
        "cpu_shares", "cpu_quota", "cpu_period", "cpuset_cpus", "cpuset_mems", "pids_limit")
    _defaults = dict.fromkeys(_fields)
    __slots__ = _fields
    FIELDS = _fields  # the settings, for callers

    memory_limit: int | None
    memory_reservation: int | None
    memory_swap: int | None
    memory_swappiness: int | None
    cpu_shares: int | None
    cpu_quota: int | None
    cpu_period: int | None
    cpuset_cpus: str | None
    cpuset_mems: str | None
    pids_limit: int | None

    def wants(self, controller: str) -> bool:
        """True when any field for ``controller`` is set."""
        return any(getattr(self, f) is not None for f in _FIELDS[controller])

    def only(self, controller: str) -> Resources:
        """A copy with the fields of ``controller`` alone (so a caller can
        tell which controller a failed write belonged to)."""
        return Resources(**{f: getattr(self, f) for f in _FIELDS[controller]})


_FIELDS: dict[str, tuple[str, ...]] = {
    "memory": ("memory_limit", "memory_reservation", "memory_swap", "memory_swappiness"),
    "cpu": ("cpu_shares", "cpu_quota", "cpu_period"),
    "cpuset": ("cpuset_cpus", "cpuset_mems"),
    "pids": ("pids_limit",),
}
CONTROLLERS = tuple(_FIELDS)


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
