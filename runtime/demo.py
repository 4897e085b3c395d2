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


def _last_tick(path):
    words = open(path).read().split()
    return int(words[-1]) if words and words[-1].isdigit() else 0


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

        say("create: namespaces, cgroup barerun/<id>, mounts, pivot_root; "
            "the init waits before exec")
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

        say("exec: a second process joins the container's namespaces (one setns on a pidfd)")
        import json
        out2 = os.path.join(work, "exec.txt")
        p = c.exec(runtime.ExecOpts(json.dumps(default_spec(
            ["sh", "-c", "echo \"exec'd as pid $$ in $(hostname); init is: "
             "$(tr '\\0' ' ' < /proc/1/cmdline)\""])["process"]).encode(),
            runtime.IO(stdout=out2, stderr=out2)))
        print(f"    host pid {p.pid}, exit status {p.wait()}")
        show(out2)

        say("pause: the cgroup freezer stops every process; resume thaws them")
        c.pause()
        before = _last_tick(log)
        time.sleep(0.4)
        print(f"    status {c.state().status.oci}: counter {before} -> {_last_tick(log)} "
              "(frozen)")
        c.resume()
        time.sleep(0.4)
        print(f"    status {c.state().status.oci}: counter now {_last_tick(log)}")

        say("checkpoint with CRIU (exit=True): the counter's whole state goes to images")
        images = os.path.join(work, "checkpoint")
        try:
            t0 = time.perf_counter()
            c.checkpoint(runtime.CheckpointOpts(exit=True, path=images))
            stopped_at = _last_tick(log)
            print(f"    dumped in {(time.perf_counter() - t0) * 1000:.0f} ms; counter stopped "
                  f"at {stopped_at}; status {c.state().status.oci}")
            print(f"    {len(os.listdir(images))} files in {images}, e.g. "
                  f"{sorted(f for f in os.listdir(images) if f.endswith('.img'))[:4]}")
            c.wait()
            c.delete()
            say("restore under a new id: create(..., checkpoint=dir), then start()")
            log2 = os.path.join(work, "counter2.txt")
            c = runtime.create(cid + "-restored", bundle, root=ROOT,
                               io=runtime.IO(stdout=log2, stderr=log2), checkpoint=images)
            t0 = time.perf_counter()
            c.start()
            print(f"    restored in {(time.perf_counter() - t0) * 1000:.0f} ms as host pid "
                  f"{c.pid}, status {c.state().status.oci}")
            time.sleep(0.5)
            print(f"    the counter goes on from {stopped_at}: "
                  f"{open(log2).read().split()[1:8:2]}")
        except runtime.CheckpointError as exc:
            print(f"    checkpoint/restore unavailable here: {str(exc).splitlines()[0]}")

        say("a terminal: the pty is made in the container's own devpts")
        tbundle = os.path.join(work, "tty")
        spec = default_spec(["sh", "-c", "tty; stty size"], terminal=True)
        spec["process"]["consoleSize"] = {"height": 24, "width": 80}
        write_bundle(tbundle, spec, rootfs=rootfs)
        tout = os.path.join(work, "tty.txt")
        r, w = os.pipe()
        t = runtime.create(cid + "-tty", tbundle, root=ROOT,
                           io=runtime.IO(stdin=r, stdout=tout, terminal=True))
        os.close(r)
        t.start()
        t.wait()
        t.delete()
        os.close(w)
        show(tout)

        say("kill SIGKILL through a pidfd, then wait for the exit status")
        c.kill(signal.SIGKILL)
        print(f"    exit status {c.wait()} (128 + 9)")

        say("delete: cgroups and state removed")
        c.delete()
        c = None
        left = [p for p in os.listdir(ROOT) if p.startswith(cid)] if os.path.isdir(ROOT) else []
        left += [os.path.join(d, x) for d in ("/sys/fs/cgroup/memory/barerun",
                                              "/sys/fs/cgroup/unified/barerun")
                 if os.path.isdir(d) for x in os.listdir(d) if x.startswith(cid)]
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
