"""Docker through barerun: a private dockerd (Debian's docker.io, installed
by `make setup`) with barerun declared as a runtime, driven by Debian's
docker CLI.

The daemon is the session's own: data-root, exec-root, pid file and
socket under a temporary directory, no bridge and no iptables rules, the
experimental features on (checkpoint).  It starts its own containerd and
calls barerun through containerd-shim-runc-v2, so what barerun sees is
what any Docker host sends: a spec with `blockIO: {"weight": 0}`, a
libnetwork-setkey prestart hook, `update` with `memory.kernel: 0`.  The
image is a busybox rootfs imported from a tarball (no registry).  At the
end every container and the image are removed, and dockerd, its
containerd and their shims are stopped by pid; a session killed before
that is cleaned by the next (the directory names its owner)."""

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid

import pytest

from tests.bundles import make_rootfs
from tests.conftest import wait_for
from tests.integration.conftest import (BARERUN, CRIU_DIR, ID_PREFIX, all_processes, claim,
                                        file_tail, kill_and_wait, mounts_under, owner_alive,
                                        processes_naming, reclaim, tty_run)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dockerd needs root")

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # Debian's: a static docker CLI may come first on PATH
IMAGE = "barerun-test-busybox:latest"
TIMEOUT = 60


class Docker:
    def __init__(self, base):
        self.dir = base
        self.sock = os.path.join(base, "docker.sock")
        self.pid_file = os.path.join(base, "dockerd.pid")
        self.log_path = os.path.join(base, "dockerd.log")
        self.proc = None
        self.names = []
        self.env = dict(os.environ)
        path = [p for p in self.env.get("PATH", "").split(":") if p and p != CRIU_DIR]
        self.env["PATH"] = ":".join([CRIU_DIR] + (path or ["/usr/sbin", "/usr/bin"]))
        self.env.pop("DOCKER_HOST", None)

    def start(self):
        config = os.path.join(self.dir, "daemon.json")
        with open(config, "w") as f:
            json.dump({"runtimes": {"barerun": {"path": BARERUN}}}, f)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [DOCKERD, "--config-file", config, "--data-root", f"{self.dir}/data",
             "--exec-root", f"{self.dir}/exec", "--pidfile", self.pid_file,
             "-H", f"unix://{self.sock}", "--bridge=none", "--iptables=false",
             "--ip-masq=false", "--experimental", "--storage-driver", "overlay2"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            cwd=self.dir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + TIMEOUT
        while self("version", check=False, timeout=10).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not come up:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, n=40):
        return file_tail(self.log_path, n)

    def argv(self, *args):
        return [DOCKER, "-H", f"unix://{self.sock}", *[str(a) for a in args]]

    def __call__(self, *args, check=True, timeout=TIMEOUT, input=None):
        r = subprocess.run(self.argv(*args), input=input, capture_output=True,
                           timeout=timeout, env=self.env,
                           stdin=None if input is not None else subprocess.DEVNULL)
        r.stdout = r.stdout.decode(errors="replace")
        r.stderr = r.stderr.decode(errors="replace")
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(map(str, args))} -> {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}\n"
                                 f"dockerd:\n{self.log_tail(15)}")
        return r

    def name(self):
        n = f"{ID_PREFIX}{uuid.uuid4().hex[:8]}"
        self.names.append(n)
        return n

    def run(self, *args, network="none", check=True):
        """`docker run --runtime barerun --network N ARGS` (docker's default
        network is a bridge, and this daemon has none)."""
        return self("run", "--runtime", "barerun", "--network", network, *args, check=check)

    def remove_everything(self):
        problems = []
        r = self("ps", "-aq", check=False)
        for cid in r.stdout.split():
            d = self("rm", "-f", cid, check=False)
            if d.returncode != 0:
                problems.append(f"docker rm -f {cid}: {d.stderr.strip()}")
        self("rmi", "-f", IMAGE, check=False)
        return problems

    def stop(self):
        """dockerd by pid (it stops its containerd), then whatever of its
        is left (shims, containerd) by the directory they name."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        left = kill_and_wait(processes_naming(self.dir), timeout=5.0)
        for mp in sorted(mounts_under(self.dir), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        return left


def _stale_sessions():
    """dockerd daemons of sessions killed before their teardown."""
    for _pid, argv in all_processes():
        if argv[:1] == [DOCKERD] and "--exec-root" in argv:
            base = os.path.dirname(argv[argv.index("--exec-root") + 1])
            if "pytest-of-" in base and owner_alive(base) is not True:
                yield base


@pytest.fixture(scope="session")
def docker(tmp_path_factory):
    for path in (DOCKERD, DOCKER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: `make setup` installs Debian's docker.io")
    for base in set(_stale_sessions()):
        reclaim(base)
    base = str(tmp_path_factory.mktemp("docker"))
    claim(base)
    d = Docker(base)
    try:
        d.start()
        rootfs = make_rootfs(os.path.join(base, "rootfs"))
        tar = os.path.join(base, "busybox.tar")
        with tarfile.open(tar, "w") as t:
            t.add(rootfs, arcname=".")
        with open(tar, "rb") as f:
            d("import", "-", IMAGE, input=f.read())
        shutil.rmtree(rootfs)
    except BaseException:
        d.stop()
        raise
    yield d
    problems = d.remove_everything()
    left = d.stop()
    if left:
        problems.append(f"processes left after SIGKILL: {left}")
    if mounts_under(base):
        problems.append(f"mounts left under {base}: {mounts_under(base)}")
    assert not problems, "; ".join(problems)


@pytest.fixture
def dk(docker):
    """The session's dockerd; the containers a test named are removed after it."""
    docker.names = []
    yield docker
    for n in docker.names:
        docker("rm", "-f", n, check=False)


def _state(dk, name):
    return json.loads(dk("inspect", name).stdout)[0]["State"]


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("code", [0, 3])
def test_run_rm_passes_the_exit_status(dk, code):
    r = dk.run("--rm", IMAGE, "sh", "-c", f"echo out; echo err >&2; exit {code}", check=False)
    assert r.returncode == code, r
    assert r.stdout == "out\n" and r.stderr == "err\n"


def test_detached_then_exec(dk):
    n = dk.name()
    dk.run("-d", "--name", n, IMAGE, "sleep", "600")
    assert _state(dk, n)["Running"]
    r = dk("exec", n, "sh", "-c", "echo in $(hostname); exit 5", check=False)
    assert r.returncode == 5 and r.stdout.startswith("in "), r
    dk("rm", "-f", n)


def test_exec_it_and_run_it(dk):
    n = dk.name()
    dk.run("-d", "--name", n, IMAGE, "sleep", "600")
    rc, out = tty_run(dk.argv("exec", "-it", n, "sh", "-c", "tty; exit 7"), dk.env)
    assert rc == 7 and "/dev/pts/" in out, out
    rc, out = tty_run(dk.argv("run", "--rm", "-it", "--runtime", "barerun", "--network", "none",
                              IMAGE, "sh", "-c", "tty; stty size; exit 4"), dk.env)
    assert rc == 4 and "/dev/pts/" in out, out


def test_pause_unpause_top_stats_update(dk):
    n = dk.name()
    dk.run("-d", "--name", n, IMAGE, "sleep", "600")
    dk("pause", n)
    assert _state(dk, n)["Paused"]
    dk("unpause", n)
    assert not _state(dk, n)["Paused"]
    assert "sleep 600" in dk("top", n).stdout
    stats = dk("stats", "--no-stream", "--format", "{{json .}}", n).stdout
    assert json.loads(stats)["Name"] == n
    dk("update", "--memory", "64m", "--memory-swap", "128m", n)
    mem = json.loads(dk("inspect", n).stdout)[0]["HostConfig"]["Memory"]
    assert mem == 64 * 1024 * 1024
    dk("rm", "-f", n)


def test_stop_then_start(dk):
    n = dk.name()
    dk.run("-d", "--name", n, IMAGE, "sleep", "600")
    dk("stop", "-t", "1", n)
    assert not _state(dk, n)["Running"]
    dk("start", n)
    assert _state(dk, n)["Running"]
    dk("rm", "-f", n)
    assert dk("ps", "-aq", "--filter", f"name={n}").stdout.strip() == ""


def test_network_none_and_host(dk):
    r = dk.run("--rm", IMAGE, "cat", "/proc/net/dev")
    ifaces = [line.split(":")[0].strip() for line in r.stdout.splitlines()[2:]]
    assert ifaces == ["lo"], r.stdout
    r = dk.run("--rm", IMAGE, "readlink", "/proc/self/ns/net", network="host")
    assert r.stdout.strip() == os.readlink("/proc/self/ns/net")


def test_checkpoint_create_then_start_from_it(dk):
    n = dk.name()
    dk.run("-d", "--name", n, IMAGE, "sh", "-c",
           "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done")
    wait_for(lambda: dk("exec", n, "cat", "/tmp/count", check=False).stdout.strip()
             not in ("", "1"), timeout=20, what="the counter to run")
    dk("checkpoint", "create", n, "ck1")
    assert not _state(dk, n)["Running"]
    dk("start", "--checkpoint", "ck1", n)
    assert _state(dk, n)["Running"]
    before = int(dk("exec", n, "cat", "/tmp/count").stdout)
    wait_for(lambda: int(dk("exec", n, "cat", "/tmp/count").stdout or 0) > before,
             timeout=20, what="the restored counter to go on")
    dk("rm", "-f", n)
