"""podman 4.3.1 + conmon 2.1.6 (Debian's packages) driving barerun.

Set-up (CLIENTS.md sections 1 and 3): Debian's podman is installed with
`make setup`; podman runs with a private containers.conf and
storage.conf (overlay storage, runroot, graphroot and podman's tmp_dir in a
temporary directory; host network and cgroup namespaces; the cgroupfs
manager; events to a file; default_ulimits within this machine's hard
limits, which root cannot raise without CAP_SYS_RESOURCE) and with
``--runtime <dir>/runc``: a symlink named ``runc`` to the barerun entry
point, because podman passes ``--log-format=json --log FILE`` only to a
runtime of that basename.  conmon runs barerun's create/exec/restore,
podman itself the rest (with a minimal environment, without --root).

Every container is named "barerun-test-<hex>"; each test removes its own
containers, and the session's end removes every container and image of
the private storage, then checks that nothing is left: no runtime state
and no cgroup of any container podman made, no conmon process, no mount
under the private directory.
"""

import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

from tests.bundles import make_rootfs
from tests.integration.conftest import (BARERUN, kill_and_wait, claim, mounts_under,
                                        owner_alive, processes_naming, reclaim)
from tests.conftest import wait_for as _wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real containers need root")

PACKAGES = ("podman", "conmon", "containernetworking-plugins", "catatonit", "iptables")
NAME_PREFIX = "barerun-test-"
RUNTIME_ROOT = "/run/barerun"  # podman never passes --root: barerun's default
CGROUP_ROOT = "/sys/fs/cgroup"
CRIU_DIR = "/usr/local/sbin"  # CRIU >= 4 (make setup), first on PATH
TIMEOUT = 120


# ------------------------------------------------------------------ set-up

def _missing_packages():
    missing = []
    for pkg in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                           capture_output=True, text=True)
        if r.returncode != 0 or "install ok installed" not in r.stdout:
            missing.append(pkg)
    return missing


def check_podman_installed():
    """`make setup` (scripts/setup-host.sh) installs podman and what it
    needs; the tests never install anything themselves."""
    missing = _missing_packages()
    if missing:
        pytest.fail(f"{' '.join(missing)} not installed: `make setup` installs them")


def _processes_naming(text):
    """pids of the processes whose command line contains ``text``."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                st = f.read()
        except OSError:
            continue
        if st[st.rindex(b")") + 2:][:1] in (b"Z", b"X"):
            continue
        if text.encode() in argv:
            pids.append(int(name))
    return pids


def _cgroup_dirs(name):
    """Directories called ``name`` anywhere in the first levels of every
    hierarchy (podman's cgroupfs paths are /libpod_parent/libpod-<id>)."""
    found = []
    for hier in sorted(os.listdir(CGROUP_ROOT)):
        base = os.path.join(CGROUP_ROOT, hier)
        for sub in ("", "libpod_parent"):
            d = os.path.join(base, sub, name)
            if os.path.isdir(d):
                found.append(d)
    return found


def _rmdir_tree(path):
    """rmdir a cgroup directory and its children (bottom up); True when gone."""
    for dirpath, dirnames, _ in os.walk(path, topdown=False):
        for d in dirnames:
            try:
                os.rmdir(os.path.join(dirpath, d))
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


class Podman:
    """podman with a private configuration, storage and barerun as ``runc``."""

    def __init__(self, base):
        self.dir = base
        self.runtime_dir = os.path.join(base, "rt")
        self.runtime = os.path.join(self.runtime_dir, "runc")
        self.rootfs = os.path.join(base, "rootfs")
        self.storage = os.path.join(base, "storage")
        self.tmp_dir = os.path.join(base, "tmp")
        self.ids = set()  # every container id made through this object
        self.env = dict(os.environ)
        path = [p for p in self.env.get("PATH", "").split(":") if p and p != CRIU_DIR]
        self.env["PATH"] = ":".join([CRIU_DIR] + (path or ["/usr/sbin", "/usr/bin",
                                                           "/sbin", "/bin"]))
        self.env.pop("NOTIFY_SOCKET", None)
        self.env["CONTAINERS_CONF"] = os.path.join(base, "containers.conf")
        self.env["CONTAINERS_STORAGE_CONF"] = os.path.join(base, "storage.conf")

    def setup(self):
        os.makedirs(self.runtime_dir)
        os.symlink(BARERUN, self.runtime)
        for d in ("run", "root"):
            os.makedirs(os.path.join(self.storage, d))
        os.makedirs(self.tmp_dir)
        os.makedirs(os.path.join(self.dir, "net"))
        make_rootfs(self.rootfs)
        with open(self.env["CONTAINERS_CONF"], "w") as f:
            f.write(f'''[containers]
netns = "host"
cgroupns = "host"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[network]
network_config_dir = "{self.dir}/net"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{self.tmp_dir}"
runtime = "runc"
[engine.runtimes]
runc = ["{self.runtime}"]
''')
        with open(self.env["CONTAINERS_STORAGE_CONF"], "w") as f:
            f.write(f'''[storage]
driver = "overlay"
runroot = "{self.storage}/run"
graphroot = "{self.storage}/root"
''')

    def __call__(self, *args, check=True, timeout=TIMEOUT, input=None):
        """``podman --runtime R --cgroup-manager=cgroupfs --events-backend=file
        ARGS`` -> CompletedProcess (text)."""
        argv = ["podman", "--runtime", self.runtime, "--cgroup-manager=cgroupfs",
                "--events-backend=file", *[str(a) for a in args]]
        r = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.env,
                           timeout=timeout, cwd=self.dir,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv[5:])} -> rc {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def container_id(self, name):
        cid = self("inspect", "--format", "{{.Id}}", name).stdout.strip()
        self.ids.add(cid)
        return cid

    def inspect(self, name):
        return json.loads(self("inspect", name).stdout)[0]

    def status(self, name):
        return self("inspect", "--format", "{{.State.Status}}", name).stdout.strip()

    def runtime_state(self, cid):
        """barerun's own view, as podman's runtime calls see it (default root)."""
        r = subprocess.run([BARERUN, "state", cid], capture_output=True, text=True, timeout=30)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def leftovers(self, cid):
        """What container ``cid`` left behind in the runtime: state, cgroups."""
        left = []
        if os.path.exists(os.path.join(RUNTIME_ROOT, cid)):
            left.append(f"runtime state {RUNTIME_ROOT}/{cid}")
        left += _cgroup_dirs(f"libpod-{cid}")
        return left

    def conmons(self):
        return _processes_naming(self.runtime)

    def wait_conmons(self, timeout=30):
        deadline = time.monotonic() + timeout
        while self.conmons() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.conmons()


@pytest.fixture(scope="session")
def podman_session():
    """The session's private podman (see the module docstring); at the end
    everything is removed and checked."""
    if not os.access(BARERUN, os.X_OK):
        pytest.fail(f"the barerun entry point {BARERUN} is missing (make setup)")
    check_podman_installed()
    for old in glob.glob("/tmp/barerun-podman-*"):
        alive = owner_alive(old)
        if alive is False or (alive is None and not processes_naming(old)):
            _reclaim_session(old)
    had_parent = bool(_cgroup_dirs("libpod_parent"))
    base = tempfile.mkdtemp(prefix="barerun-podman-", dir="/tmp")
    claim(base)
    if not had_parent:
        open(os.path.join(base, "made-libpod_parent"), "w").close()
    p = Podman(base)
    p.setup()
    yield p
    problems = podman_teardown(p, had_parent)
    assert not problems, "; ".join(problems)


def _kill_cgroup(path):
    """SIGKILL every process in a cgroup directory tree and wait for them."""
    pids = []
    for dirpath, _dirs, _files in os.walk(path):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    kill_and_wait(pids, timeout=0.5)


def _reclaim_session(old):
    """What a session killed before its teardown left at ``old``: its
    containers' cgroups (podman's libpod-<id>, and libpod_parent when that
    session made it), conmons, its overlay home still mounted, the directory."""
    made_parent = os.path.exists(os.path.join(old, "made-libpod_parent"))
    try:
        cids = os.listdir(os.path.join(old, "storage", "root", "overlay-containers"))
    except OSError:
        cids = []
    for cid in cids:
        for d in _cgroup_dirs(f"libpod-{cid}"):
            _kill_cgroup(d)
            _rmdir_tree(d)
    reclaim(old)
    if made_parent:
        for d in _cgroup_dirs("libpod_parent"):
            if not any(n.startswith("libpod-") for n in os.listdir(d)):
                _rmdir_tree(d)


def podman_teardown(p, had_parent):
    """Remove every container, image and volume of ``p``, its cgroups
    (libpod_parent unless ``had_parent``) and mounts, and its directory
    when nothing is mounted there; returns a list of problems."""
    base = p.dir
    problems = []
    r = p("ps", "-a", "--no-trunc", "-q", check=False)
    p.ids.update(r.stdout.split())
    for args in (("rm", "-af", "-t", "0"), ("rmi", "-af"), ("volume", "rm", "-af")):
        r = p(*args, check=False)
        if r.returncode != 0:
            problems.append(f"podman {' '.join(args)}: rc {r.returncode}: {r.stderr.strip()}")
    r = p("ps", "-a", "-q", check=False)
    if r.stdout.strip():
        problems.append(f"containers left in podman: {r.stdout.split()}")
    # conmon, `podman container cleanup`: all name the runtime path
    alive = p.wait_conmons()
    if alive:
        problems.append(f"conmon/podman processes still alive: {alive}")
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for cid in sorted(p.ids):
        left = p.leftovers(cid)
        if left:
            problems.append(f"container {cid[:12]} left {left}")
            subprocess.run([BARERUN, "delete", "--force", cid], capture_output=True,
                           timeout=30)
    # podman's own cgroups: /libpod_parent and conmon's /libpod_parent/conmon
    if not had_parent:
        for d in _cgroup_dirs("libpod_parent"):
            if not _rmdir_tree(d):
                problems.append(f"cannot remove podman's cgroup {d}")
    # the overlay driver keeps its home mounted (a private bind on itself);
    # any other mount (a container's rootfs, shm) is a leftover
    home = os.path.join(p.storage, "root", "overlay")
    mounts = mounts_under(base)
    stray = [mp for mp in mounts if mp != home]
    if stray:
        problems.append(f"container mounts left under {base}: {stray}")
    for mp in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    left = mounts_under(base)
    if left:
        problems.append(f"mounts left under {base}: {left}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return problems


@pytest.fixture
def podman(podman_session):
    """The session's podman for one test: the containers the test named
    (with ``podman.name()``) are removed after it, and must leave nothing
    in the runtime."""
    names = []

    def name():
        n = f"{NAME_PREFIX}{uuid.uuid4().hex[:8]}"
        names.append(n)
        return n

    podman_session.name = name
    yield podman_session
    problems = []
    for n in names:
        r = podman_session("inspect", "--format", "{{.Id}}", n, check=False)
        if r.returncode == 0:
            podman_session.ids.add(r.stdout.strip())
            rm = podman_session("rm", "-f", "-t", "0", n, check=False)
            if rm.returncode != 0:
                problems.append(f"podman rm -f {n}: {rm.stderr.strip()}")
    if podman_session.wait_conmons():
        problems.append(f"conmon processes left: {podman_session.conmons()}")
    for cid in sorted(podman_session.ids):
        left = podman_session.leftovers(cid)
        if left:
            problems.append(f"container {cid[:12]} left {left}")
    assert not problems, "; ".join(problems)


@pytest.fixture(scope="session")
def busybox_image(podman_session, busybox_oci_archive):
    """The busybox image (an OCI archive built in Python), loaded once."""
    path, ref = busybox_oci_archive
    r = podman_session("load", "-i", path)
    assert ref in r.stdout + r.stderr, r.stdout + r.stderr
    return ref



def _cidfile(podman):
    return os.path.join(podman.dir, f"cid-{uuid.uuid4().hex[:8]}")


def _read_cid(podman, path):
    with open(path) as f:
        cid = f.read().strip()
    os.unlink(path)
    podman.ids.add(cid)
    return cid


# ------------------------------------------------------------------ tests


def test_run_rm_prints(podman):
    cidfile = _cidfile(podman)
    r = podman("run", "--rm", "--name", podman.name(), "--cidfile", cidfile,
               "--rootfs", podman.rootfs, "/bin/echo", "hi")
    assert r.stdout == "hi\n"
    cid = _read_cid(podman, cidfile)
    assert podman("ps", "-a", "-q").stdout.strip() == ""
    assert podman.leftovers(cid) == []


def test_run_exit_status_and_spec(podman):
    """The exit status passes through; podman's spec (hostname, env,
    rlimits from default_ulimits, masked and read-only paths, cgroup) holds."""
    script = ("echo host=$(hostname); echo nofile=$(ulimit -n); "
              "echo term=$TERM; cat /proc/kcore | wc -c; "
              "touch /proc/sys/x 2>/dev/null || echo ro-proc-sys; "
              "grep -c libpod- /proc/self/cgroup; exit 3")
    r = podman("run", "--rm", "--name", podman.name(), "--hostname", "bb-host",
               "--rootfs", podman.rootfs, "/bin/sh", "-c", script, check=False)
    assert r.returncode == 3, r.stderr
    lines = r.stdout.split()
    assert "host=bb-host" in lines
    assert "nofile=20000" in lines
    assert "term=xterm" in lines
    assert lines[3] == "0"  # /proc/kcore masked by /dev/null
    assert "ro-proc-sys" in lines
    assert int(lines[-1]) > 0  # in its /libpod_parent/libpod-<id> cgroups


def test_run_tty(podman):
    r = podman("run", "--rm", "-t", "--name", podman.name(), "--rootfs", podman.rootfs,
               "/bin/sh", "-c", "tty; echo done")
    out = r.stdout.replace("\r\n", "\n")
    assert out.startswith("/dev/pts/"), r.stdout
    assert out.endswith("done\n")


def test_detached_exec(podman):
    name = podman.name()
    podman("run", "-d", "--name", name, "--rootfs", podman.rootfs,
           "/bin/sh", "-c", "echo started; exec sleep 1000")
    cid = podman.container_id(name)
    assert podman.status(name) == "running"
    st = podman.runtime_state(cid)
    assert st["status"] == "running" and st["pid"] == podman.inspect(name)["State"]["Pid"]
    _wait_for(lambda: "started" in podman("logs", name).stdout, what="the container's output")
    # exec: a process in the container's namespaces, exit status passes through
    r = podman("exec", name, "/bin/sh", "-c", "echo in pid $$ of $(cat /proc/1/comm)")
    assert r.stdout.startswith("in pid ") and r.stdout.endswith(" of sleep\n"), r.stdout
    assert r.stdout.split()[2] != "1"
    assert podman("exec", name, "/bin/sh", "-c", "exit 5", check=False).returncode == 5
    r = podman("exec", "-e", "FOO=bar", "-w", "/tmp", name, "/bin/sh", "-c", "echo $FOO $PWD")
    assert r.stdout == "bar /tmp\n"
    r = podman("exec", "-i", name, "/bin/cat", input="through stdin\n")
    assert r.stdout == "through stdin\n"
    r = podman("exec", "--user", "65534:65534", name, "/bin/id", "-u")
    assert r.stdout == "65534\n"
    # exec -t: conmon's console socket receives the pty master
    r = podman("exec", "-t", name, "/bin/sh", "-c", "tty; echo $TERM")
    lines = r.stdout.replace("\r\n", "\n").split("\n")
    assert lines[0].startswith("/dev/pts/"), r.stdout
    assert lines[1] == "xterm"
    # a missing program in exec: podman's "not found" classification
    r = podman("exec", name, "/bin/no-such-program", check=False)
    assert r.returncode == 127, (r.returncode, r.stderr)
    assert "no-such-program" in r.stderr
    # a directory: refused at exec time (podman's 075-exec #1): 126
    r = podman("exec", name, "/etc", check=False)
    assert r.returncode == 126, (r.returncode, r.stderr)
    assert "'/etc': Permission denied" in r.stderr
    # top reads /proc of the container's pids
    assert "sleep 1000" in podman("top", name).stdout
    assert podman.status(name) == "running"


def test_pause_unpause(podman):
    name = podman.name()
    podman("run", "-d", "--name", name, "--rootfs", podman.rootfs,
           "/bin/sh", "-c", "while :; do date +%s%N > /tmp/t; sleep 0.05; done")
    cid = podman.container_id(name)
    podman("pause", name)
    assert podman.status(name) == "paused"
    assert podman.inspect(name)["State"]["Paused"] is True
    r = podman("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}} {{.Status}}")
    assert r.stdout == f"{name} Paused\n"
    assert podman.runtime_state(cid)["status"] == "paused"
    # frozen: the loop does not run while paused
    pid = podman.inspect(name)["State"]["Pid"]
    with open(f"/proc/{pid}/root/tmp/t") as f:
        before = f.read()
    time.sleep(0.3)
    with open(f"/proc/{pid}/root/tmp/t") as f:
        assert f.read() == before
    podman("unpause", name)
    assert podman.status(name) == "running"
    assert podman.runtime_state(cid)["status"] == "running"
    assert podman("exec", name, "/bin/echo", "thawed").stdout == "thawed\n"


def test_stop_and_start_again(podman):
    name = podman.name()
    script = "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done"
    podman("run", "-d", "--name", name, "--rootfs", podman.rootfs, "/bin/sh", "-c", script)
    cid = podman.container_id(name)
    _wait_for(lambda: "ready" in podman("logs", name).stdout, what="ready")
    t0 = time.monotonic()
    podman("stop", "-t", "20", name)
    assert time.monotonic() - t0 < 15, "SIGTERM did not end the container"
    state = podman.inspect(name)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 7, state
    assert "got TERM" in podman("logs", name).stdout
    # stopped: podman deleted it from the runtime
    _wait_for(lambda: podman.leftovers(cid) == [], what="runtime state removed")
    # start runs create + start again, with the same id
    podman("start", name)
    assert podman.status(name) == "running"
    assert podman.runtime_state(cid)["status"] == "running"
    podman("kill", name)  # SIGKILL by default
    _wait_for(lambda: podman.status(name) == "exited", what="exited after kill")
    assert podman.inspect(name)["State"]["ExitCode"] == 137


def test_rm_force_running(podman):
    name = podman.name()
    podman("run", "-d", "--name", name, "--rootfs", podman.rootfs, "/bin/sleep", "1000")
    cid = podman.container_id(name)
    pid = podman.inspect(name)["State"]["Pid"]
    assert pid > 0 and os.path.exists(f"/proc/{pid}")
    podman("rm", "-f", "-t", "0", name)
    r = podman("inspect", name, check=False)
    assert r.returncode != 0
    assert podman.leftovers(cid) == []
    _wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what=f"pid {pid} gone")


def test_tmpfs_copyup_and_read_only(podman):
    """--tmpfs and --read-only mounts carry the runc extension "tmpcopyup":
    the tmpfs starts with the covered directory's contents."""
    d = os.path.join(podman.rootfs, "etc", "copyup")
    os.makedirs(os.path.join(d, "sub"), exist_ok=True)
    with open(os.path.join(d, "sub", "file"), "w") as f:
        f.write("from the image\n")
    os.chmod(os.path.join(d, "sub", "file"), 0o640)
    if not os.path.lexists(os.path.join(d, "link")):
        os.symlink("sub/file", os.path.join(d, "link"))
    script = ("grep ' /etc/copyup ' /proc/mounts | cut -d' ' -f3; cat /etc/copyup/link; "
              "stat -c %a /etc/copyup/sub/file; echo new > /etc/copyup/added; ls /etc/copyup")
    r = podman("run", "--rm", "--name", podman.name(), "--tmpfs", "/etc/copyup",
               "--rootfs", podman.rootfs, "/bin/sh", "-c", script)
    assert r.stdout.split("\n") == ["tmpfs", "from the image", "640", "added", "link", "sub",
                                    ""], r.stdout
    assert not os.path.exists(os.path.join(d, "added")), "the tmpfs wrote through"
    # --read-only: / read-only, /tmp /run /var/tmp writable tmpfs (tmpcopyup)
    script = ("touch /ro 2>&1; touch /tmp/a /run/a /var/tmp/a && echo tmpfs-writable; "
              "ls -a /run | grep -c containerenv")
    r = podman("run", "--rm", "--name", podman.name(), "--read-only",
               "--rootfs", podman.rootfs, "/bin/sh", "-c", script, check=False)
    assert "Read-only file system" in r.stdout, r.stdout + r.stderr
    assert "tmpfs-writable" in r.stdout
    assert r.stdout.split()[-1] == "1"


def test_update_resources(podman):
    """podman update: `update --resources=FILE ID` (LinuxResources JSON)."""
    if not os.path.isdir(os.path.join(CGROUP_ROOT, "memory")):
        pytest.skip("reads cgroup v1 files (memory, cpu hierarchies)")
    name = podman.name()
    podman("run", "-d", "--name", name, "--rootfs", podman.rootfs, "/bin/sleep", "1000")
    cid = podman.container_id(name)
    podman("update", "--memory", "300m", "--cpu-shares", "512", name)
    cg = f"libpod_parent/libpod-{cid}"
    with open(os.path.join(CGROUP_ROOT, "memory", cg, "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 300 * 1024 * 1024
    with open(os.path.join(CGROUP_ROOT, "cpu", cg, "cpu.shares")) as f:
        assert int(f.read()) == 512
    assert podman.status(name) == "running"


def test_info_shows_barerun(podman):
    r = podman("info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Version}}")
    # podman shows the runtime's path and its --version text as is
    assert r.stdout.startswith(f"{podman.runtime} "), r.stdout
    assert "barerun" in r.stdout and "version" in r.stdout, r.stdout


def _counter(podman, image, name):
    """A container whose shell counts in memory and writes the count to
    /tmp/count every 0.05 s (renamed into place: never read half-written);
    returns once it counted to 5."""
    script = ("i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; "
              "mv /tmp/count.new /tmp/count; sleep 0.05; done")
    podman("run", "-d", "--name", name, image, "/bin/sh", "-c", script)
    _wait_for(lambda: _count(podman, name) >= 5, what="the counter")
    return podman.container_id(name)


def _count(podman, name):
    r = podman("exec", name, "/bin/cat", "/tmp/count", check=False)
    return int(r.stdout) if r.returncode == 0 and r.stdout.strip().isdigit() else 0


def _restore(podman, name, cid):
    """podman container restore; a failure shows the runtime's log and
    CRIU's restore.log."""
    r = podman("container", "restore", name, check=False)
    if r.returncode == 0:
        return r
    userdata = os.path.join(podman.storage, "root", "overlay-containers", cid, "userdata")
    logs = []
    for f in ("oci-log", "restore.log"):
        try:
            with open(os.path.join(userdata, f), errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            logs.append(f"{f}: {exc}")
            continue
        if f == "restore.log":
            lines = [x for x in lines if "Error" in x or "Warn" in x] + ["..."] + lines[-25:]
        logs.append(f"--- {f}:\n" + "\n".join(lines))
    raise AssertionError(f"container restore {name} -> rc {r.returncode}\n"
                         f"stderr: {r.stderr}\n" + "\n".join(logs))


def test_checkpoint_restore(podman, busybox_image):
    name = podman.name()
    cid = _counter(podman, busybox_image, name)
    podman("container", "checkpoint", "--keep", name)  # keep: podman leaves the logs
    state = podman.inspect(name)["State"]
    assert state["Status"] == "exited" and state["Checkpointed"] is True, state
    assert podman.leftovers(cid) == []  # checkpointed without --leave-running: gone
    # CRIU's images and logs where podman asked for them
    userdata = os.path.join(podman.storage, "root", "overlay-containers", cid, "userdata")
    assert os.path.isfile(os.path.join(userdata, "checkpoint", "inventory.img"))
    assert os.path.isfile(os.path.join(userdata, "dump.log"))
    assert os.path.isfile(os.path.join(userdata, "stats-dump"))
    _restore(podman, name, cid)
    state = podman.inspect(name)["State"]
    assert state["Status"] == "running" and state["Restored"] is True, state
    assert podman.runtime_state(cid)["status"] == "running"
    # the shell's memory came back: the count goes on from where it was
    after = _count(podman, name)
    assert after >= 5, after
    assert _wait_for(lambda: _count(podman, name) > after, what="counting after restore")
    assert podman("exec", name, "/bin/echo", "restored").stdout == "restored\n"


def test_checkpoint_leave_running(podman, busybox_image):
    name = podman.name()
    cid = _counter(podman, busybox_image, name)
    podman("container", "checkpoint", "--leave-running", name)
    assert podman.status(name) == "running"
    assert podman.runtime_state(cid)["status"] == "running"
    at = _count(podman, name)
    assert _wait_for(lambda: _count(podman, name) > at, what="counting after the checkpoint")
    # the checkpoint taken while running restores after a stop
    podman("stop", "-t", "0", name)
    _wait_for(lambda: podman.leftovers(cid) == [], what="runtime state removed")
    _restore(podman, name, cid)
    assert podman.status(name) == "running"
    assert _count(podman, name) >= 5


def test_checkpoint_export_import(podman, busybox_image):
    name = podman.name()
    _counter(podman, busybox_image, name)
    archive = os.path.join(podman.dir, f"{name}.tar.gz")
    try:
        podman("container", "checkpoint", "--export", archive, name)
        podman("rm", "-f", "-t", "0", name)
        other = podman.name()
        podman("container", "restore", "--import", archive, "--name", other)
        podman.container_id(other)
        assert podman.status(other) == "running"
        assert _count(podman, other) >= 5
    finally:
        if os.path.exists(archive):
            os.unlink(archive)


# ------------------------------------------------------------------ errors


def test_missing_program_is_not_found(podman):
    """barerun's message reaches podman through the --log file; podman
    classifies "no such file or directory" / "executable file not found
    in $PATH" as exit 127, "not found"."""
    cidfile = _cidfile(podman)
    r = podman("run", "--rm", "--name", podman.name(), "--cidfile", cidfile,
               "--rootfs", podman.rootfs, "/bin/no-such-program", check=False)
    cid = _read_cid(podman, cidfile)
    assert r.returncode == 127, (r.returncode, r.stderr)
    assert "container init: exec: '/bin/no-such-program': No such file or directory" in r.stderr
    assert "OCI runtime attempted to invoke a command that was not found" in r.stderr
    r = podman("run", "--rm", "--name", podman.name(), "--rootfs", podman.rootfs,
               "no-such-program", check=False)
    assert r.returncode == 127, (r.returncode, r.stderr)
    assert "'no-such-program': executable file not found in $PATH" in r.stderr
    assert podman("ps", "-a", "-q").stdout.strip() == ""
    assert podman.leftovers(cid) == []


def test_program_that_is_a_directory_is_126(podman):
    """podman's 030-run #1: `podman run IMAGE /etc` fails at create with
    "permission denied", classified 126, and leaves nothing."""
    cidfile = _cidfile(podman)
    r = podman("run", "--rm", "--name", podman.name(), "--cidfile", cidfile,
               "--rootfs", podman.rootfs, "/etc", check=False)
    cid = _read_cid(podman, cidfile)
    assert r.returncode == 126, (r.returncode, r.stderr)
    assert "'/etc': Permission denied" in r.stderr
    assert podman("ps", "-a", "-q").stdout.strip() == ""
    assert podman.leftovers(cid) == []


def test_bad_spec_is_126(podman):
    """A spec barerun cannot honour: exit 126 with barerun's reason."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("RLIMIT_NOFILE has no hard limit here")
    cidfile = _cidfile(podman)
    r = podman("run", "--rm", "--name", podman.name(), "--cidfile", cidfile,
               "--ulimit", f"nofile={hard + 1}:{hard + 1}",
               "--rootfs", podman.rootfs, "/bin/true", check=False)
    cid = _read_cid(podman, cidfile)
    assert r.returncode == 126, (r.returncode, r.stderr)
    assert "setrlimit RLIMIT_NOFILE" in r.stderr and f"hard limit is {hard}" in r.stderr
    assert "OCI permission denied" in r.stderr
    assert podman.leftovers(cid) == []


def test_oom_kill_disable_runs(podman):
    """--oom-kill-disable (memory.disableOOMKiller) is applied, as runc."""
    r = podman("run", "--rm", "--name", podman.name(), "--oom-kill-disable",
               "--rootfs", podman.rootfs, "/bin/true", check=False)
    assert r.returncode == 0, r.stderr


def test_a_realtime_budget_the_host_lacks_is_named(podman):
    """--cpu-rt-runtime under a parent cgroup with no real-time budget: the
    kernel refuses it; the error names the field and the parent's file."""
    cidfile = _cidfile(podman)
    r = podman("run", "--rm", "--name", podman.name(), "--cidfile", cidfile,
               "--cpu-rt-runtime", "1000", "--rootfs", podman.rootfs, "/bin/true", check=False)
    cid = _read_cid(podman, cidfile)
    if r.returncode == 0:
        return  # this host's parent cgroup has a real-time budget
    assert "linux.resources.cpu.realtimeRuntime" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "[Errno" not in r.stderr
    assert podman.leftovers(cid) == []


@pytest.mark.parametrize("option, field", [
    (("--personality", "LINUX32"), "linux.personality"),
])
def test_unsupported_field_is_named(podman, option, field):
    """A field barerun does not implement is refused by name, not ignored."""
    cidfile = _cidfile(podman)
    r = podman("run", "--rm", "--name", podman.name(), "--cidfile", cidfile, *option,
               "--rootfs", podman.rootfs, "/bin/true", check=False)
    cid = _read_cid(podman, cidfile)
    assert r.returncode == 126, (r.returncode, r.stderr)
    assert f"invalid spec: {field}: not supported by barerun" in r.stderr
    assert "OCI runtime error" in r.stderr
    assert podman("ps", "-a", "-q").stdout.strip() == ""
    assert podman.leftovers(cid) == []
