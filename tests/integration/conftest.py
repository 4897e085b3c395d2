"""Real clients driving the real `barerun` entry point (see
the shared CLIENTS.md notes for what each client sends and expects).

    containerd   (session) a private containerd 1.6 (Debian's package,
                 installed by `make setup`): root, state and
                 sockets under a temporary directory, the CRI plugin off,
                 /usr/local/sbin (CRIU >= 4) first on its PATH.  Its
                 ``ctr(...)`` runs ctr against it in a namespace of its
                 own.  At the end every task and container is removed with
                 ctr, then containerd and its shims are killed by pid.
    BARERUN      the absolute path of the installed entry point, as a
                 client is configured with it

Container ids start with "barerun-test-".
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
from tests.conftest import pid_alive as _alive

BARERUN = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "barerun")
ID_PREFIX = "barerun-test-"
CRIU_DIR = "/usr/local/sbin"
CTR_TIMEOUT = 60

def ensure_installed(binary, package):
    """``binary`` on PATH: `make setup` (scripts/setup-host.sh) installs
    Debian's ``package``; the tests never install anything themselves."""
    path = shutil.which(binary)
    if not path:
        pytest.fail(f"{binary} is not on PATH: `make setup` installs Debian's {package}")
    return path


def all_processes():
    """(pid, argv) of every process."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        yield int(name), [a.decode(errors="replace") for a in argv if a]


# ------------------------------------------- sessions killed before teardown
# A session's daemons and mounts are removed by its fixtures' teardown; a
# pytest killed outright (SIGKILL, a CI timeout) never gets there.  Each
# session directory names its owner (pid and start time), and the next
# session removes what a dead owner left.

def claim(base):
    """Mark ``base`` as this session's."""
    with open(os.path.join(base, "owner"), "w") as f:
        f.write(f"{os.getpid()} {_start_time(os.getpid())}")


def _start_time(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19])


def owner_alive(base):
    """True/False when ``base`` names its owner, None when it does not."""
    try:
        with open(os.path.join(base, "owner")) as f:
            pid, start = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return None
    try:
        return _start_time(pid) == start
    except OSError:
        return False


def processes_naming(path):
    """Pids whose command line names ``path`` (or a path below it)."""
    return [pid for pid, argv in all_processes()
            if pid != os.getpid() and any(a == path or a.startswith(path + "/") or
                                          f"={path}/" in a for a in argv)]


def mounts_under(path):
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            mp = line.split()[1].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return out


def reclaim(base):
    """Remove what a dead session left at ``base``: its processes, the
    mounts below it (deepest first), the directory."""
    kill_and_wait(processes_naming(base), timeout=2.0)
    for mp in sorted(mounts_under(base), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    if not mounts_under(base):
        shutil.rmtree(base, ignore_errors=True)


def file_tail(path, n=40):
    """The last ``n`` lines of a daemon's log ("" when unreadable)."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def tty_run(argv, env=None, timeout=30, send=b""):
    """Run a client with a pty as its stdio (``-t``/``-it`` need a
    console), writing ``send`` to it: (returncode, everything it printed)."""
    import pty
    import select
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                         start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        if send:
            os.write(master, send)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the slave is gone
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        rc = p.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    return rc, out.decode(errors="replace")


def kill_and_wait(pids, timeout=10.0):
    """SIGTERM, then SIGKILL after ``timeout``; returns pids still alive."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            if not pids:
                return []
            time.sleep(0.05)
    return [p for p in pids if _alive(p)]




class Containerd:
    """A private containerd daemon and ctr against it."""

    def __init__(self, base):
        self.dir = base
        self.address = os.path.join(base, "c.sock")
        self.namespace = f"{ID_PREFIX}{uuid.uuid4().hex[:8]}"
        # the shim's runc --root for this namespace (containerd's default)
        self.runc_root = f"/run/containerd/runc/{self.namespace}"
        self.log_path = os.path.join(base, "containerd.log")
        self.proc = None
        self.env = dict(os.environ)
        path = [p for p in self.env.get("PATH", "").split(":") if p and p != CRIU_DIR]
        self.env["PATH"] = ":".join([CRIU_DIR] + (path or ["/usr/sbin", "/usr/bin",
                                                           "/sbin", "/bin"]))
        self.env.pop("NOTIFY_SOCKET", None)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def write_config(self):
        config = os.path.join(self.dir, "config.toml")
        with open(config, "w") as f:
            f.write(f'''version = 2
root = "{self.dir}/root"
state = "{self.dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[debug]
  level = "debug"
''')
        return config

    def start(self, binary, timeout=30.0):
        self.made_run_dir = not os.path.exists("/run/containerd")
        config = self.write_config()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([binary, "--config", config], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.dir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited ({self.proc.returncode}):\n"
                                   f"{self.log_tail()}")
            if os.path.exists(self.address):
                r = self.ctr("version", timeout=10, check=False)
                if r.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd socket {self.address} not ready after "
                                   f"{timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, n=40):
        return file_tail(self.log_path, n)

    def ctr(self, *args, timeout=CTR_TIMEOUT, check=True, input=None, namespace=True):
        """``ctr --address A [-n NS] ARGS`` -> CompletedProcess (text)."""
        argv = ["ctr", "--address", self.address]
        if namespace:
            argv += ["--namespace", self.namespace]
        argv += [str(a) for a in args]
        r = subprocess.run(argv, input=input, capture_output=True, text=True,
                           timeout=timeout, env=self.env,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> rc {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def shim_pids(self):
        """Shims started by this daemon (they name its address)."""
        return [pid for pid, argv in all_processes()
                if argv and os.path.basename(argv[0]).startswith("containerd-shim")
                and self.address in argv]

    def remove_everything(self):
        """Kill and remove every task, then every container and image, of
        the namespace; returns a list of problems."""
        problems = []
        r = self.ctr("task", "ls", "-q", check=False, timeout=30)
        for tid in r.stdout.split():
            self.ctr("task", "kill", "--all", "-s", "SIGKILL", tid, check=False, timeout=30)
            d = self.ctr("task", "rm", "-f", tid, check=False, timeout=30)
            if d.returncode != 0:
                problems.append(f"task rm -f {tid}: {d.stderr.strip()}")
        r = self.ctr("containers", "ls", "-q", check=False, timeout=30)
        for cid in r.stdout.split():
            d = self.ctr("containers", "rm", cid, check=False, timeout=30)
            if d.returncode != 0:
                problems.append(f"containers rm {cid}: {d.stderr.strip()}")
        r = self.ctr("images", "ls", "-q", check=False, timeout=30)
        for ref in r.stdout.split():
            self.ctr("images", "rm", "--sync", ref, check=False, timeout=30)
        return problems

    def stop(self):
        """Kill containerd by its pid, then any shim of it left."""
        left = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # shims live on after the daemon when tasks were left: by pid
        left += kill_and_wait(self.shim_pids())
        try:
            os.rmdir(self.runc_root)
        except FileNotFoundError:
            pass
        except OSError:
            # containers the runtime still records: forced away, then reported
            for cid in os.listdir(self.runc_root):
                subprocess.run([BARERUN, "--root", self.runc_root, "delete", "--force", cid],
                               capture_output=True, text=True, timeout=30)
                left.append(f"runtime state of {cid}")
            shutil.rmtree(self.runc_root, ignore_errors=True)
        if getattr(self, "made_run_dir", False):
            # the daemon made /run/containerd/{fifo,runc,s}: only empty ones go
            for d in ("fifo", "runc", "s", ""):
                try:
                    os.rmdir(os.path.join("/run/containerd", d))
                except OSError:
                    pass
        return left


@pytest.fixture(scope="session")
def containerd_binary():
    """Debian's containerd (apt-get install when missing) and its ctr."""
    path = ensure_installed("containerd", "containerd")
    if not shutil.which("ctr") or not shutil.which("containerd-shim-runc-v2"):
        pytest.fail("containerd is installed but ctr or containerd-shim-runc-v2 is missing")
    if not os.access(os.path.join(CRIU_DIR, "criu"), os.X_OK):
        sys.stderr.write(f"note: no {CRIU_DIR}/criu (make setup builds it): "
                         "checkpoint tests will fail\n")
    return path


@pytest.fixture(scope="session")
def containerd(containerd_binary, tmp_path_factory):
    """A private containerd for the session (see the module docstring)."""
    # a containerd of a session killed before its teardown
    for pid, argv in all_processes():
        if argv[:1] and os.path.basename(argv[0]) == "containerd" and "--config" in argv:
            i = argv.index("--config")
            cbase = os.path.dirname(argv[i + 1]) if i + 1 < len(argv) else ""
            if cbase and "pytest-of-" in cbase and owner_alive(cbase) is not True:
                kill_and_wait([pid, *processes_naming(cbase)], timeout=5.0)
    # and the shim's runc root of such a session, once nothing is in it
    runc_roots = "/run/containerd/runc"
    for name in os.listdir(runc_roots) if os.path.isdir(runc_roots) else ():
        path = os.path.join(runc_roots, name)
        if name.startswith(ID_PREFIX) and not processes_naming(path):
            try:
                os.rmdir(path)
            except OSError:
                pass  # a container's state is in it: not ours to remove
    base = str(tmp_path_factory.mktemp("containerd"))
    claim(base)
    d = Containerd(base)
    try:
        d.start(containerd_binary)
    except RuntimeError as exc:
        d.stop()
        pytest.fail(str(exc))
    yield d
    problems = containerd_teardown(d)
    assert not problems, "; ".join(problems)


def containerd_teardown(d):
    """Remove every task, container and image of ``d``, stop it and its
    shims; returns a list of problems (empty when nothing was left)."""
    problems = d.remove_everything()
    left = d.stop()
    if left:
        problems.append(f"processes left alive after SIGKILL: {left}")
    mounts = [line for line in open("/proc/self/mounts") if d.dir in line]
    if mounts:
        problems.append(f"mounts left under {d.dir}: {mounts}")
    # ctr's cgroupsPath is /<namespace>/<id>: barerun removes each
    # container's cgroup, and the namespace's when it is the last one out,
    # but containers deleted side by side can each find it still busy
    from lowlevel import cgroups
    try:
        ns_cg = cgroups.Cgroup(d.namespace)
        if ns_cg.exists():
            ns_cg.remove()
    except OSError as exc:
        problems.append(f"cgroup {d.namespace} left: {exc}")
    return problems


# ------------------------------------------------------------ OCI image archive
# (shared by the podman and containerd tests: checkpoint/restore by those
# clients needs an image-based container, see CLIENTS.md section 5)

BUSYBOX_IMAGE = "localhost/barerun-test-busybox:latest"
IMAGE_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _oci_arch():
    import platform
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


def _layer_tar(rootfs):
    """An uncompressed tar of ``rootfs`` (owned by root, sorted, no "./")."""
    import io
    import tarfile
    buf = io.BytesIO()

    def owner(ti):
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, rootfs)
            names = sorted(dirnames + filenames)
            for name in names:
                full = os.path.join(dirpath, name)
                arc = name if rel_dir == "." else f"{rel_dir}/{name}"
                tar.add(full, arcname=arc, recursive=False, filter=owner)
    return buf.getvalue()


def build_oci_archive(rootfs, out, ref=BUSYBOX_IMAGE, cmd=("/bin/sh",), env=(IMAGE_PATH_ENV,)):
    """Write ``out``: an OCI image layout as a tar (oci-layout, index.json,
    blobs/sha256/{manifest, config, one tar+gzip layer of ``rootfs``}).

    ``podman load -i out`` and ``ctr image import out`` both name the
    image ``ref`` (index annotations ``io.containerd.image.name`` = ref and
    ``org.opencontainers.image.ref.name`` = its tag).  Returns ``out``."""
    import gzip
    import hashlib
    import io
    import json
    import tarfile

    raw = _layer_tar(rootfs)
    layer = gzip.compress(raw, mtime=0)
    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest, len(data)

    layer_digest, layer_size = blob(layer)
    arch = _oci_arch()
    config = {
        "created": "2024-01-01T00:00:00Z", "architecture": arch, "os": "linux",
        "config": {"Env": list(env), "Cmd": list(cmd), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created": "2024-01-01T00:00:00Z",
                     "created_by": "barerun tests: busybox-static rootfs"}],
    }
    config_digest, config_size = blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = blob(json.dumps(manifest, sort_keys=True).encode())
    tag = ref.rpartition(":")[2] if ":" in ref.rpartition("/")[2] else "latest"
    index = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "platform": {"architecture": arch, "os": "linux"},
                       "annotations": {"io.containerd.image.name": ref,
                                       "org.opencontainers.image.ref.name": tag}}],
    }
    files = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
             ("index.json", json.dumps(index, sort_keys=True).encode())]
    files += [(f"blobs/sha256/{d.split(':', 1)[1]}", data) for d, data in sorted(blobs.items())]
    tmp = f"{out}.tmp{os.getpid()}"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
    os.rename(tmp, out)
    return out


@pytest.fixture(scope="session")
def oci_archive():
    """The builder: oci_archive(rootfs, out, ref=BUSYBOX_IMAGE, cmd=..., env=...)."""
    return build_oci_archive


@pytest.fixture(scope="session")
def busybox_oci_archive(tmp_path_factory):
    """(path, ref): an OCI archive of a fresh busybox rootfs, named
    ``BUSYBOX_IMAGE`` (localhost/barerun-test-busybox:latest)."""
    from tests.bundles import make_rootfs
    base = tmp_path_factory.mktemp("barerun-oci")
    rootfs = make_rootfs(str(base / "rootfs"))
    return build_oci_archive(rootfs, str(base / "busybox-oci.tar")), BUSYBOX_IMAGE
