"""containerd 1.6 (containerd-shim-runc-v2) driving the real `barerun`
entry point: `ctr run --runc-binary <barerun>` and the task operations
(see the shared CLIENTS.md notes, section 2, for the runtime calls each makes).

Each test asserts what the container printed and what ctr reports; the
``ctr`` fixture removes every task and container a test made and then
checks that barerun left nothing: no state directory under the shim's
runc root, no cgroup.  The daemon itself comes from conftest.py.
"""

import json
import os
import time
import uuid

import pytest

from runtime.bundle import make_rootfs
from tests.integration.conftest import BARERUN, ID_PREFIX, tty_run
from tests.conftest import pid_alive as _alive
from tests.conftest import read

CGROUP_ROOT = "/sys/fs/cgroup"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real containers need root")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def bb_rootfs(tmp_path_factory):
    return make_rootfs(str(tmp_path_factory.mktemp("containerd-bb") / "rootfs"))


@pytest.fixture(scope="module")
def bb_image(containerd, busybox_oci_archive):
    """The busybox rootfs as an image in the daemon (for ctr c checkpoint
    and ctr c restore, which need an image-based container)."""
    archive, ref = busybox_oci_archive
    containerd.ctr("image", "import", archive)
    r = containerd.ctr("image", "ls", "-q")
    assert ref in r.stdout.split(), r.stdout
    return ref




class Ctr:
    """ctr against the session's containerd, with barerun as the runtime;
    remembers the containers (and checkpoint images) a test made."""

    def __init__(self, daemon, rootfs, tmp_path):
        self.d = daemon
        self.rootfs = rootfs
        self.tmp = tmp_path
        self.ids = []
        self.images = []
        self.pids = set()

    def __call__(self, *args, **kw):
        return self.d.ctr(*args, **kw)

    def new_id(self):
        cid = f"{ID_PREFIX}{uuid.uuid4().hex[:8]}"
        self.ids.append(cid)
        return cid

    def run_args(self, cid, *cmd, image=None, env=True, rm=False, extra=()):
        argv = ["run", "--runc-binary", BARERUN, *(["--rm"] if rm else []), *extra]
        if env:
            argv += ["--env", "PATH=/bin"]
        if image:
            return argv + [image, cid, *cmd]
        return argv + ["--rootfs", self.rootfs, cid, *cmd]

    def run_detached(self, *cmd, image=None, extra=(), wait_for=None):
        """`ctr run -d`; the init's output goes to a log file (--log-uri).
        Returns (id, pid, log path) once ``wait_for`` appears in the log."""
        cid = self.new_id()
        log = str(self.tmp / f"{cid}.log")
        self(*self.run_args(cid, *cmd, image=image,
                            extra=("-d", "--log-uri", f"file://{log}", *extra)))
        pid = self.task_pid(cid)
        self.pids.add(pid)
        if wait_for is not None:
            wait_until(lambda: wait_for in read(log), f"{wait_for!r} in {log}")
        return cid, pid, log

    def tasks(self):
        """{id: (pid, STATUS)} from `ctr task ls`."""
        out = {}
        for line in self("task", "ls").stdout.splitlines()[1:]:
            f = line.split()
            if len(f) == 3:
                out[f[0]] = (int(f[1]), f[2])
        return out

    def task_pid(self, cid):
        return self.tasks()[cid][0]

    def status(self, cid):
        return self.tasks().get(cid, (0, None))[1]

    def wait_status(self, cid, status, timeout=10):
        wait_until(lambda: self.status(cid) == status, f"task {cid} {status}", timeout)

    def exec(self, cid, *cmd, tty=False, exec_id=None):
        argv = ["task", "exec", "--exec-id", exec_id or f"e{uuid.uuid4().hex[:6]}"]
        if tty:
            return self.tty(*argv, "-t", cid, *cmd)
        return self(*argv, cid, *cmd, check=False)

    def tty(self, *args, timeout=30):
        """ctr with a pty as its stdio (ctr -t needs a console):
        (returncode, everything it printed)."""
        argv = ["ctr", "--address", self.d.address, "--namespace", self.d.namespace, *args]
        return tty_run(argv, self.d.env, timeout)

    def bundle(self, cid):
        """The bundle the shim made for ``cid`` (it holds log.json)."""
        return os.path.join(self.d.dir, "state", "io.containerd.runtime.v2.task",
                            self.d.namespace, cid)

    def log_json(self, cid):
        return os.path.join(self.bundle(cid), "log.json")

    def runtime_state(self, cid):
        """barerun's state directory of ``cid`` under the shim's --root."""
        return os.path.join(self.d.runc_root, cid)

    def cgroups(self, cid):
        """Cgroup directories of ``cid`` (ctr's default path /<ns>/<id>)."""
        found = []
        for hier in os.listdir(CGROUP_ROOT):
            d = os.path.join(CGROUP_ROOT, hier, self.d.namespace, cid)
            if os.path.isdir(d):
                found.append(d)
        return found

    def cleanup(self):
        problems = []
        for cid in self.ids:
            if cid in self.tasks():
                self("task", "kill", "--all", "-s", "SIGKILL", cid, check=False)
                r = self("task", "rm", "-f", cid, check=False)
                if r.returncode != 0 and cid in self.tasks():
                    problems.append(f"task rm -f {cid}: {r.stderr.strip()}")
            r = self("containers", "rm", cid, check=False)
            if r.returncode != 0 and "not found" not in r.stderr:
                problems.append(f"containers rm {cid}: {r.stderr.strip()}")
        for ref in self.images:
            self("images", "rm", "--sync", ref, check=False)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in self.pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for cid in self.ids:
            if os.path.exists(self.runtime_state(cid)):
                problems.append(f"barerun state left: {self.runtime_state(cid)}")
            if self.cgroups(cid):
                problems.append(f"cgroups left: {self.cgroups(cid)}")
        stray = [p for p in self.pids if _alive(p)]
        if stray:
            problems.append(f"container processes left: {stray}")
        return problems


@pytest.fixture
def ctr(containerd, bb_rootfs, tmp_path):
    c = Ctr(containerd, bb_rootfs, tmp_path)
    yield c
    problems = c.cleanup()
    assert not problems, "; ".join(problems)



def wait_until(cond, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# a detached init that ends on SIGTERM (as pid 1 it has no default action)
# ("started" once its sleep is forked: `task ps` then shows two processes)
SERVER = 'trap "echo term; exit 0" TERM; sleep 1000 & echo started; wait'


# ------------------------------------------------------------------ tests


def test_run_rm_prints_and_leaves_nothing(ctr):
    cid = ctr.new_id()
    r = ctr(*ctr.run_args(cid, "/bin/echo", "hi", env=False, rm=True))
    assert r.stdout == "hi\n", r
    assert cid not in ctr.tasks()
    assert not os.path.exists(ctr.runtime_state(cid))
    assert not ctr.cgroups(cid)


def test_run_rm_exit_status(ctr):
    cid = ctr.new_id()
    r = ctr(*ctr.run_args(cid, "sh", "-c", "echo out; echo err >&2; exit 7", rm=True),
            check=False)
    assert r.returncode == 7, r
    assert r.stdout == "out\n"
    assert "err\n" in r.stderr


def test_detached_exec_with_and_without_tty(ctr):
    cid, pid, log = ctr.run_detached("sh", "-c", SERVER, wait_for="started")
    assert ctr.status(cid) == "RUNNING"
    r = ctr.exec(cid, "sh", "-c", "echo exec", exec_id="e1")
    assert r.returncode == 0, r
    assert r.stdout == "exec\n"
    # the exit status of an exec'd process reaches ctr
    assert ctr.exec(cid, "sh", "-c", "exit 3").returncode == 3
    rc, out = ctr.exec(cid, "sh", "-c", "echo exec-tty; tty", tty=True, exec_id="e2")
    assert rc == 0, out
    assert "exec-tty" in out
    assert "/dev/pts/" in out, out
    # an exec'd process sees the init as pid 1 of the container
    r = ctr.exec(cid, "cat", "/proc/1/cmdline")
    assert r.stdout.split("\0")[:2] == ["sh", "-c"], r


def test_exec_failure_is_reported(ctr):
    cid, _, _ = ctr.run_detached("sh", "-c", SERVER, wait_for="started")
    r = ctr.exec(cid, "/no/such/program")
    assert r.returncode != 0
    assert "OCI runtime exec failed" in r.stderr, r.stderr
    assert "/no/such/program" in r.stderr, r.stderr
    assert ctr.status(cid) == "RUNNING"


def test_pause_resume_and_ps(ctr):
    cid, pid, _ = ctr.run_detached("sh", "-c", SERVER, wait_for="started")
    r = ctr("task", "ps", cid)
    pids = [int(line.split()[0]) for line in r.stdout.splitlines()[1:]]
    assert pid in pids and len(pids) == 2, r.stdout  # sh and its sleep
    freezer = os.path.join(CGROUP_ROOT, "freezer", ctr.d.namespace, cid, "freezer.state")
    ctr("task", "pause", cid)
    assert ctr.status(cid) == "PAUSED"
    assert read(freezer).strip() == "FROZEN"
    ctr("task", "resume", cid)
    assert ctr.status(cid) == "RUNNING"
    assert read(freezer).strip() == "THAWED"
    r = ctr.exec(cid, "echo", "after-resume")
    assert r.stdout == "after-resume\n"


def test_kill_then_kill_stopped(ctr):
    cid, pid, log = ctr.run_detached("sh", "-c", SERVER, wait_for="started")
    ctr("task", "kill", cid)  # SIGTERM, as `kill ID 15`
    ctr.wait_status(cid, "STOPPED")
    wait_until(lambda: "term" in read(log), "the trap's output")
    # the init is gone: containerd classifies barerun's error text
    r = ctr("task", "kill", cid, check=False)
    assert r.returncode != 0
    assert "process already finished: not found" in r.stderr, r.stderr
    # log.json (appended to by every call) holds JSON records and nothing
    # else: the shim decodes all of it and shows the last error
    records = [json.loads(line) for line in read(ctr.log_json(cid)).splitlines()]
    assert records and set(records[-1]) == {"level", "msg", "time"}, records
    assert records[-1]["level"] == "error"
    assert "container not running" in records[-1]["msg"]
    ctr("task", "rm", cid)
    assert not os.path.exists(ctr.runtime_state(cid))


def test_kill_all_sigkill(ctr):
    cid, pid, _ = ctr.run_detached("sh", "-c", "sleep 1000 & sleep 1000 & echo started; wait",
                                   wait_for="started")
    wait_until(lambda: len(ctr("task", "ps", cid).stdout.splitlines()) == 4, "three processes")
    ctr("task", "kill", "--all", "-s", "SIGKILL", cid)
    ctr.wait_status(cid, "STOPPED")
    assert not _alive(pid)
    ctr("task", "rm", cid)


def test_task_rm_force_running(ctr):
    cid, pid, _ = ctr.run_detached("sleep", "1000")
    ctr("task", "rm", "-f", cid)
    assert cid not in ctr.tasks()
    wait_until(lambda: not _alive(pid), f"pid {pid} gone")
    assert not os.path.exists(ctr.runtime_state(cid))
    assert not ctr.cgroups(cid)


def test_memory_limit_and_metrics(ctr):
    limit = 64 * 1024 * 1024
    cid, pid, _ = ctr.run_detached("sh", "-c", SERVER, wait_for="started",
                                   extra=("--memory-limit", str(limit)))
    mem = os.path.join(CGROUP_ROOT, "memory", ctr.d.namespace, cid)
    assert int(read(os.path.join(mem, "memory.limit_in_bytes"))) == limit
    # the shim finds the cgroup through /proc/<pid>/cgroup
    r = ctr("task", "metrics", cid)
    metrics = dict(line.split(None, 1) for line in r.stdout.splitlines()
                   if len(line.split(None, 1)) == 2)
    assert metrics.get("memory.limit_in_bytes", "").strip() == str(limit), r.stdout
    assert metrics.get("pids.current", "").strip() == "2", r.stdout  # sh and sleep


COUNTER = ('r=$RANDOM$RANDOM; i=0; echo started; '
           'while true; do i=$((i+1)); echo "$r $i" > /tmp/c; mv /tmp/c /tmp/count; '
           'sleep 0.05; done')


def _count(ctr, cid):
    """(token, count) the counter wrote last; (None, 0) before its first."""
    r = ctr.exec(cid, "cat", "/tmp/count")
    if r.returncode != 0 and "No such file" in r.stderr:
        return None, 0
    assert r.returncode == 0, r
    token, n = r.stdout.split()
    return token, int(n)


def test_task_checkpoint_leaves_it_running(ctr, tmp_path):
    """`ctr task checkpoint --image-path`: pause, checkpoint
    --leave-running, resume (works on a --rootfs container)."""
    cid, pid, _ = ctr.run_detached("sh", "-c", COUNTER, wait_for="started")
    wait_until(lambda: _count(ctr, cid)[1] >= 3, "the counter")
    images = tmp_path / "ckpt"
    images.mkdir()
    r = ctr("task", "checkpoint", "--image-path", images, cid, check=False)
    assert r.returncode == 0, (r, read(os.path.join(ctr.bundle(cid), "criu-dump.log")))
    names = os.listdir(images)
    assert "inventory.img" in names, names
    assert any(n.startswith("pages-") for n in names), names
    assert ctr.status(cid) == "RUNNING"
    token, n = _count(ctr, cid)
    wait_until(lambda: _count(ctr, cid)[1] > n, "the counter going on")
    assert ctr.task_pid(cid) == pid


def test_checkpoint_and_live_restore(ctr, bb_image):
    """Image-based: `ctr c checkpoint --task` (an image holding the
    checkpoint), then the original is removed and `ctr c restore --live`
    brings the process back with its memory (same token, counter on)."""
    cid, pid, _ = ctr.run_detached("sh", "-c", COUNTER, image=bb_image, wait_for="started")
    wait_until(lambda: _count(ctr, cid)[1] >= 5, "the counter")
    ref = f"barerun-test-checkpoint-{uuid.uuid4().hex[:8]}:latest"
    ctr.images.append(ref)
    ctr("containers", "checkpoint", "--task", cid, ref)
    token, n = _count(ctr, cid)
    assert ctr.status(cid) == "RUNNING"
    ctr("task", "kill", "-s", "SIGKILL", cid)
    ctr.wait_status(cid, "STOPPED")
    ctr("task", "rm", cid)
    ctr("containers", "rm", cid)
    assert not os.path.exists(ctr.runtime_state(cid))

    ctr("containers", "restore", "--live", cid, ref)
    assert ctr.status(cid) == "RUNNING"
    ctr.pids.add(ctr.task_pid(cid))
    wait_until(lambda: _count(ctr, cid)[1] > n, "the restored counter going on")
    token2, n2 = _count(ctr, cid)
    assert token2 == token, "the restored process is not the checkpointed one"
    # the restored task is a normal one: exec, pause, kill
    ctr("task", "pause", cid)
    assert ctr.status(cid) == "PAUSED"
    ctr("task", "resume", cid)
    ctr("task", "kill", "-s", "SIGKILL", cid)
    ctr.wait_status(cid, "STOPPED")


def test_create_failure_shows_barerun_message(ctr):
    """containerd reads barerun's log.json: the message is barerun's, not
    "unable to retrieve OCI runtime error"."""
    cid = ctr.new_id()
    r = ctr(*ctr.run_args(cid, "/no/such/binary", rm=True), check=False)
    assert r.returncode != 0
    assert "unable to retrieve OCI runtime error" not in r.stderr, r.stderr
    assert "OCI runtime create failed: " in r.stderr, r.stderr
    assert "/no/such/binary" in r.stderr
    assert "No such file or directory" in r.stderr
    assert cid not in ctr.tasks()
    assert not os.path.exists(ctr.runtime_state(cid))
    assert not ctr.cgroups(cid)


def test_create_failure_bad_spec(ctr):
    """A spec barerun refuses: the field is named in ctr's error."""
    cid = ctr.new_id()
    r = ctr(*ctr.run_args(cid, "/bin/true", rm=True, extra=("--cap-add", "CAP_BOGUS")),
            check=False)
    assert r.returncode != 0
    assert "unable to retrieve OCI runtime error" not in r.stderr, r.stderr
    assert "OCI runtime create failed: invalid spec: process.capabilities." in r.stderr, r.stderr
    assert "CAP_BOGUS" in r.stderr
    assert not os.path.exists(ctr.runtime_state(cid))
    assert not ctr.cgroups(cid)
