"""barerun against runc (and crun where it runs), measured in one run.

    .venv/bin/python bench/run.py [-n RUNS]

Times, as medians over RUNS:
  * `barerun run` vs `runc run` of /bin/true in the same busybox bundle,
    and vs `crun run` if crun is on PATH (in a private mount namespace with
    pure cgroup2 and --cgroup-manager=disabled, see bench/crun.py);
  * an in-process loop of create/start/wait/delete through the library.
Prints a Markdown table with ratios (barerun / runc, barerun / crun); below
1.0 is faster.
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

sys.path.insert(0, HERE)
from crun import time_crun  # noqa: E402

BARERUN = os.path.join(os.path.dirname(sys.executable), "barerun")


def median_ms(samples):
    return statistics.median(samples) * 1000


def time_cli(argv_for, n, cwd):
    samples = []
    for i in range(n):
        argv = argv_for(i)
        t = time.perf_counter()
        _sh(argv, cwd=cwd)
        samples.append(time.perf_counter() - t)
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


def _sh(argv, cwd=None, check=True):
    if "-d" in argv:
        # a detached container keeps the fds it inherits: give it /dev/null
        # (a pipe would never reach EOF, CRIU cannot dump a host file)
        p = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise SystemExit(f"{' '.join(argv[:6])}... failed (exit {p.returncode})")
        return p
    with tempfile.TemporaryFile() as err:
        p = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=err)
        if check and p.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv[:4])}... failed: {err.read().decode().strip()}")
    return p


def time_ops(tool, root, bundle, n, criu=None):
    """exec /bin/true, pause+resume, and checkpoint+restore of a container
    holding 256 MiB, each timed with ``tool`` (barerun or runc)."""
    rt = [tool, "--root", root]
    cid = f"bench-ops-{os.path.basename(tool)}-{os.getpid()}"
    out = {}
    _sh(rt + ["run", "-d", cid], cwd=bundle)
    try:
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            _sh(rt + ["exec", cid, "/bin/true"])
            samples.append(time.perf_counter() - t)
        out["exec"] = samples
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            _sh(rt + ["pause", cid])
            _sh(rt + ["resume", cid])
            samples.append(time.perf_counter() - t)
        out["pause"] = samples
    finally:
        _sh(rt + ["delete", "-f", cid], check=False)
    if criu:
        samples = []
        crt = rt[:1] + ["--criu", criu] + rt[1:]
        for i in range(max(3, n // 4)):
            img = tempfile.mkdtemp(prefix="barerun-bench-img-")
            big = f"{cid}-big{i}"
            try:
                _sh(rt + ["run", "-d", big], cwd=bundle + "-big")
                time.sleep(1.5)  # let it fill its 256 MiB
                t = time.perf_counter()
                _sh(crt + ["checkpoint", "--image-path", img, big])
                _sh(crt + ["restore", "-d", "--image-path", img, big + "r"], cwd=bundle + "-big")
                samples.append(time.perf_counter() - t)
            finally:
                for x in (big, big + "r"):
                    _sh(rt + ["delete", "-f", x], check=False)
                shutil.rmtree(img, ignore_errors=True)
        out["checkpoint"] = samples
    return out


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
        runc = shutil.which("runc")
        # warm-up: page cache, cgroup hierarchy
        time_cli(lambda i: [BARERUN, "--root", root, "run", f"bench-w{i}"], 2, bundle)
        br = time_cli(lambda i: [BARERUN, "--root", root, "run", f"bench-b{i}"], args.n, bundle)
        if runc:
            time_cli(lambda i: [runc, "--root", root + "-runc", "run", f"bench-w{i}"], 2, bundle)
            rc = time_cli(lambda i: [runc, "--root", root + "-runc", "run", f"bench-r{i}"],
                          args.n, bundle)
            rows.append(("`run /bin/true` (CLI)", median_ms(br), median_ms(rc)))
        else:
            rows.append(("`run /bin/true` (CLI)", median_ms(br), None))
        crun_ms = None
        crun = shutil.which("crun")
        if not crun:
            print("crun: not on PATH, its column is n/a", file=sys.stderr)
        else:
            try:
                crun_ms = median_ms(time_crun(crun, root + "-crun", bundle, args.n))
            except (RuntimeError, OSError, ValueError) as e:
                print(f"crun: cannot time it, its column is n/a: {e}", file=sys.stderr)
        rows[-1] += (crun_ms,)
        lib = time_library(bundle, root, args.n)
        rows.append(("library create+start+wait+delete", median_ms(lib),
                     median_ms(rc) if runc else None, crun_ms))
        # a long-running container for exec and pause; one holding 256 MiB
        # of random bytes (dd blocked on a full pipe keeps its buffer) for
        # checkpoint + restore
        write_bundle(bundle, default_spec(["sleep", "1000"]), rootfs=rootfs)
        write_bundle(bundle + "-big", default_spec(
            ["sh", "-c", "dd if=/dev/urandom bs=256M count=1 iflag=fullblock 2>/dev/null "
             "| sleep 1000"]), rootfs=rootfs)
        from lowlevel import criu as _criu
        try:
            criu = _criu.find_criu()
        except FileNotFoundError:
            criu = None
        b_ops = time_ops(BARERUN, root, bundle, args.n, criu)
        r_ops = time_ops(runc, root + "-runc", bundle, args.n, criu) if runc else {}
        for key, what in (("exec", "`exec /bin/true` (CLI)"), ("pause", "`pause` + `resume` (CLI)"),
                          ("checkpoint", "`checkpoint` + `restore`, 256 MiB (CLI, same CRIU)")):
            if key in b_ops:
                rows.append((what, median_ms(b_ops[key]),
                             median_ms(r_ops[key]) if key in r_ops else None, None))
        print(f"\nmedians of {args.n} runs, {os.cpu_count()} CPUs, kernel {os.uname().release}\n")
        print("| what | barerun ms | runc ms | ratio | crun ms | ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        for what, b, *others in rows:
            cells = []
            for o in others:
                cells += [f"{o:.1f}", f"{b / o:.2f}"] if o else ["n/a", "n/a"]
            print(f"| {what} | {b:.1f} | " + " | ".join(cells) + " |")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
