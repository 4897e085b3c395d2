"""Escapes through the `barerun` command, where the fd numbers are those a
client's call gives (CVE-2024-21626 class: the cgroup directory opened for
CLONE_INTO_CGROUP was fd 7 in `run`'s init and fd 6 in `exec`'s child)."""

import errno
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.runtime.test_cli import BARERUN, cgroups_of, cli, cli_rootfs, subreaper  # noqa: F401 - fixtures
from tests.security.test_escapes import loop_disk, with_disk_node  # noqa: F401 - fixture

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ESCAPE = "cd ../../../../../../../../..; stat -c '%d %i' ."


def _host_root():
    st = os.stat("/")
    return f"{st.st_dev} {st.st_ino}"


@pytest.mark.parametrize("n", range(3, 12))
def test_run_cwd_through_a_leaked_fd(cli, n):
    def m(spec):
        spec["process"]["cwd"] = f"/proc/self/fd/{n}"
    cid = cli.new_id()
    b = cli.bundle(["sh", "-c", ESCAPE], m)
    r = cli("run", "--bundle", b, cid)
    assert r.out.strip() != _host_root(), f"cwd /proc/self/fd/{n} reached the host's /"
    if r.rc != 0:
        assert "process.cwd" in r.err or f"/proc/self/fd/{n}" in r.err, r.err


@pytest.mark.parametrize("n", range(3, 12))
def test_exec_cwd_through_a_leaked_fd(cli, n):
    cid, _pid, _b = cli.create(["sleep", "60"])
    cli("start", cid).ok()
    r = cli("exec", "--cwd", f"/proc/self/fd/{n}", cid, "sh", "-c", ESCAPE)
    assert r.out.strip() != _host_root(), f"exec --cwd /proc/self/fd/{n} reached the host's /"
    if r.rc != 0:
        assert "process.cwd" in r.err or f"/proc/self/fd/{n}" in r.err, r.err


# ------------------------------------------- devices on a pure cgroup v2 view

# barerun in a private mount namespace whose /sys/fs/cgroup is the unified
# hierarchy alone: it sees a pure v2 host (as most distributions are), so the
# BPF device program is all that stands between the container and the disk.
V2_VIEW = """#!/bin/sh
exec unshare --mount --propagation private sh -c \\
  'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$0" "$@"' {exe} "$@"
"""


@pytest.fixture
def v2_barerun(tmp_path):
    exe = tmp_path / "barerun-v2-view"
    exe.write_text(V2_VIEW.format(exe=shlex.quote(BARERUN)))
    exe.chmod(0o755)
    probe = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    # the view really is pure v2: barerun's own detection says so
    mode = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$0" -c "$1"', sys.executable,
         "from lowlevel import cgroups; l = cgroups.detect(); print(l.mode, sorted(l.v1))"],
        capture_output=True, text=True, cwd=REPO)
    assert mode.stdout.split() == ["v2", "[]"], (mode.stdout, mode.stderr)
    return str(exe)


@pytest.mark.parametrize("rules", [[{"allow": False, "access": "rwm"}], []],
                         ids=["deny-all", "no-rules"])
def test_v2_a_listed_device_is_not_readable_unless_allowed(cli, v2_barerun, loop_disk, rules):
    _dev, rdev = loop_disk
    b = cli.bundle(["head", "-c", "17", "/dev/hostdisk"], with_disk_node(rdev, rules))
    r = cli("run", "--bundle", b, cli.new_id(), exe=v2_barerun)
    assert "BARERUN-HOST-DISK" not in r.out, "the container read the host disk"
    assert r.rc != 0 and os.strerror(errno.EPERM) in r.err, (r.rc, r.out, r.err)


def test_v2_mknod_of_a_host_disk_is_not_readable(cli, v2_barerun, loop_disk):
    _dev, rdev = loop_disk
    # /dev is the container's own tmpfs; the node made there has no rule
    b = cli.bundle(["sh", "-c", f"mknod /dev/d b {os.major(rdev)} {os.minor(rdev)} && "
                                "head -c 17 /dev/d"], with_disk_node(rdev, []))
    r = cli("run", "--bundle", b, cli.new_id(), exe=v2_barerun)
    assert "BARERUN-HOST-DISK" not in r.out, "the container read the host disk"
    assert os.strerror(errno.EPERM) in r.err, (r.rc, r.out, r.err)


def test_v2_an_allowed_device_is_readable(cli, v2_barerun, loop_disk):
    """The checks above can fail: with an allow rule the disk is read."""
    _dev, rdev = loop_disk
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "b", "major": os.major(rdev), "minor": os.minor(rdev),
              "access": "r"}]
    b = cli.bundle(["head", "-c", "17", "/dev/hostdisk"], with_disk_node(rdev, rules))
    r = cli("run", "--bundle", b, cli.new_id(), exe=v2_barerun)
    assert (r.rc, r.out) == (0, "BARERUN-HOST-DISK"), r.err


# ------------------------------------- a CAP_SYS_PTRACE container, during exec

# The init waits for the go file, then looks at every other process it can
# see, as an attacker with CAP_SYS_PTRACE would: the root, cwd and each
# directory fd of its /proc/<pid>, followed (physically: cd -P) up with
# ".." to see whether it reaches the host's /.
WATCHER = r"""
while [ ! -e /mnt/go ]; do sleep 0.02; done
for p in /proc/[0-9]*; do
  n=${p#/proc/}
  [ "$n" = "$$" ] || [ "$n" = 1 ] && continue
  for d in $p/root $p/cwd $p/fd/*; do
    [ -d "$d" ] || continue
    echo "$d $(cd -P "$d/../../../../../../../../.." 2>/dev/null && stat -c '%d %i' .)"
  done
done
echo done
exec sleep 60
"""


def _stopped_in(cid, timeout=10.0):
    """The host pid of a stopped (state T) process in the container's
    cgroup: the exec'd process at its stop point."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in cgroups_of(cid):
            try:
                pids = open(os.path.join(d, "cgroup.procs")).read().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    stat = open(f"/proc/{pid}/stat").read()
                except OSError:
                    continue
                if stat.rsplit(")", 1)[1].split()[0] == "T":
                    return int(pid)
        time.sleep(0.02)
    raise AssertionError(f"no stopped exec'd process in {cid}'s cgroup")


def test_exec_holds_nothing_of_the_host_when_it_enters_the_pid_namespace(cli, tmp_path):
    """A container process with CAP_SYS_PTRACE looks at the exec'd process
    at its first step in the container's pid namespace (stopped there):
    neither its root, its cwd nor any directory fd may lead to the host's
    /, and the host's pid namespace fd must not be among its fds."""
    shared = tmp_path / "shared"
    shared.mkdir()

    def m(spec):
        spec["process"]["capabilities"] = {
            k: ["CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH"]
            for k in ("bounding", "effective", "permitted")}
        spec["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(shared),
                               "options": ["rbind", "rw"]})
    cid = cli.new_id()
    b = cli.bundle(["sh", "-c", WATCHER], m)
    p, out, err = cli.spawn("run", "--bundle", b, cid)
    try:
        deadline = time.monotonic() + 10
        while cli("state", cid).rc != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        cli.wait_status(cid, "running")
        e, _eo, ee = cli.spawn("exec", cid, "true",
                               env=dict(os.environ, BARERUN_STOP_AT="exec-in-pidns"))
        pid = None
        try:
            pid = _stopped_in(cid)
            host_pidns = os.stat("/proc/self/ns/pid")
            for fd in os.listdir(f"/proc/{pid}/fd"):
                st = os.stat(f"/proc/{pid}/fd/{fd}")
                assert (st.st_dev, st.st_ino) != (host_pidns.st_dev, host_pidns.st_ino), \
                    f"the exec'd process holds the host's pid namespace as fd {fd}"
            (shared / "go").write_text("")
            deadline = time.monotonic() + 20
            while "done" not in open(out).read() and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
            else:
                e.kill()
            e.wait(timeout=20)
        assert e.returncode == 0, open(ee).read()
    finally:
        cli("kill", cid, "KILL")
        p.wait(timeout=20)
    text = open(out).read()
    assert "\ndone\n" in text, (text, open(err).read())
    lines = text.split("\ndone\n")[0].splitlines()
    assert any(ln.startswith("/proc/") and "/root " in ln for ln in lines), \
        f"the watcher saw no other process: {text!r}"
    st = os.stat("/")
    host = f"{st.st_dev} {st.st_ino}"
    reached = [ln for ln in lines if ln.endswith(" " + host)]
    assert not reached, f"reached the host's / through: {reached}"
