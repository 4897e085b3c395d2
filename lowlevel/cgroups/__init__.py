"""Control groups: put processes in a group, limit it, freeze it, kill it.

The kernel's interface is a filesystem: a cgroup is a directory, each
setting a small file in it.  This package does those file operations for
cgroup v1, cgroup v2 and hybrid hosts (both at once)::

    from lowlevel import cgroups
    layout = cgroups.detect()                 # which hierarchies, where
    cg = cgroups.Cgroup("barerun/abc")        # same relative path in each
    cg.create(); cg.attach(pid)
    cg.set_resources(cgroups.Resources(memory_limit=64 << 20))
    cg.freeze(); cg.thaw(); cg.kill_all(signal.SIGKILL); cg.remove()

Modules: ``detect`` (mountinfo, /proc/<pid>/cgroup), ``resources`` (the
limits and their v1/v2 units), ``v1`` and ``v2`` (the interface files of
each version), ``cgroup`` (one cgroup across every hierarchy), ``_fs``
(the traced read/write/mkdir/rmdir).
"""

from .cgroup import Cgroup
from .detect import Layout, detect, own_cgroup, parse_proc_cgroup
from .resources import Resources, shares_to_weight

__all__ = ["Cgroup", "Layout", "Resources", "detect", "own_cgroup",
           "parse_proc_cgroup", "shares_to_weight"]
