"""Time `crun run` the only way crun 1.8.1 works on this host (DESIGN.md):
inside a private mount namespace with pure cgroup2 on /sys/fs/cgroup and
`--cgroup-manager=disabled`.

`time_crun()` starts this file once under `unshare -m`; as __main__ it sets
up the mount namespace, then times only the crun invocations and prints one
JSON list of seconds on stdout.
"""

import json
import os
import shutil
import subprocess
import sys
import time


def time_crun(crun, root, bundle, n, warmup=2):
    """Per-run seconds of `crun run` of the bundle, or raise RuntimeError
    saying why crun cannot be timed here."""
    unshare = shutil.which("unshare")
    if not unshare:
        raise RuntimeError("unshare(1) not on PATH")
    argv = [unshare, "-m", sys.executable, os.path.abspath(__file__),
            crun, root, bundle, str(n), str(warmup)]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip() or f"helper exit {p.returncode}")
    return json.loads(p.stdout)


def _helper(crun, root, bundle, n, warmup):
    # private: nothing mounted here leaks to the host, and it all goes
    # away with this namespace
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "cgroup2", "none", "/sys/fs/cgroup"], check=True)
    base = [crun, "--cgroup-manager=disabled", "--root", root]
    samples = []
    for i in range(warmup + n):
        cid = f"bench-c{os.getpid()}-{i}"
        t = time.perf_counter()
        p = subprocess.run(base + ["run", cid], cwd=bundle, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            subprocess.run(base + ["delete", "-f", cid], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sys.exit(f"crun run failed (exit {p.returncode}): {p.stderr.strip()}")
        if i >= warmup:
            samples.append(dt)
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    c, r, b, n, w = sys.argv[1:6]
    _helper(c, r, b, int(n), int(w))
