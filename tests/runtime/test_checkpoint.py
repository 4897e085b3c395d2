"""Checkpoint and restore with a real CRIU (>= 4.2.1) and real containers.

What CRIU can and cannot dump decides how these containers are built:

* stdio are pipes (IO paths/fds are relayed by barerun through pipes; the
  CLI is given subprocess pipes): CRIU re-attaches pipes with inherit-fd,
  but cannot dump a host file opened directly in the container;
* the counter is `sh` printing i every 0.05 s: after a restore the output
  goes on at last+1 in the new IO;
* a TCP connection lives inside the container's own network namespace
  (busybox nc server and client); CRIU dumps it only when told (allow_tcp)
  and restores it into the same namespace, restored with it;
* an external unix socket is one end of a socketpair made by the test and
  passed in as fd 3 (preserve_fds).  CRIU finds a socket only in a network
  namespace of the dumped tree, so that container shares the host's.

Every test that runs CRIU is skipped when this process is under a seccomp
filter (``criu_needs_unfiltered``): CRIU inherits it and then cannot
suspend the dumped tasks' seccomp.

Every test cleans up through the ``root`` fixture (force delete of every
container made under it, then checks for cgroups and mounts left) and the
``images`` fixture (removes the checkpoint directories).
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

import runtime
from lowlevel import criu
from runtime.bundle import default_spec
from runtime.checkpoint import read_checkpoint
from tests.conftest import (cgroup_dirs, criu_needs_unfiltered, host_mounts_with,
                            new_container_id, read, wait_for)

BARERUN = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "barerun")
COUNTER = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done"
MIB = 1 << 20


def _criu_or_none():
    try:
        return criu.find_criu()
    except FileNotFoundError:
        return None


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="real containers need root"),
    pytest.mark.skipif(_criu_or_none() is None,
                       reason=f"no CRIU >= {'.'.join(map(str, criu.MIN_VERSION))} found"),
]


# ------------------------------------------------------------------ helpers


@pytest.fixture
def images(tmp_path):
    """images(name) -> a path for a checkpoint (or work) directory; every
    one is removed at teardown (a dump holds the container's memory)."""
    made = []

    def make(name):
        path = str(tmp_path / "ckpt" / name)
        made.append(path)
        return path

    yield make
    shutil.rmtree(str(tmp_path / "ckpt"), ignore_errors=True)
    for path in made:
        assert not os.path.exists(path)




def numbers(text):
    """The counter's complete lines as ints."""
    return [int(x) for x in text.split("\n")[:-1] if x.strip().isdigit()]


def counted(path):
    return numbers(read(path))


def settled(path, quiet=0.3, timeout=10.0):
    """The file's content once it stopped growing (its relay drained)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = read(path)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
        time.sleep(0.02)
    raise AssertionError(f"{path} kept growing for {timeout} s")


def advances(path, beyond, by=3, timeout=10.0):
    """Wait until the counter in ``path`` is ``by`` past ``beyond``."""
    return wait_for(lambda: (counted(path) or [0])[-1] >= beyond + by, timeout,
                    f"the counter in {path} to pass {beyond + by}")


def listing(path):
    """Names, sizes and mtimes of a directory: what "unchanged" means."""
    out = []
    for name in sorted(os.listdir(path)):
        st = os.stat(os.path.join(path, name))
        out.append((name, st.st_size, st.st_mtime_ns))
    return out


def restore(root, bundle_dir, image_dir, out_path, cid=None, err_path=None, **kw):
    """A CREATED container made from ``image_dir``, tracked for cleanup."""
    r = runtime.create(cid or new_container_id(), bundle_dir, root=root,
                       io=kw.pop("io", None) or runtime.IO(stdout=out_path, stderr=err_path),
                       checkpoint=image_dir, **kw)
    return root.track(r)


def exec_in(c, args, timeout=10, **io):
    """Run ``args`` in the running container ``c``; its exit status."""
    proc = default_spec(args)["process"]
    p = c.exec(runtime.ExecOpts(json.dumps(proc).encode(), runtime.IO(**io)))
    return p.wait(timeout=timeout)


def cgroup_of(pid, controller="memory"):
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _n, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                return path
    return None


def steady(c):
    """The container's long-lived processes: in two looks 0.2 s apart (the
    counter's `sleep 0.05`s come and go in between)."""
    first = set(c.processes())
    time.sleep(0.2)
    return sorted(first & set(c.processes()))


def start_counter(create, modify=None):
    """A running counter container (create fixture): Out."""
    o = create(["sh", "-c", COUNTER], modify)
    o.c.start()
    advances(o.stdout_path, 0, by=5)
    return o


def no_criu_mounts():
    return not host_mounts_with("criu-root")


# ------------------------------------------------------------------ counter


@criu_needs_unfiltered
def test_exit_checkpoint_then_restore_counts_on(create, root, images, tmp_path):
    o = start_counter(create)
    c = o.c
    bundle_dir = c.bundle
    ck = images("exit")
    c.checkpoint(runtime.CheckpointOpts(exit=True, path=ck))
    assert c.state().status == runtime.Status.STOPPED
    last = numbers(settled(o.stdout_path))[-1]
    # the directory describes itself
    for name in ("inventory.img", "pstree.img", "config.json", "barerun.json", "dump.log"):
        assert os.path.exists(os.path.join(ck, name)), name
    desc = json.load(open(os.path.join(ck, "barerun.json")))
    assert desc["id"] == c.id and desc["bundle"] == bundle_dir
    assert desc["options"]["exit"] is True
    assert desc["descriptors"][1].startswith("pipe:")
    assert tuple(map(int, desc["criu_version"].split("."))) >= criu.MIN_VERSION
    c.delete()

    out = str(tmp_path / "restored.out")
    r = restore(root, bundle_dir, ck, out)
    assert r.state().status == runtime.Status.CREATED
    r.start()
    assert r.state().status == runtime.Status.RUNNING and r.pid > 0
    advances(out, last, by=5)
    got = counted(out)
    assert got[0] == last + 1, f"restored output starts at {got[0]}, dumped at {last}"
    assert got == list(range(last + 1, last + 1 + len(got)))
    r.kill(signal.SIGKILL)
    assert r.wait(timeout=10) == 128 + signal.SIGKILL
    r.delete()


@criu_needs_unfiltered
def test_leave_running_checkpoint_keeps_counting(create, images):
    o = start_counter(create)
    c = o.c
    pid, procs = c.pid, steady(c)
    ck = images("running")
    c.checkpoint(runtime.CheckpointOpts(exit=False, path=ck))
    at = counted(o.stdout_path)[-1]
    assert c.state() == runtime.State(runtime.Status.RUNNING, pid)
    assert steady(c) == procs == [pid]
    advances(o.stdout_path, at, by=5)
    got = counted(o.stdout_path)
    assert got == list(range(1, len(got) + 1)), "the counter skipped or repeated"
    assert os.path.exists(os.path.join(ck, "inventory.img"))
    assert json.load(open(os.path.join(ck, "barerun.json")))["options"]["exit"] is False


@criu_needs_unfiltered
def test_restore_twice_from_the_same_images(create, root, images, tmp_path):
    o = start_counter(create)
    c = o.c
    ck = images("twice")
    c.checkpoint(runtime.CheckpointOpts(exit=True, path=ck))
    last = numbers(settled(o.stdout_path))[-1]
    before = listing(ck)
    restored = []
    for n in (1, 2):
        out = str(tmp_path / f"restored{n}.out")
        r = restore(root, c.bundle, ck, out, restore_options={"work_path": images(f"w{n}")})
        r.start()
        restored.append((r, out))
        assert listing(ck) == before, "a restore changed the images"
    (r1, out1), (r2, out2) = restored
    assert r1.id != r2.id and c.id not in (r1.id, r2.id)
    for r, out in restored:
        assert r.state().status == runtime.Status.RUNNING
        advances(out, last, by=4)
        assert counted(out)[0] == last + 1
        assert cgroup_of(r.pid) == f"/barerun/{r.id}"
        assert all(os.path.isdir(d) for d in cgroup_dirs(f"barerun/{r.id}"))
        assert r.pid in r.processes()
    assert r1.pid != r2.pid and not set(r1.processes()) & set(r2.processes())
    # both run at once: each goes on counting on its own
    a, b = counted(out1)[-1], counted(out2)[-1]
    advances(out1, a, by=3)
    advances(out2, b, by=3)
    for r, _ in restored:
        r.delete(force=True)
        assert not any(os.path.exists(d) for d in cgroup_dirs(f"barerun/{r.id}"))


# ------------------------------------------------------------------ TCP


def _with_tcp(spec):
    """Busybox nc server and client connected over lo inside the container
    (the client's stdin is a FIFO that exec'd processes write to; what the
    server gets goes to /dev/shm/got), then the counter.  CAP_NET_ADMIN to
    bring lo up (barerun does not, runc does: its "loopback" network)."""
    for caps in spec["process"]["capabilities"].values():
        caps.append("CAP_NET_ADMIN")
    spec["process"]["args"] = ["sh", "-c", (
        "ip link set lo up; "
        "sleep 1000000 | nc -l -p 8080 > /dev/shm/got & "
        # until port 8080 (1F90) listens (0A)
        "until grep -q ':1F90 [0-9A-F]*:0000 0A' /proc/net/tcp /proc/net/tcp6; "
        "do sleep 0.02; done; "
        "mkfifo /dev/shm/in; sleep 1000000 > /dev/shm/in & "
        "nc 127.0.0.1 8080 < /dev/shm/in & " + COUNTER)]


def tcp_established(pid, port=8080):
    """The ESTABLISHED connections with ``port`` at one end, in the network
    namespace of ``pid``: [(local port, remote port)]."""
    out = []
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, remote, st = fields[1], fields[2], fields[3]
                    lp, rp = int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)
                    if st == "01" and port in (lp, rp):
                        out.append((lp, rp))
        except FileNotFoundError:
            pass
    return sorted(out)


def send_line(c, text):
    """Through the client's FIFO: the line crosses the TCP connection."""
    assert exec_in(c, ["sh", "-c", f"echo {text} > /dev/shm/in"]) == 0


def server_got(c):
    return read(f"/proc/{c.pid}/root/dev/shm/got")


def start_tcp(create):
    o = create(["sh"], _with_tcp)
    c = o.c
    c.start()
    conns = wait_for(lambda: len(tcp_established(c.pid)) == 2 and tcp_established(c.pid),
                     what="the nc client and server to connect")
    advances(o.stdout_path, 0, by=3)
    send_line(c, "before")
    wait_for(lambda: server_got(c) == "before\n", what="a line through the connection")
    return o, conns


@criu_needs_unfiltered
def test_tcp_connection_refused_without_allow_tcp(create, images):
    o, conns = start_tcp(create)
    c = o.c
    pid, procs = c.pid, steady(c)
    ck = images("tcp-refused")
    with pytest.raises(runtime.CheckpointError) as info:
        c.checkpoint(runtime.CheckpointOpts(exit=False, path=ck))
    err = info.value
    # CRIU's own words: "inet: Connected TCP socket, consider using
    # --tcp-established option."
    assert "Connected TCP socket" in str(err), str(err)
    assert "tcp-established" in str(err)
    assert err.log_path == os.path.join(ck, "dump.log") and os.path.exists(err.log_path)
    assert err.log_tail
    # nothing happened to the container: same processes, still running,
    # not frozen, the counter and the connection go on
    assert c.state() == runtime.State(runtime.Status.RUNNING, pid)
    assert steady(c) == procs and len(procs) == 5  # sh, sleep, nc -l, sleep, nc
    assert tcp_established(pid) == conns
    at = counted(o.stdout_path)[-1]
    advances(o.stdout_path, at, by=3)
    send_line(c, "still")
    wait_for(lambda: server_got(c) == "before\nstill\n", what="the connection to still work")
    # the images directory says what it is: an incomplete checkpoint
    with pytest.raises(runtime.NotFound, match="incomplete checkpoint"):
        read_checkpoint(ck)


@criu_needs_unfiltered
def test_tcp_connection_survives_restore_with_allow_tcp(create, root, images, tmp_path):
    o, conns = start_tcp(create)
    c = o.c
    ck = images("tcp")
    c.checkpoint(runtime.CheckpointOpts(exit=True, allow_tcp=True, empty_namespaces=[],
                                        path=ck))
    assert c.state().status == runtime.Status.STOPPED
    last = numbers(settled(o.stdout_path))[-1]
    c.delete()
    out = str(tmp_path / "tcp-restored.out")
    r = restore(root, c.bundle, ck, out, err_path=str(tmp_path / "tcp-restored.err"))
    r.start()
    assert r.state().status == runtime.Status.RUNNING
    # the network namespace came back with its connection (same ports)
    assert tcp_established(r.pid) == conns
    assert server_got(r) == "before\n"
    send_line(r, "after-restore")
    wait_for(lambda: server_got(r) == "before\nafter-restore\n",
             what="a line through the restored connection")
    advances(out, last, by=3)
    assert counted(out)[0] == last + 1


# ------------------------------------------------------------------ unix socket


@contextmanager
def as_fd3(sock):
    """``sock`` is this process's fd 3 for the block (what preserve_fds=1
    passes); whatever fd 3 was is put back afterwards."""
    try:
        saved = os.dup(3)
    except OSError:
        saved = None
    os.dup2(sock.fileno(), 3, inheritable=False)
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 3, inheritable=False)
            os.close(saved)
        else:
            os.close(3)


def _host_net(spec):
    # CRIU finds a socket only in a network namespace of the dumped tree
    # ("Unix socket N not found" for one made in the host's namespace and
    # passed into a container with its own): this one shares the host's
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                   if n["type"] != "network"]


@criu_needs_unfiltered
def test_external_unix_socket(root, bundle, images, tmp_path):
    b = bundle(["sh", "-c", "while read l <&3; do echo got:$l; done"], _host_net)
    out = str(tmp_path / "unix.out")
    ours, theirs = socket.socketpair()
    try:
        with as_fd3(theirs):
            c = root.track(runtime.create(new_container_id(), b, root=root,
                                          io=runtime.IO(stdout=out), preserve_fds=1))
        theirs.close()
        c.start()
        ours.sendall(b"one\n")
        wait_for(lambda: read(out) == "got:one\n", what="a line through fd 3")
        pid, procs = c.pid, sorted(c.processes())

        with pytest.raises(runtime.CheckpointError) as info:
            c.checkpoint(runtime.CheckpointOpts(exit=False, path=images("unix-refused")))
        # CRIU: "unix: External socket is used. Consider using --ext-unix-sk option."
        assert "External socket is used" in str(info.value), str(info.value)
        assert c.state() == runtime.State(runtime.Status.RUNNING, pid)
        assert sorted(c.processes()) == procs
        ours.sendall(b"two\n")
        wait_for(lambda: read(out) == "got:one\ngot:two\n", what="the socket to still work")

        ck = images("unix")
        c.checkpoint(runtime.CheckpointOpts(exit=True, allow_unix_sockets=True, path=ck))
        assert c.state().status == runtime.Status.STOPPED
        desc = json.load(open(os.path.join(ck, "barerun.json")))
        assert desc["fds"]["3"].startswith("socket:[")
        assert desc["external_unix"] == [desc["fds"]["3"]]
        c.delete()
    finally:
        ours.close()

    # restore without a socket for it: refused before CRIU runs (CRIU
    # 4.2.1 itself crashes on a name-less external peer it cannot reach)
    r = restore(root, b, ck, str(tmp_path / "unix-nofd.out"))
    with pytest.raises(runtime.CheckpointError) as info:
        r.start()
    assert "fd 3 of the init" in str(info.value) and "preserve_fds" in str(info.value)
    assert r.state().status == runtime.Status.CREATED
    r.delete()

    # restore with a new socket as fd 3 (CRIU's inherit-fd for socket:[ino])
    out2 = str(tmp_path / "unix-restored.out")
    ours, theirs = socket.socketpair()
    try:
        with as_fd3(theirs):
            r = restore(root, b, ck, out2, restore_options={"preserve_fds": 1})
        theirs.close()  # the container made from the checkpoint holds its own copy
        r.start()
        assert r.state().status == runtime.Status.RUNNING
        assert os.readlink(f"/proc/{r.pid}/fd/3").startswith("socket:[")
        ours.sendall(b"three\n")
        wait_for(lambda: read(out2) == "got:three\n", what="a line through the new socket")
        r.delete(force=True)
        assert ours.recv(16) == b""  # the container's end is gone with it
    finally:
        ours.close()


# ------------------------------------------------------------------ terminal


@criu_needs_unfiltered
def test_terminal_restored_with_a_working_console(root, bundle, images, tmp_path):
    b = bundle(["sh"], lambda s: s["process"].update(terminal=True))
    out1 = str(tmp_path / "tty1.out")
    r0, w0 = os.pipe()
    r1 = w1 = None
    try:
        c = root.track(runtime.create(new_container_id(), b, root=root,
                                      io=runtime.IO(stdin=r0, stdout=out1, terminal=True)))
        c.start()
        os.write(w0, b"echo one-$((40+2))\n")
        wait_for(lambda: "one-42" in read(out1), what="the shell on the console")
        # (r0 stays open until here: a plain create's console relay dups
        # IO.stdin only when its thread runs, see console.Relay._copy_in)
        os.close(r0)
        r0 = None
        ck = images("tty")
        c.checkpoint(runtime.CheckpointOpts(exit=True, allow_terminal=True, path=ck))
        assert c.state().status == runtime.Status.STOPPED
        assert json.load(open(os.path.join(ck, "barerun.json")))["terminal"] is True
        c.delete()

        out2 = str(tmp_path / "tty2.out")
        r1, w1 = os.pipe()
        r = restore(root, b, ck, out2,
                    io=runtime.IO(stdin=r1, stdout=out2, terminal=True))
        os.close(r1)  # as with a plain create, the container took its own copy
        r1 = None
        r.start()
        assert r.state().status == runtime.Status.RUNNING
        os.write(w1, b"echo two-$((40+3)); tty\n")
        text = wait_for(lambda: "two-43" in read(out2) and "/dev/pts/" in read(out2)
                        and read(out2), what="the restored shell to answer")
        assert "echo two-$((40+3))" in text  # the pty echoes the input back
        assert re.search(r"^/dev/pts/\d+\r?$", text, re.M), text
        assert "one-42" not in text  # the old console's output stayed there
        r.pty(0, runtime.ConsoleSize(100, 40))
        os.write(w1, b"stty size\n")
        wait_for(lambda: "40 100" in read(out2), what="the restored console to resize")
    finally:
        for fd in (r0, w0, r1, w1):
            if fd is not None:
                os.close(fd)


# ------------------------------------------------------------------ memory


@criu_needs_unfiltered
def test_256_mib_of_memory_restored_bit_for_bit(root, bundle, images, tmp_path):
    """256 MiB of random data held in anonymous memory (dd's buffer, blocked
    writing into a pipe nobody reads yet), its sha256 taken before the
    dump and again, from that memory, after the restore."""
    n = 256 * MIB
    script = (
        "exec 3>&1; mkfifo /dev/shm/go; "
        f"head -c {n} /dev/urandom > /dev/shm/blob; "
        "echo before $(sha256sum < /dev/shm/blob); "
        # the blob goes into dd's buffer; the file is removed once read,
        # so /dev/shm (a tmpfs CRIU tars) is small again
        "{ cat /dev/shm/blob; rm /dev/shm/blob; echo loaded >&3; } | "
        f"dd bs={n} count=1 iflag=fullblock 2>/dev/null | "
        "{ read x < /dev/shm/go; echo after $(sha256sum); }; "
        "echo done; sleep 1000000")

    def modify(spec):
        spec["process"]["args"] = ["sh", "-c", script]
        for m in spec["mounts"]:
            if m["destination"] == "/dev/shm":
                m["options"] = [x for x in m["options"] if not x.startswith("size=")] + \
                    ["size=300m"]

    b = bundle(None, modify)
    out1, err1 = str(tmp_path / "mem1.out"), str(tmp_path / "mem1.err")
    c = root.track(runtime.create(new_container_id(), b, root=root,
                                  io=runtime.IO(stdout=out1, stderr=err1)))
    c.start()
    wait_for(lambda: "loaded" in read(out1), timeout=60, what="256 MiB in dd's memory")
    before = re.search(r"^before ([0-9a-f]{64})", read(out1), re.M).group(1)
    ck = images("mem")
    c.checkpoint(runtime.CheckpointOpts(exit=True, path=ck))
    c.delete()
    pages = sum(os.path.getsize(os.path.join(ck, f)) for f in os.listdir(ck)
                if f.startswith("pages-"))
    assert pages >= n, f"only {pages} bytes of memory pages dumped"
    tars = sum(os.path.getsize(os.path.join(ck, f)) for f in os.listdir(ck)
               if f.startswith("tmpfs-"))
    assert tars < 4 * MIB  # the data was in memory, not in /dev/shm

    out2, err2 = str(tmp_path / "mem2.out"), str(tmp_path / "mem2.err")
    r = restore(root, b, ck, out2, err_path=err2)
    r.start()
    assert exec_in(r, ["sh", "-c", "echo go > /dev/shm/go"]) == 0
    text = wait_for(lambda: "done" in read(out2) and read(out2), timeout=60,
                    what="the restored container to hash its memory")
    after = re.search(r"^after ([0-9a-f]{64})", text, re.M)
    assert after, f"stdout {text!r}, stderr {read(err2)!r}"
    assert after.group(1) == before


# ------------------------------------------------------------------ failures


@criu_needs_unfiltered
def test_failed_restore_leaves_checkpoint_and_state(create, root, bundle, images, tmp_path):
    o = start_counter(create)
    c = o.c
    good = c.bundle
    ck = images("fail")
    c.checkpoint(runtime.CheckpointOpts(exit=True, path=ck))
    last = numbers(settled(o.stdout_path))[-1]
    c.delete()
    before = listing(ck)

    # 1. a rootfs without the files the processes had (an empty directory):
    #    CRIU itself fails (barerun makes the spec's mount points first, as
    #    runc; then CRIU finds no /tmp for its pivot_root: "Can't create a
    #    temporary directory: Read-only file system")
    empty = tmp_path / "empty-rootfs"
    empty.mkdir()
    bad = bundle(["sh", "-c", COUNTER], rootfs_path=str(empty))
    work = images("fail-work")
    fds = len(os.listdir("/proc/self/fd"))
    r = restore(root, bad, ck, str(tmp_path / "bad.out"), restore_options={"work_path": work})
    with pytest.raises(runtime.CheckpointError) as info:
        r.start()
    err = info.value
    assert "criu restore failed" in str(err) and "temporary directory" in str(err), str(err)
    assert err.log_path == os.path.join(work, "restore.log") and err.log_tail
    assert runtime.load(r.id, root=root).state() == runtime.State(runtime.Status.CREATED, 0)
    assert not any(os.path.exists(d) for d in cgroup_dirs(f"barerun/{r.id}"))
    assert no_criu_mounts()
    assert listing(ck) == before
    r.delete()
    assert len(os.listdir("/proc/self/fd")) == fds  # no pipe or relay fd left open

    # 2. a criu that is none: the same, and start() may try again
    out = str(tmp_path / "retry.out")
    r = restore(root, good, ck, out)
    fds = len(os.listdir("/proc/self/fd"))
    r.criu_path = "/bin/false"
    with pytest.raises(runtime.CheckpointError) as info:
        r.start()
    assert "criu" in str(info.value)
    assert info.value.log_path is None  # no log was written: none is blamed
    assert runtime.load(r.id, root=root).state().status == runtime.Status.CREATED
    assert not any(os.path.exists(d) for d in cgroup_dirs(f"barerun/{r.id}"))
    assert no_criu_mounts()
    assert listing(ck) == before
    assert len(os.listdir("/proc/self/fd")) == fds

    # 3. the right criu: the same checkpoint restores
    del r.criu_path
    r.start()
    assert r.state().status == runtime.Status.RUNNING
    advances(out, last, by=3)
    assert counted(out)[0] == last + 1
    assert runtime.load(r.id, root=root).state().status == runtime.Status.RUNNING


def test_checkpoint_refused_when_not_running(create, images):
    o = create(["sh", "-c", COUNTER])
    with pytest.raises(runtime.InvalidState):  # CREATED: nothing runs yet
        o.c.checkpoint(runtime.CheckpointOpts(path=images("created")))
    o.c.start()
    o.c.kill(signal.SIGKILL)
    o.c.wait(timeout=10)
    with pytest.raises(runtime.InvalidState):
        o.c.checkpoint(runtime.CheckpointOpts(path=images("stopped")))


# ------------------------------------------------------------------ CLI


def _cli(root, *args, timeout=60, **popen):
    """barerun ARGS with stdio pipes; returns the Popen once it exited (its
    pipes may stay open in a detached container: never read to EOF)."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    p = subprocess.Popen([BARERUN, "--root", root, *args], **popen)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise
    return p


def _available(f, timeout=0.0):
    """What the pipe ``f`` holds now (without waiting for EOF)."""
    out = b""
    while select.select([f], [], [], timeout)[0]:
        chunk = os.read(f.fileno(), 65536)
        if not chunk:
            break
        out += chunk
        timeout = 0.0
    return out


def _fail_text(p):
    return (_available(p.stderr, 0.2) + _available(p.stdout, 0)).decode(errors="replace")


class PipeCounter:
    """The counter's lines read from a pipe as they come."""

    def __init__(self, f):
        self.f = f
        self.text = ""

    def numbers(self):
        self.text += _available(self.f, 0.05).decode()
        return numbers(self.text)

    def advances(self, beyond, by=3, timeout=10.0):
        return wait_for(lambda: (self.numbers() or [0])[-1] >= beyond + by, timeout,
                        f"the counter to pass {beyond + by}")

    def rest(self, timeout=10.0):
        """Everything until EOF (every writer gone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.f], [], [], 0.1)
            if r:
                chunk = os.read(self.f.fileno(), 65536)
                if not chunk:
                    return numbers(self.text)
                self.text += chunk.decode()
        raise AssertionError("the pipe never reached EOF")


@criu_needs_unfiltered
def test_cli_checkpoint_and_restore(root, bundle, images, tmp_path):
    p = subprocess.run([BARERUN, "checkpoint", "--help"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    assert "--leave-running" in p.stdout and "--image-path" in p.stdout

    b = bundle(["sh", "-c", COUNTER])
    cid, cid2 = new_container_id(), new_container_id()
    run = _cli(root, "run", "-d", "--bundle", b, cid)
    assert run.returncode == 0, _fail_text(run)
    out = PipeCounter(run.stdout)
    try:
        out.advances(0, by=3)

        img, work = images("cli-running"), images("cli-work")
        p = _cli(root, "checkpoint", "--image-path", img, "--work-path", work,
                 "--leave-running", "--leave-running", cid)
        assert p.returncode == 0, _fail_text(p)
        assert os.path.exists(os.path.join(work, "dump.log"))
        assert os.path.exists(os.path.join(img, "inventory.img"))
        assert not os.path.exists(os.path.join(img, "dump.log"))
        st = _cli(root, "state", cid)
        assert st.returncode == 0 and json.loads(st.stdout.read())["status"] == "running"
        out.advances(out.numbers()[-1], by=3)

        img2 = images("cli-exit")
        p = _cli(root, "checkpoint", "--image-path", img2, cid)
        assert p.returncode == 0, _fail_text(p)
        st = _cli(root, "state", cid)
        assert st.returncode != 0 and "does not exist" in st.stderr.read().decode()
        got = out.rest()  # the container is gone: its pipe ends
        last = got[-1]
        assert got == list(range(1, last + 1))
    finally:
        run.stdout.close()
        run.stderr.close()

    work2, pid_file = images("cli-work2"), str(tmp_path / "restored.pid")
    rst = _cli(root, "restore", "-d", "--image-path", img2, "--work-path", work2,
               "--pid-file", pid_file, "-no-subreaper", cid2, cwd=b)  # bundle: cwd
    try:
        assert rst.returncode == 0, _fail_text(rst)
        assert os.path.exists(os.path.join(work2, "restore.log"))
        pid = int(open(pid_file).read())
        st = _cli(root, "state", cid2)
        assert st.returncode == 0, st.stderr.read()
        state = json.loads(st.stdout.read())
        assert state["status"] == "running" and state["pid"] == pid and state["id"] == cid2
        assert cgroup_of(pid) == f"/barerun/{cid2}"
        restored = PipeCounter(rst.stdout)
        restored.advances(last, by=3)
        assert restored.numbers()[0] == last + 1
        p = _cli(root, "delete", "-f", cid2)
        assert p.returncode == 0, _fail_text(p)
        st = _cli(root, "state", cid2)
        assert st.returncode != 0 and "does not exist" in st.stderr.read().decode()
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                 open(f"/proc/{pid}/stat").read().split(") ")[1][0] in "ZX",
                 what="the restored init to die")
    finally:
        rst.stdout.close()
        rst.stderr.close()
