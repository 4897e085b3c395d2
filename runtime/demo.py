"""`make demo`: one busybox container taken through its whole life.

Each step says what barerun does in the kernel, then shows what the
container sees.  Run with --trace to see every kernel operation as well.
"""

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import time

import runtime

from .bundle import default_spec, write_bundle

ROOT = "/run/barerun-demo"


def say(text):
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def show(path, prefix="    "):
    with open(path) as f:
        text = f.read()
    for line in text.rstrip("\n").splitlines():
        print(prefix + line)
    return text


def run_once(bundle_dir, rootfs, cid, script, out):
    """Run ``sh -c script`` in a container and wait for it (for the look-around)."""
    write_bundle(bundle_dir, default_spec(["sh", "-c", script]), rootfs=rootfs)
    c = runtime.create(cid, bundle_dir, root=ROOT, io=runtime.IO(stdout=out, stderr=out))
    c.start()
    status = c.wait()
    c.delete()
    return status


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trace", action="store_true", help="print every kernel operation")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("the demo runs containers for real: run it as root", file=sys.stderr)
        return 1
    if args.trace:
        logging.basicConfig(level=logging.DEBUG, format="    trace: %(message)s")
        logging.getLogger("barerun.trace").setLevel(logging.DEBUG)
    work = tempfile.mkdtemp(prefix="barerun-demo-")
    cid = f"demo-{os.getpid()}"
    c = None
    try:
        say("Building a busybox rootfs from Debian's busybox-static (one static binary)")
        rootfs = os.path.join(work, "rootfs")
        from .bundle import make_rootfs
        make_rootfs(rootfs)
        print(f"    {rootfs}: {len(os.listdir(os.path.join(rootfs, 'bin')))} entries in /bin")

        say("What does a container see? (pid, hostname, mounts, cgroups, capabilities)")
        out = os.path.join(work, "look.txt")
        run_once(os.path.join(work, "look"), rootfs, cid + "-look",
                 "echo \"my pid: $$   hostname: $(hostname)   uid: $(id -u)\"; "
                 "echo 'processes:'; ps -o pid,args; "
                 "echo 'mounts:'; cut -d' ' -f1-3 /proc/mounts | head -n 12; "
                 "echo 'cgroup:'; head -n 3 /proc/self/cgroup; "
                 "grep -E '^Cap(Eff|Bnd)' /proc/self/status; "
                 "echo 'network:'; cat /proc/net/dev | tail -n +3 | cut -d: -f1", out)
        show(out)

        say("create: namespaces, cgroup barerun/<id>, mounts, pivot_root; the init waits before exec")
        bundle = os.path.join(work, "bundle")
        log = os.path.join(work, "counter.txt")
        write_bundle(bundle, default_spec(
            ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done"]),
            rootfs=rootfs)
        t0 = time.perf_counter()
        c = runtime.create(cid, bundle, root=ROOT, io=runtime.IO(stdout=log, stderr=log))
        print(f"    created in {(time.perf_counter() - t0) * 1000:.1f} ms: "
              f"status {c.state().status.oci}, host pid {c.pid}")
        with open(f"/proc/{c.pid}/cgroup") as f:
            print("    its cgroup (from the host): " + f.readline().strip())

        say("start: the init execs the container's program")
        c.start()
        time.sleep(0.5)
        print(f"    status {c.state().status.oci}; processes (host pids): {c.processes()}")
        print(f"    output so far: {open(log).read().split()[-2:]}")

        say("state from another process: runtime.load() reads the state store")
        other = runtime.load(cid, root=ROOT)
        print(f"    load({cid!r}).state() = {other.state()}")

        say("kill SIGKILL through a pidfd, then wait for the exit status")
        c.kill(signal.SIGKILL)
        print(f"    exit status {c.wait()} (128 + 9)")

        say("delete: cgroups and state removed")
        c.delete()
        c = None
        left = [p for p in ("/sys/fs/cgroup/memory/barerun/" + cid,
                            "/sys/fs/cgroup/unified/barerun/" + cid, os.path.join(ROOT, cid))
                if os.path.exists(p)]
        print("    nothing left behind" if not left else f"    LEFT BEHIND: {left}")
        say("done")
        return 0 if not left else 1
    except runtime.ContainerError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if c is not None:
            try:
                c.delete(force=True)
            except runtime.ContainerError:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
