"""barerun against runc behind real clients, measured in one run.

    .venv/bin/python bench/clients.py [-n RUNS]

Times, as medians over RUNS (after one warm-up run each):
  * `ctr run --rm --rootfs ROOTFS ID /bin/true` with `--runc-binary` barerun
    vs /usr/sbin/runc, through one private containerd (debug log level);
  * `podman run --rm --rootfs ROOTFS /bin/true` with `--runtime DIR/runc`, a
    symlink to barerun vs one to /usr/sbin/runc (podman wants the basename
    `runc`), with one private podman configuration and storage.
The daemon, configuration and storage are set up and removed as in the
integration tests (tests/integration); the daemon is stopped by its pid, and
everything made here goes, also on failure, Ctrl-C or SIGTERM.  A client
that is not installed is skipped (nothing is installed from here).  Prints
a Markdown table like bench/run.py.  No timing is asserted.
"""

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.bundle import make_rootfs  # noqa: E402
from tests.integration.conftest import BARERUN, Containerd, containerd_teardown  # noqa: E402
from tests.integration.test_podman import (Podman, _cgroup_dirs, _missing_packages,  # noqa: E402
                                           _mounts_under, _rmdir_tree, podman_teardown)

RUNC = "/usr/sbin/runc"
LEFT = []  # what a clean-up could not remove (told at once; exit status 1)


@contextlib.contextmanager
def deferred_signals(ignore_int=False):
    """SIGINT and SIGTERM wait for the end of the block (or, with
    ``ignore_int``, Ctrl-C is dropped, also by the clients started in it)."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignore_int else None
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if ignore_int:
            signal.signal(signal.SIGINT, old)


def run(argv, env, cwd=None):
    """One client run, in a session of its own and never cut short: a
    client killed while it creates a container leaves runtime state that
    its daemon does not remove (ctr: containerd cancels the runtime's
    `create`; seen with runc as with barerun)."""
    with deferred_signals():
        r = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120, start_new_session=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")


def median_ms(call, n):
    """Median wall time in ms of ``call(i)``, i = 1..n, after call(0)."""
    samples = []
    for i in range(n + 1):
        t = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples[1:]) * 1000


def told(client, problems):
    for p in problems:
        print(f"{client} clean-up: {p}", file=sys.stderr)
    LEFT.extend(problems)


def bench_containerd(n, work, runc):
    missing = [b for b in ("containerd", "ctr", "containerd-shim-runc-v2") if not shutil.which(b)]
    if missing:
        print(f"containerd: skipped, not installed: {', '.join(missing)}")
        return []
    rootfs = make_rootfs(os.path.join(work, "rootfs"))
    os.makedirs(os.path.join(work, "containerd"))
    d = Containerd(os.path.join(work, "containerd"))
    try:
        d.start(shutil.which("containerd"))
    except BaseException:
        d.stop()
        raise

    def ctr_run(binary, name):
        # --fifo-dir: the fifos of a failed run stay here, not in /run/containerd
        return lambda i: run(["ctr", "--address", d.address, "--namespace", d.namespace,
                              "run", "--rm", "--rootfs", "--runc-binary", binary,
                              "--fifo-dir", os.path.join(work, "fifo"),
                              rootfs, f"bench-{name}-{i}", "/bin/true"], d.env)
    try:
        b = median_ms(ctr_run(BARERUN, "barerun"), n)
        r = median_ms(ctr_run(runc, "runc"), n) if runc else None
        return [("`ctr run --rm --rootfs` /bin/true", b, r)]
    finally:
        with deferred_signals(ignore_int=True):
            problems = containerd_teardown(d)
            # the shims' runtime leaves the namespace's parent cgroup /<ns>
            problems += [f"cannot remove cgroup {c}" for c in _cgroup_dirs(d.namespace)
                         if not _rmdir_tree(c)]
        told("containerd", problems)


def bench_podman(n, work, runc):
    missing = _missing_packages()
    if missing:
        print(f"podman: skipped, not installed: {', '.join(missing)}")
        return []
    had_parent = bool(_cgroup_dirs("libpod_parent"))
    had_runc_root = os.path.exists("/run/runc")
    p = Podman(work)  # a short path: podman's cleanup refuses a runroot over 50 characters

    def podman_run(_):
        run(["podman", "--runtime", p.runtime, "--cgroup-manager=cgroupfs",
             "--events-backend=file", "run", "--rm", "--rootfs", p.rootfs, "/bin/true"],
            p.env, cwd=p.dir)
    try:
        p.setup()  # p.runtime: <dir>/rt/runc -> barerun
        b = median_ms(podman_run, n)
        r = None
        if runc:
            # one runtime at a time: the clean-up below removes what is left
            # with p.runtime, and waits for the conmons naming it
            p.wait_conmons()
            p.runtime = os.path.join(p.dir, "rt-runc", "runc")
            os.makedirs(os.path.dirname(p.runtime))
            os.symlink(runc, p.runtime)
            r = median_ms(podman_run, n)
        return [("`podman run --rm --rootfs` /bin/true", b, r)]
    finally:
        with deferred_signals(ignore_int=True):
            told("podman", podman_teardown(p, had_parent))
            if not had_runc_root:
                with contextlib.suppress(OSError):
                    os.rmdir("/run/runc")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10, help="runs per measurement")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks run real containers: run as root")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds like Ctrl-C
    runc = RUNC if os.access(RUNC, os.X_OK) else None
    if not runc:
        print(f"runc: not installed ({RUNC}), barerun alone")
    t0 = time.monotonic()
    rows, failed = [], False
    for bench in (bench_containerd, bench_podman):
        work = tempfile.mkdtemp(prefix="barerun-bench-", dir="/tmp")
        try:
            rows += bench(args.n, work, runc)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:  # told; the next one runs
            print(f"{bench.__name__}: failed: {exc}", file=sys.stderr)
            failed = True
        finally:
            if not _mounts_under(work):  # else told above; never rmtree'd through
                shutil.rmtree(work, ignore_errors=True)
    if rows:
        print(f"\nmedians of {args.n} runs, {os.cpu_count()} CPUs, "
              f"kernel {os.uname().release}\n")
        print("| what | barerun ms | runc ms | ratio |")
        print("|---|---:|---:|---:|")
        for what, b, r in rows:
            print(f"| {what} | {b:.1f} | {r:.1f} | {b / r:.2f} |" if r else
                  f"| {what} | {b:.1f} | n/a | n/a |")
    print(f"\n({time.monotonic() - t0:.0f} s)")
    return 1 if failed or LEFT else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted" + ("" if LEFT else "; everything it made is removed"))
