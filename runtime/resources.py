"""A container's cgroup: where it is, and the spec's limits and device
rules written into it (create, restore and update share this).

Errors name the spec field behind the write that failed
(``linux.resources.memory: ...``, ``linux.resources.blockIO.
throttleReadBpsDevice[1]: ...``); a controller or file this host does not
offer is reported as the host's limit, not as a mistake in the spec.  A
setting the host cannot apply where runc ignores it is left out and
traced; kernel memory limits, which runc warns about, also get a warning.
"""

import errno
import json
import os

from lowlevel import cgroups
from lowlevel.tracing import trace

from .errors import ContainerError, InvalidSpec
from .store import write_file

# What every container may use whatever its spec says, as runc allows:
# mknod of any node (access is what is checked), and the OCI default devices.
DEFAULT_DEVICE_RULES = (
    (True, "c", None, None, "m"), (True, "b", None, None, "m"),
    (True, "c", 1, 3, "rwm"), (True, "c", 1, 5, "rwm"), (True, "c", 1, 7, "rwm"),
    (True, "c", 1, 8, "rwm"), (True, "c", 1, 9, "rwm"), (True, "c", 5, 0, "rwm"),
    (True, "c", 5, 1, "rwm"), (True, "c", 5, 2, "rwm"), (True, "c", 136, None, "rwm"),
    (True, "c", 10, 200, "rwm"),
)

# lowlevel field -> the spec field it comes from (under linux.resources).
# The fields of one controller with the same spec field are written
# together (the kernel checks some against others: limit and swap, quota,
# period and burst, rt runtime and period); a list is written item by item,
# each named by its index, or by its key for rdma and unified.
_SPEC_FIELD = {
    "memory_limit": "memory", "memory_reservation": "memory", "memory_swap": "memory",
    "memory_swappiness": "memory", "memory_kernel": "memory.kernel",
    "memory_kernel_tcp": "memory.kernelTCP",
    "memory_disable_oom_killer": "memory.disableOOMKiller",
    "cpu_shares": "cpu", "cpu_quota": "cpu", "cpu_period": "cpu", "cpu_burst": "cpu",
    "cpu_idle": "cpu.idle", "cpu_rt_runtime": "cpu.realtimeRuntime",
    "cpu_rt_period": "cpu.realtimeRuntime",
    "cpuset_cpus": "cpu", "cpuset_mems": "cpu", "pids_limit": "pids",
    "blkio_weight": "blockIO.weight", "blkio_leaf_weight": "blockIO.leafWeight",
    "blkio_weight_device": "blockIO.weightDevice",
    "blkio_throttle_read_bps": "blockIO.throttleReadBpsDevice",
    "blkio_throttle_write_bps": "blockIO.throttleWriteBpsDevice",
    "blkio_throttle_read_iops": "blockIO.throttleReadIOPSDevice",
    "blkio_throttle_write_iops": "blockIO.throttleWriteIOPSDevice",
    "hugetlb_limits": "hugepageLimits", "net_cls_classid": "network.classID",
    "net_prio_ifpriomap": "network.priorities", "rdma_limits": "rdma", "unified": "unified",
}
_KEYED = ("rdma_limits", "unified")
# left out with a warning, not only a trace: runc warns about these
_WARN = ("memory_kernel", "memory_kernel_tcp")


def cgroup_path(spec, cid):
    """linux.cgroupsPath, or barerun/<id>."""
    return spec.cgroups_path or f"barerun/{cid}"


def to_cgroup_resources(res):
    """The lowlevel Resources for a spec Resources (devices aside)."""
    return cgroups.Resources(**{f: getattr(res, f) for f in cgroups.Resources.FIELDS})


def steps(cres):
    """(controller, spec field, Resources) for each write group of
    ``cres``, in the controllers' order: first the scalar groups of a
    controller, then its lists item by item."""
    for controller in cgroups.resources.CONTROLLERS:
        if not cres.wants(controller):
            continue
        groups: dict[str, dict] = {}
        items = []
        for f in cgroups.resources.CONTROLLER_FIELDS[controller]:
            value = getattr(cres, f)
            if value is None:
                continue
            name = _SPEC_FIELD[f]
            if isinstance(value, list):
                for i, item in enumerate(value):
                    where = f".{item[0]}" if f in _KEYED else f"[{i}]"
                    items.append((name + where, cgroups.Resources(**{f: [item]})))
            else:
                if f == "cpu_rt_period" and cres.cpu_rt_runtime is None:
                    name = "cpu.realtimePeriod"
                groups.setdefault(name, {})[f] = value
        for name, values in groups.items():
            yield controller, name, cgroups.Resources(**values)
        for name, part in items:
            yield controller, name, part


def device_rules(devices):
    """Deny everything, then the spec's rules (linux.resources.devices) in
    order, then the OCI default devices.  No rules in the spec means
    deny-all plus the defaults, never "everything allowed".  A node listed
    in linux.devices gets no rule of its own: it is made in /dev, and the
    rules alone say whether it may be used (a spec that denies it keeps it
    denied)."""
    return [(False, "a", None, None, "rwm"), *devices, *DEFAULT_DEVICE_RULES]


class DevicePrograms:
    """The BPF device programs barerun loaded, by rules, in PATH ({key:
    [id, tag]}; program ids are the kernel's, one cache for every --root,
    outside the state roots, which hold containers only): a container with
    the same rules as one before it (the defaults, usually) gets the
    program already in the kernel attached, not a new one loaded and
    verified (~1 ms of every create).  A stale or reused id is found out
    by its tag (devices.attach)."""

    PATH = "/run/barerun-device-programs.json"
    LIMIT = 64  # distinct rule sets remembered

    def __init__(self):
        self.path = self.PATH
        try:
            with open(self.path) as f:
                self.known = json.load(f)
            if not isinstance(self.known, dict):
                self.known = {}
        except (OSError, ValueError):
            self.known = {}
        self._before = dict(self.known)

    def save(self):
        if self.known == self._before:
            return
        while len(self.known) > self.LIMIT:
            self.known.pop(next(iter(self.known)))
        try:
            write_file(self.path, json.dumps(self.known).encode(), 0o600)
        except OSError:
            pass  # only a cache: the next create loads its program again


def apply(cg, res, fld="linux.resources", devices=True):
    """Write the limits of ``res`` (a spec Resources) and, with
    ``devices``, its device rules (deny-all + its rules + the defaults)
    into ``cg``.  Raises InvalidSpec naming the field whose value the
    kernel refused, ContainerError when the host lacks the controller or
    file (where runc fails too); what runc ignores is left out, traced,
    and for kernel memory limits warned about."""
    cres = to_cgroup_resources(res)
    if cres.memory_kernel is not None:
        # never written anywhere, whatever the host has
        _left_out(cg, f"{fld}.memory.kernel", "memory_kernel",
                  "kernel memory limits are ignored (deprecated by the kernel, "
                  "and ignored by runc too)")
        cres.memory_kernel = None
    if cres.hugetlb_limits:
        _check_page_sizes(cres.hugetlb_limits, f"{fld}.hugepageLimits")
    for controller, name, part in steps(cres):
        trace("step", what=f"{fld}.{name}", cgroup=cg.rel)
        try:
            skipped = cg.set_resources(part)
        except OSError as exc:
            raise _error(exc, f"{fld}.{name}", controller) from None
        for field, why in skipped:
            _left_out(cg, f"{fld}.{name}", field, why)
    if devices:
        trace("step", what=f"{fld}.devices", cgroup=cg.rel)
        programs = DevicePrograms()
        try:
            cg.set_devices(device_rules(res.devices), programs.known)
        except OSError as exc:
            raise _error(exc, f"{fld}.devices", "devices") from None
        programs.save()


def _left_out(cg, name, field, why):
    trace("ignored", what=name, cgroup=cg.rel, why=why)
    if field in _WARN:
        from .hooks import warn
        warn(f"{name}: {why}")


def _check_page_sizes(limits, fld):
    """Each pageSize must be one this kernel has (/sys/kernel/mm/hugepages)."""
    try:
        sizes = cgroups.resources.hugepage_sizes()
    except OSError as exc:
        raise ContainerError(f"{fld}: {os_text(exc)}") from None
    for i, (size, _) in enumerate(limits):
        if size not in sizes:
            raise InvalidSpec(f"{fld}[{i}].pageSize", f"this host has no {size} huge pages "
                              f"(it has: {', '.join(sizes) or 'none'}; see "
                              f"{cgroups.resources.HUGEPAGES})")


def _error(exc, field, controller):
    """The error for a failed write: the host's limit (ContainerError) when
    the controller or the file is missing, else the spec's (InvalidSpec)."""
    text = os_text(exc)
    if exc.errno == errno.ENODEV:
        what = ("cgroup v2 (unified) hierarchy" if controller == "unified"
                else f"{controller} controller")
        return ContainerError(f"{field}: this host has no usable {what} "
                              f"for the container's cgroup ({text})")
    if exc.errno == errno.EOPNOTSUPP:
        return ContainerError(f"{field}: this host cannot apply it ({text})")
    if exc.errno == errno.ENOENT:
        # the lowlevel messages name the file: "<op> on <path>: <strerror>"
        import re
        found = re.search(r" on (/[^\s:]+)", text)
        if found is None:
            return ContainerError(f"{field}: {text}")
        path = found.group(1)
        if os.path.isdir(os.path.dirname(path)):
            return ContainerError(f"{field}: this host has no {os.path.basename(path)} "
                                  f"for the container's cgroup ({text})")
        return ContainerError(f"{field}: the container's cgroup is gone ({text})")
    return InvalidSpec(field, text)


def os_text(exc):
    """An OSError's own message ("write '1' on /sys/...: Invalid argument"),
    never Python's "[Errno N]" form."""
    if exc.strerror:
        return exc.strerror
    return os.strerror(exc.errno) if exc.errno else "unknown error"
