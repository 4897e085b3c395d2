"""barerun against runc (and crun where it runs), measured in one run.

    .venv/bin/python bench/run.py [-n RUNS]

Times, as medians over RUNS:
  * `barerun run` vs `runc run` of /bin/true in the same busybox bundle;
  * an in-process loop of create/start/wait/delete through the library.
Prints a Markdown table with ratios (barerun / runc); below 1.0 is faster.
No timing is asserted anywhere: this is a measurement, not a test.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import runtime  # noqa: E402
from runtime.bundle import default_spec, make_rootfs, write_bundle  # noqa: E402

BARERUN = os.path.join(os.path.dirname(sys.executable), "barerun")


def median_ms(samples):
    return statistics.median(samples) * 1000


def time_cli(argv_for, n, cwd):
    samples = []
    for i in range(n):
        argv = argv_for(i)
        t = time.perf_counter()
        p = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples.append(time.perf_counter() - t)
        if p.returncode != 0:
            raise SystemExit(f"{argv[0]} failed: {p.stderr.decode().strip()}")
    return samples


def time_library(bundle, root, n):
    samples = []
    for i in range(n):
        t = time.perf_counter()
        c = runtime.create(f"bench-lib-{os.getpid()}-{i}", bundle, root=root)
        c.start()
        c.wait()
        c.delete()
        samples.append(time.perf_counter() - t)
    return samples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20, help="runs per measurement")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks run real containers: run as root")
    work = tempfile.mkdtemp(prefix="barerun-bench-")
    try:
        rootfs = make_rootfs(os.path.join(work, "rootfs"))
        bundle = write_bundle(os.path.join(work, "bundle"), default_spec(["/bin/true"]),
                              rootfs=rootfs)
        root = os.path.join(work, "state")
        rows = []
        # warm-up: page cache, cgroup hierarchy
        time_cli(lambda i: [BARERUN, "--root", root, "run", f"bench-w{i}"], 2, bundle)
        br = time_cli(lambda i: [BARERUN, "--root", root, "run", f"bench-b{i}"], args.n, bundle)
        runc = shutil.which("runc")
        if runc:
            time_cli(lambda i: [runc, "--root", root + "-runc", "run", f"bench-w{i}"], 2, bundle)
            rc = time_cli(lambda i: [runc, "--root", root + "-runc", "run", f"bench-r{i}"],
                          args.n, bundle)
            rows.append(("`run /bin/true` (CLI)", median_ms(br), median_ms(rc)))
        else:
            rows.append(("`run /bin/true` (CLI)", median_ms(br), None))
        lib = time_library(bundle, root, args.n)
        rows.append(("library create+start+wait+delete", median_ms(lib),
                     median_ms(rc) if runc else None))
        print(f"\nmedians of {args.n} runs, {os.cpu_count()} CPUs, kernel {os.uname().release}\n")
        print("| what | barerun ms | runc ms | ratio |")
        print("|---|---:|---:|---:|")
        for what, b, r in rows:
            ratio = f"{b / r:.2f}" if r else "n/a"
            print(f"| {what} | {b:.1f} | {r:.1f} | {ratio} |" if r else
                  f"| {what} | {b:.1f} | n/a | n/a |")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
