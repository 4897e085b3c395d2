"""A container's cgroup: where it is, and the spec's limits and device
rules written into it (create, restore and update share this).

Errors name the spec field behind the write that failed
(``linux.resources.memory: ...``); a controller this host does not offer
is reported as the host's limit, not as a mistake in the spec.
"""

import errno
import json

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

# lowlevel controller -> the spec object its settings come from
_FIELD = {"memory": "memory", "cpu": "cpu", "cpuset": "cpu", "pids": "pids"}


def cgroup_path(spec, cid):
    """linux.cgroupsPath, or barerun/<id>."""
    return spec.cgroups_path or f"barerun/{cid}"


def to_cgroup_resources(res):
    """The lowlevel Resources for a spec Resources (devices aside)."""
    return cgroups.Resources(**{f: getattr(res, f) for f in cgroups.Resources.FIELDS})


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
        programs = DevicePrograms()
        try:
            cg.set_devices(device_rules(res.devices), programs.known)
        except OSError as exc:
            raise _error(exc, f"{fld}.devices", "devices") from None
        programs.save()


def _error(exc, field, controller):
    text = exc.strerror or str(exc)
    if exc.errno == errno.ENODEV or "controller not enabled" in text:
        return ContainerError(f"{field}: this host has no usable {controller} "
                              f"controller for the container's cgroup ({text})")
    return InvalidSpec(field, text)
