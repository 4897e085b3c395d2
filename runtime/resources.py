"""A container's cgroup: where it is, and the spec's limits and device
rules written into it (create, restore and update share this).

Errors name the spec field behind the write that failed
(``linux.resources.memory: ...``); a controller this host does not offer
is reported as the host's limit, not as a mistake in the spec.
"""

import errno

from lowlevel import cgroups
from lowlevel.tracing import trace

from .errors import ContainerError, InvalidSpec

# What every container may use whatever its spec says, as runc allows:
# mknod of any node (access is what is checked), and the OCI default devices.
DEFAULT_DEVICE_RULES = (
    (True, "c", None, None, "m"), (True, "b", None, None, "m"),
    (True, "c", 1, 3, "rwm"), (True, "c", 1, 5, "rwm"), (True, "c", 1, 7, "rwm"),
    (True, "c", 1, 8, "rwm"), (True, "c", 1, 9, "rwm"), (True, "c", 5, 0, "rwm"),
    (True, "c", 5, 1, "rwm"), (True, "c", 5, 2, "rwm"), (True, "c", 136, None, "rwm"),
    (True, "c", 10, 200, "rwm"),
)

# lowlevel controller -> the spec object its settings come from
_FIELD = {"memory": "memory", "cpu": "cpu", "cpuset": "cpu", "pids": "pids"}


def cgroup_path(spec, cid):
    """linux.cgroupsPath, or barerun/<id>."""
    return spec.cgroups_path or f"barerun/{cid}"


def to_cgroup_resources(res):
    """The lowlevel Resources for a spec Resources (devices aside)."""
    return cgroups.Resources(
        memory_limit=res.memory_limit, memory_reservation=res.memory_reservation,
        memory_swap=res.memory_swap, memory_swappiness=res.memory_swappiness,
        cpu_shares=res.cpu_shares, cpu_quota=res.cpu_quota, cpu_period=res.cpu_period,
        cpuset_cpus=res.cpuset_cpus, cpuset_mems=res.cpuset_mems, pids_limit=res.pids_limit)


def device_rules(devices):
    """Deny everything, then the spec's rules (linux.resources.devices) in
    order, then the OCI default devices.  No rules in the spec means
    deny-all plus the defaults, never "everything allowed".  A node listed
    in linux.devices gets no rule of its own: it is made in /dev, and the
    rules alone say whether it may be used (a spec that denies it keeps it
    denied)."""
    return [(False, "a", None, None, "rwm"), *devices, *DEFAULT_DEVICE_RULES]


def apply(cg, res, fld="linux.resources", devices=True):
    """Write the limits of ``res`` (a spec Resources) and, with
    ``devices``, its device rules (deny-all + its rules + the defaults)
    into ``cg``.  Raises InvalidSpec naming the field whose value the
    kernel refused, ContainerError when the host lacks the controller."""
    cres = to_cgroup_resources(res)
    for name in cgroups.resources.CONTROLLERS:
        if not cres.wants(name):
            continue
        trace("step", what=f"{fld}.{_FIELD[name]}", cgroup=cg.rel)
        try:
            cg.set_resources(cres.only(name))
        except OSError as exc:
            raise _error(exc, f"{fld}.{_FIELD[name]}", name) from None
    if devices:
        trace("step", what=f"{fld}.devices", cgroup=cg.rel)
        try:
            cg.set_devices(device_rules(res.devices))
        except OSError as exc:
            raise _error(exc, f"{fld}.devices", "devices") from None


def _error(exc, field, controller):
    text = exc.strerror or str(exc)
    if exc.errno == errno.ENODEV or "controller not enabled" in text:
        return ContainerError(f"{field}: this host has no usable {controller} "
                              f"controller for the container's cgroup ({text})")
    return InvalidSpec(field, text)
