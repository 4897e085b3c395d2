"""A complete OCI bundle from one static binary: Debian's busybox-static.

Used by `make demo`, the benchmarks and the tests; no image registry needed.
"""

import copy
import json
import os
import shutil
import subprocess

from .spec_default import DEFAULT

BUSYBOX = "/bin/busybox"


def make_rootfs(path, busybox=BUSYBOX):
    """<path>/bin/busybox plus a symlink per applet, and minimal /etc."""
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} is missing: install Debian's busybox-static "
                                "(`make setup` does)")
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "root", "var", "run"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        link = os.path.join(path, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    return path


def default_spec(args=None, terminal=False):
    """The `barerun spec` defaults, with ``args`` as the process."""
    spec = copy.deepcopy(DEFAULT)
    spec["process"]["terminal"] = terminal
    if args is not None:
        spec["process"]["args"] = list(args)
    return spec


def write_bundle(path, spec, rootfs=None):
    """A bundle directory: config.json, and a fresh busybox rootfs unless
    ``rootfs`` (an absolute path shared by several bundles) is given."""
    os.makedirs(path, exist_ok=True)
    spec = copy.deepcopy(spec)
    if rootfs is None:
        make_rootfs(os.path.join(path, "rootfs"))
        spec["root"]["path"] = "rootfs"
    else:
        spec["root"]["path"] = rootfs
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(spec, f, indent=1)
    return path
