"""The runc-compatible command line, driven as containerd, podman and people
drive it: the real `barerun` binary in a subprocess, as root, with real
busybox containers (see the shared CLIENTS.md notes for what the clients expect).

Every test has its own ``--root``; its container ids start with
"barerun-test-"; the ``cli`` fixture force-deletes every id a test made
(through the binary, as a client would) and then checks that nothing is
left: no state directory, no cgroup, no init process.

While this module runs, the test process is a child subreaper (as the
containerd shim and conmon are): a container's init outlives the
`barerun create` that made it, is re-parented to the test process, and is
reaped by the ``cli`` fixture after its delete.
"""

import datetime
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import prctl
import pytest

from runtime.bundle import default_spec, make_rootfs, write_bundle
from tests.conftest import pid_alive as alive

BARERUN = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "barerun")
ID_PREFIX = "barerun-test-"
CGROUP_ROOT = "/sys/fs/cgroup"
TIMEOUT = 30

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real containers need root")


# ------------------------------------------------------------------ helpers


class Result:
    """What one barerun call did: exit status, and its stdout/stderr
    (read from files: a container may keep the call's stdio open)."""

    def __init__(self, argv, rc, out_path, err_path, pid=None):
        self.argv = argv
        self.rc = rc
        self.out_path = out_path
        self.err_path = err_path
        self.pid = pid

    @property
    def out(self):
        return _read(self.out_path)

    @property
    def err(self):
        return _read(self.err_path)

    def ok(self):
        assert self.rc == 0, f"{self.argv} -> {self.rc}\nstdout: {self.out}\nstderr: {self.err}"
        assert "Traceback" not in self.err, self.err
        return self

    def __repr__(self):
        return f"<Result {self.argv} rc={self.rc} out={self.out!r} err={self.err!r}>"


def _read(path):
    with open(path, errors="replace") as f:
        return f.read()


def assert_error(r, *needles, rc=1):
    """A failure a user can read: exit 1, one line on stderr naming the
    problem, never a traceback."""
    err = r.err
    assert r.rc == rc, r
    assert "Traceback" not in err, err
    assert "[Errno" not in err, f"Python's errno text in: {err!r}"
    assert err.strip(), f"no message on stderr: {r}"
    assert len(err.strip().splitlines()) == 1, f"more than one line: {err!r}"
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"


def reap(pid, timeout=5.0):
    """Collect ``pid`` if it is (by now) our child: a container init that
    was re-parented to this subreaper."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if got or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def zombie_children():
    """Our children that have exited: re-parented inits and detached exec'd
    processes (the shim and conmon, being subreapers, reap them too)."""
    me = str(os.getpid())
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        if fields[0] == b"Z" and fields[1].decode() == me:
            found.append(int(name))
    return found


def reap_children(pids, timeout=5.0):
    """Reap every zombie child until none of ``pids`` is left alive.

    An init of a pid namespace finishes exiting only once every process
    of its namespace was reaped, e.g. a detached exec'd process whose
    parent is now this subreaper."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in zombie_children():
            reap(pid, timeout=0)
        for pid in pids:
            reap(pid, timeout=0)
        if not any(alive(p) for p in pids) or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def cgroups_of(cid):
    """Every cgroup directory of ``cid`` that exists (default path
    barerun/<id> in each hierarchy, or a top-level one named by the id)."""
    found = []
    for hier in os.listdir(CGROUP_ROOT):
        for rel in (f"barerun/{cid}", cid):
            d = os.path.join(CGROUP_ROOT, hier, rel)
            if os.path.isdir(d):
                found.append(d)
    return found


def ppid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")




def parse_time(text):
    """An RFC 3339 time as Go's time.Time decodes it (containerd's log.json)."""
    assert "T" in text, text
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    t = datetime.datetime.fromisoformat(text)
    assert t.tzinfo is not None, f"no time zone in {text!r}"
    return t


class Barerun:
    """The binary with a private ``--root``, and the ids a test made."""

    def __init__(self, tmp_path, rootfs):
        self.tmp = tmp_path
        self.root = str(tmp_path / "state")
        self.rootfs = rootfs
        self.ids = []
        self.pids = set()
        self.n = 0

    def new_id(self):
        cid = f"{ID_PREFIX}{uuid.uuid4().hex[:8]}"
        self.ids.append(cid)
        return cid

    def bundle(self, args, modify=None, rootfs=None):
        """A bundle dir (config.json only) over the module's busybox rootfs."""
        self.n += 1
        spec = default_spec(args)
        if modify is not None:
            spec = modify(spec) or spec
        path = str(self.tmp / f"bundle{self.n}")
        return write_bundle(path, spec, rootfs=rootfs or self.rootfs)

    def _files(self):
        self.n += 1
        return str(self.tmp / f"call{self.n}.out"), str(self.tmp / f"call{self.n}.err")

    def argv(self, args, root=True, exe=BARERUN):
        return [exe] + (["--root", self.root] if root else []) + [str(a) for a in args]

    def spawn(self, *args, root=True, exe=BARERUN, cwd=None, env=None, **popen):
        """Start ``barerun [--root R] ARGS...``; returns (Popen, out, err paths)."""
        argv = self.argv(args, root, exe)
        out, err = self._files()
        with open(out, "wb") as o, open(err, "wb") as e:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                 cwd=cwd or str(self.tmp), env=env, **popen)
        return p, out, err

    def __call__(self, *args, root=True, exe=BARERUN, cwd=None, env=None, timeout=TIMEOUT,
                 **popen):
        """Run ``barerun [--root R] ARGS...``; stdin is /dev/null, stdout and
        stderr go to files (never pipes a container could hold open)."""
        argv = self.argv(args, root, exe)
        out, err = self._files()
        with open(out, "wb") as o, open(err, "wb") as e:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                 cwd=cwd or str(self.tmp), env=env, **popen)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise
        return Result(argv, rc, out, err, pid=p.pid)

    def state(self, cid, **kw):
        r = self("state", cid, **kw).ok()
        st = json.loads(r.out)
        if st.get("pid"):
            self.pids.add(st["pid"])
        return st

    def create(self, args, cid=None, **kw):
        """`create --bundle B --pid-file F ID` as containerd runs it
        (cwd = bundle); returns (id, pid, bundle)."""
        cid = cid or self.new_id()
        b = self.bundle(args)
        pid_file = os.path.join(b, "init.pid")
        self("create", "--bundle", b, "--pid-file", pid_file, cid, cwd=b, **kw).ok()
        pid = int(open(pid_file).read())
        self.pids.add(pid)
        return cid, pid, b

    def wait_status(self, cid, status, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st["status"] == status or time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def recorded_pid(self, cid):
        try:
            with open(os.path.join(self.root, cid, "state.json")) as f:
                return json.load(f).get("pid") or 0
        except (OSError, ValueError):
            return 0

    def cleanup(self):
        """delete --force every id (as clients do), reap the inits, then
        report whatever is left."""
        problems = []
        for cid in self.ids:
            pid = self.recorded_pid(cid)
            if pid:
                self.pids.add(pid)
            try:
                r = self("delete", "--force", cid)
            except Exception as exc:  # noqa: BLE001 - keep cleaning the others
                problems.append(f"delete --force {cid}: {exc}")
                continue
            if r.rc != 0:
                problems.append(f"delete --force {cid}: rc {r.rc}: {r.err.strip()}")
        reap_children(self.pids)
        left = sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []
        if left:
            problems.append(f"left in {self.root}: {left}")
        for cid in self.ids:
            cgs = cgroups_of(cid)
            if cgs:
                problems.append(f"cgroups left: {cgs}")
                for d in cgs:
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
        stray = [p for p in self.pids if alive(p)]
        if stray:
            problems.append(f"init processes left: {stray}")
        return problems


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def cli_rootfs(tmp_path_factory):
    """One busybox rootfs for the module (read-only in the default spec)."""
    return make_rootfs(str(tmp_path_factory.mktemp("barerun-cli") / "rootfs"))


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    """Be a child subreaper, as containerd's shim and conmon are, so the
    inits that `barerun create` leaves behind are re-parented here."""
    before = prctl.get_child_subreaper()
    prctl.set_child_subreaper(1)
    yield
    prctl.set_child_subreaper(before)


@pytest.fixture
def cli(tmp_path, cli_rootfs):
    b = Barerun(tmp_path, cli_rootfs)
    yield b
    problems = b.cleanup()
    assert not problems, "; ".join(problems)


# ------------------------------------------------------------------ spec


def test_spec_writes_config_and_refuses_to_overwrite(cli, tmp_path):
    d = tmp_path / "specdir"
    d.mkdir()
    cli("spec", cwd=str(d)).ok()
    path = d / "config.json"
    spec = json.loads(path.read_text())
    for key in ("ociVersion", "process", "root", "linux"):
        assert key in spec, key
    assert spec["process"]["args"]
    assert spec["root"]["path"] == "rootfs"
    assert {"type": "mount"} in spec["linux"]["namespaces"]

    path.write_text('{"mine": true}\n')
    r = cli("spec", cwd=str(d))
    assert_error(r, "config.json", "exists")
    assert path.read_text() == '{"mine": true}\n', "spec overwrote config.json"

    # --bundle names the directory, and the refusal names that file
    d2 = tmp_path / "specdir2"
    d2.mkdir()
    cli("spec", "--bundle", str(d2)).ok()
    assert json.loads((d2 / "config.json").read_text())["ociVersion"]
    assert_error(cli("spec", "--bundle", str(d2)), str(d2 / "config.json"))


# ------------------------------------------------------------------ run


def test_run_returns_exit_code_and_passes_stdio(cli):
    b = cli.bundle(["sh", "-c", "echo hello; echo oops >&2; exit 3"])
    cid = cli.new_id()
    r = cli("run", cid, cwd=b)  # the bundle is the cwd
    assert r.rc == 3, r
    assert r.out == "hello\n"
    assert r.err == "oops\n"
    # run deletes what it created
    assert not os.path.exists(os.path.join(cli.root, cid))
    assert cgroups_of(cid) == []
    assert_error(cli("state", cid), "does not exist")


def test_run_signal_death_is_128_plus_signal(cli):
    # without a pid namespace sh is not an init, which SIGKILL from its
    # own namespace could not kill
    def no_pidns(spec):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] != "pid"]
    b = cli.bundle(["sh", "-c", "kill -9 $$"], no_pidns)
    r = cli("run", "--bundle", b, cli.new_id())
    assert r.rc == 128 + 9, r


def test_run_forwards_signals(cli):
    b = cli.bundle(["sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; "
                    "while :; do sleep 0.05; done"])
    cid = cli.new_id()
    p, out, err = cli.spawn("run", cid, cwd=b)
    try:
        deadline = time.monotonic() + 10
        while "ready" not in _read(out) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _read(out) == "ready\n"
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 7, (rc, _read(out), _read(err))
    assert _read(out) == "ready\ngot-term\n"
    assert not os.path.exists(os.path.join(cli.root, cid))


def test_run_detached(cli):
    b = cli.bundle(["sh", "-c", "echo detached; exec sleep 100"])
    cid = cli.new_id()
    pid_file = os.path.join(b, "run.pid")
    t0 = time.monotonic()
    r = cli("run", "-d", "--pid-file", pid_file, cid, cwd=b).ok()
    assert time.monotonic() - t0 < 10, "run -d waited for the container"
    pid = int(open(pid_file).read())
    cli.pids.add(pid)
    st = cli.state(cid)
    assert st["status"] == "running"
    assert st["pid"] == pid
    # the container writes to the stdout run -d was given
    deadline = time.monotonic() + 10
    while "detached" not in r.out and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.out == "detached\n"
    cli("delete", "--force", cid).ok()
    reap_children([pid])
    assert not alive(pid)
    assert_error(cli("state", cid), "does not exist")


# ------------------------------------------------------------------ create/start/state


def test_create_pid_file_state_start(cli, tmp_path):
    cid = cli.new_id()
    b = cli.bundle(["sleep", "100"])
    pid_file = os.path.join(b, "init.pid")
    log = os.path.join(b, "log.json")
    # exactly as containerd's shim calls it
    r = cli("--log", log, "--log-format", "json", "create", "--bundle", b,
            "--pid-file", pid_file, cid, cwd=b).ok()
    raw = open(pid_file).read()
    assert raw.isdigit(), f"pid file holds {raw!r}: a bare number, no newline"
    pid = int(raw)
    cli.pids.add(pid)
    assert alive(pid)
    assert r.out == ""

    st = cli.state(cid)
    assert list(st) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                        "annotations", "owner"]
    assert st["ociVersion"].startswith("1.")
    assert st["id"] == cid
    assert st["pid"] == pid
    assert st["status"] == "created"
    assert st["bundle"] == b
    assert st["rootfs"] == cli.rootfs
    created = parse_time(st["created"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - created).total_seconds()) < 60
    assert st["annotations"] == {}
    assert isinstance(st["owner"], str)

    # a created container cannot be started twice, nor deleted while running
    cli("start", cid).ok()
    st = cli.state(cid)
    assert st["status"] == "running"
    assert st["pid"] == pid
    assert_error(cli("start", cid), cid)
    assert_error(cli("delete", cid), "running")
    assert alive(pid)
    # nothing went wrong: the log has no error record
    if os.path.exists(log):
        assert '"error"' not in open(log).read()


def test_state_annotations(cli):
    def annotate(spec):
        spec["annotations"] = {"org.example.key": "value"}
    cid = cli.new_id()
    b = cli.bundle(["sleep", "100"], annotate)
    cli("create", "--bundle", b, cid).ok()
    assert cli.state(cid)["annotations"] == {"org.example.key": "value"}


def test_list(cli):
    created, _, b1 = cli.create(["sleep", "100"])
    running, _, b2 = cli.create(["sleep", "100"])
    cli("start", running).ok()

    r = cli("list").ok()
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["ID", "PID", "STATUS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[created][2] == "created"
    assert rows[running][2] == "running"

    r = cli("list", "--format", "json").ok()
    got = {c["id"]: c for c in json.loads(r.out)}
    assert set(got) == {created, running}
    assert got[created]["status"] == "created"
    assert got[running]["status"] == "running"
    assert got[created]["bundle"] == b1 and got[running]["bundle"] == b2
    assert all(c["pid"] > 0 for c in got.values())

    assert sorted(cli("list", "-q").ok().out.split()) == sorted([created, running])


def test_list_empty_root(cli):
    assert json.loads(cli("list", "--format", "json").ok().out) in ([], None)
    r = cli("list").ok()
    assert r.out.splitlines()[0].startswith("ID")
    assert len(r.out.splitlines()) == 1


# ------------------------------------------------------------------ kill / delete


@pytest.mark.parametrize("sig", ["9", "KILL", "SIGKILL"])
def test_kill_forms_then_stopped(cli, sig):
    cid, pid, _ = cli.create(["sleep", "100"])
    cli("start", cid).ok()
    r = cli("kill", cid, sig).ok()
    assert r.out == "" and r.err == ""
    st = cli.wait_status(cid, "stopped")
    assert st["status"] == "stopped"
    assert st["pid"] == 0
    assert not alive(pid)
    # runc's words, which containerd's shim classifies as "already finished"
    assert_error(cli("kill", cid, sig), "container not running")
    r = cli("delete", cid)
    assert r.rc == 0, r
    assert r.out == "" and r.err == ""
    assert not os.path.exists(os.path.join(cli.root, cid))
    assert cgroups_of(cid) == []
    assert_error(cli("state", cid), "does not exist")


def test_kill_created_container(cli):
    cid, pid, _ = cli.create(["sleep", "100"])
    # a created container can be killed (its init is waiting for start)
    cli("kill", cid, "KILL").ok()
    st = cli.wait_status(cid, "stopped")
    assert st["status"] == "stopped", st
    assert not alive(pid)
    assert_error(cli("start", cid), "stopped")
    cli("delete", cid).ok()


def test_kill_default_is_sigterm(cli):
    # pid 1 of a namespace gets only the signals it handles: trap TERM
    b = cli.bundle(["sh", "-c", "trap 'echo got-term; exit 0' TERM; echo ready; "
                    "while :; do sleep 0.05; done"])
    cid = cli.new_id()
    r = cli("run", "-d", "--pid-file", os.path.join(b, "pid"), cid, cwd=b).ok()
    cli.pids.add(int(open(os.path.join(b, "pid")).read()))
    deadline = time.monotonic() + 10
    while "ready" not in r.out and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.out == "ready\n"
    cli("kill", cid).ok()
    assert cli.wait_status(cid, "stopped")["status"] == "stopped"
    assert r.out == "ready\ngot-term\n"
    cli("delete", cid).ok()


def test_kill_all(cli):
    cid, pid, _ = cli.create(["sh", "-c", "sleep 100 & sleep 100 & wait"])
    cli("start", cid).ok()
    cli("kill", "--all", cid, "9").ok()
    assert cli.wait_status(cid, "stopped")["status"] == "stopped"
    cli("delete", cid).ok()
    assert cgroups_of(cid) == []


def test_kill_bad_signal(cli):
    cid, _, _ = cli.create(["sleep", "100"])
    assert_error(cli("kill", cid, "SIGNOPE"), "SIGNOPE")
    assert cli.state(cid)["status"] == "created"


def test_missing_container(cli):
    cid = cli.new_id()
    r = cli("delete", "--force", cid)
    assert (r.rc, r.out, r.err) == (0, "", "")
    r = cli("delete", "-f", cid)
    assert (r.rc, r.out, r.err) == (0, "", "")
    for args in (["delete", cid], ["kill", cid, "9"], ["kill", cid], ["state", cid],
                 ["start", cid]):
        r = cli(*args)
        assert_error(r, "does not exist")
        assert r.out == ""


# ------------------------------------------------------------------ global flags


def test_root_flag_separates_containers(cli, tmp_path):
    cid, _, _ = cli.create(["sleep", "100"])
    other = str(tmp_path / "other-root")
    r = cli("--root", other, "list", "--format", "json", root=False).ok()
    assert json.loads(r.out) in ([], None)
    assert_error(cli("--root", other, "state", cid, root=False), "does not exist")
    assert cli.state(cid)["id"] == cid
    # the state lives under --root
    assert os.path.isdir(os.path.join(cli.root, cid))


def test_log_json_on_error(cli, tmp_path):
    log = str(tmp_path / "log.json")
    missing = cli.new_id()
    r = cli("--log", log, "--log-format", "json", "state", missing)
    assert_error(r, "does not exist")  # plain text on stderr too (podman reads it)
    r = cli("--log", log, "--log-format=json", "kill", missing, "9")
    assert_error(r, "does not exist")
    records = [json.loads(line) for line in open(log).read().splitlines()]
    assert len(records) == 2, records  # appended, one object per line
    for rec in records:
        assert rec["level"] == "error"
        assert missing in rec["msg"] and "does not exist" in rec["msg"]
        assert "\n" not in rec["msg"]
        t = parse_time(rec["time"])
        assert abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) < 60


def test_log_json_on_failed_create(cli, tmp_path):
    """containerd decodes the whole log.json and shows the last error."""
    b = cli.bundle(["true"], rootfs=str(tmp_path / "no-such-rootfs"))
    log = os.path.join(b, "log.json")
    cid = cli.new_id()
    r = cli("--log", log, "--log-format", "json", "create", "--bundle", b,
            "--pid-file", os.path.join(b, "init.pid"), cid, cwd=b)
    assert_error(r, "no-such-rootfs")
    records = [json.loads(line) for line in open(log).read().splitlines()]
    errors = [rec for rec in records if rec["level"] == "error"]
    assert errors and "no-such-rootfs" in errors[-1]["msg"]
    parse_time(errors[-1]["time"])
    assert not os.path.exists(os.path.join(b, "init.pid"))
    assert not os.path.exists(os.path.join(cli.root, cid))
    # podman: a fresh log file holds exactly one JSON object
    log2 = os.path.join(b, "podman.log")
    cli("--log-format=json", "--log", log2, "create", "--bundle", b, cid, cwd=b)
    assert json.loads(open(log2).read())["level"] == "error"


def test_go_style_single_dash_flags(cli, tmp_path):
    b = cli.bundle(["sleep", "100"])
    cid = cli.new_id()
    pid_file = os.path.join(b, "init.pid")
    cli("-root", cli.root, "create", "-bundle", b, "-pid-file", pid_file, cid,
        root=False).ok()
    cli.pids.add(int(open(pid_file).read()))
    r = cli("-root", cli.root, "list", "-format", "json", root=False).ok()
    assert [c["id"] for c in json.loads(r.out)] == [cid]
    log = str(tmp_path / "go.log")
    r = cli("-root", cli.root, "-log", log, "-log-format=json", "state", "nope", root=False)
    assert_error(r, "does not exist")
    assert json.loads(open(log).read())["level"] == "error"
    cli("-root=" + cli.root, "start", cid, root=False).ok()
    assert cli.state(cid)["status"] == "running"


def test_go_style_flags_leave_the_command_alone(cli):
    """Single-dash words of the container's own command line are not flags."""
    cid, _, _ = cli.create(["sleep", "100"])
    cli("start", cid).ok()
    r = cli("exec", cid, "echo", "-all", "-root", "-ne", "x").ok()
    assert r.out == "-all -root -ne x\n"
    r = cli("exec", "-detach", cid, "true").ok()
    assert r.out == ""


def test_exec_process_file(cli, tmp_path):
    """exec as containerd's shim and conmon call it: --process FILE (no
    command words), --detach, --pid-file."""
    cid, _, _ = cli.create(["sleep", "100"])
    cli("start", cid).ok()
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["sh", "-c", "echo via-$0; exit 4", "file"],
                                "cwd": "/", "env": ["PATH=/bin"]}))
    r = cli("exec", "--process", proc, cid)
    assert r.rc == 4, r
    assert r.out == "via-file\n"
    pid_file = tmp_path / "exec.pid"
    r = cli("exec", "--process", proc, "--detach", "--pid-file", pid_file, cid).ok()
    assert pid_file.read_text().isdigit()
    deadline = time.monotonic() + 10
    while r.out != "via-file\n" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.out == "via-file\n"
    # words after the id are the command; its exit status is exec's
    r = cli("exec", cid, "sh", "-c", "exit 5")
    assert r.rc == 5, r
    assert_error(cli("exec", cid), "--process")


def test_unopenable_log_file(cli, tmp_path):
    bad = str(tmp_path / "no-such-dir" / "log.json")
    r = cli("--log", bad, "--log-format", "json", "state", "missing")
    assert r.rc == 1, r
    assert "Traceback" not in r.err
    assert "no-such-dir" in r.err
    assert r.err.count("does not exist") == 1, r.err


def test_version():
    r = subprocess.run([BARERUN, "--version"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0
    assert r.stdout.startswith("barerun version ")
    assert "spec: " in r.stdout
    assert r.stderr == ""


# ------------------------------------------------------------------ errors


def _bad_json(cli):
    b = cli.bundle(["true"])
    with open(os.path.join(b, "config.json"), "w") as f:
        f.write('{"ociVersion": "1.0.2", "process": {"args": ["true"],}')
    return b


def _bad_type(cli):
    def modify(spec):
        spec["process"]["args"] = "true"
    return cli.bundle(None, modify)


ERRORS = {
    "bad id": (lambda cli: (["run", "../x"], None), ["../x", "invalid container id"]),
    "bad id create": (lambda cli: (["create", "--bundle", cli.bundle(["true"]), "a/b"], None),
                      ["a/b"]),
    "bad id state": (lambda cli: (["state", "../../etc"], None), ["../../etc"]),
    "malformed json": (lambda cli: (["run", cli.new_id()], _bad_json(cli)),
                       ["config.json", "JSON", "line 1"]),
    "wrong type": (lambda cli: (["run", cli.new_id()], _bad_type(cli)), ["process.args"]),
    "no config": (lambda cli: (["run", "--bundle", str(cli.tmp / "nowhere"), cli.new_id()],
                               None), ["nowhere"]),
    "missing rootfs": (lambda cli: (["run", cli.new_id()],
                                    cli.bundle(["true"], rootfs=str(cli.tmp / "gone"))),
                       ["gone", "rootfs"]),
    "missing program": (lambda cli: (["run", cli.new_id()], cli.bundle(["/no/such/prog"])),
                        ["/no/such/prog"]),
    "unknown command": (lambda cli: (["frobnicate"], None), ["frobnicate"]),
    "wrong flag": (lambda cli: (["list", "--bogus"], None), ["--bogus"]),
    "wrong global flag": (lambda cli: (["--bogus", "list"], None), ["--bogus"]),
    "missing id": (lambda cli: (["state"], None), ["id"]),
    "bad preserve-fds": (lambda cli: (["run", "--preserve-fds", "x", cli.new_id()], None),
                         ["preserve-fds"]),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_clear_line(cli, case):
    make, needles = ERRORS[case]
    args, bundle = make(cli)
    r = cli(*args, cwd=bundle)
    assert_error(r, *needles)
    assert r.out == ""
    # a failed create leaves nothing (the fixture checks cgroups too)
    assert not os.path.isdir(cli.root) or os.listdir(cli.root) == []


def test_no_command_is_an_error(cli):
    r = cli()
    assert r.rc == 1
    assert "Traceback" not in r.err
    assert "usage" in r.err.lower()


# ------------------------------------------------------------------ processes and fds


def test_init_is_reparented_after_create(cli):
    """The init must not stay a child of `barerun create` (the shim and
    conmon watch it as subreapers): when create exits, it is ours."""
    cid = cli.new_id()
    b = cli.bundle(["sleep", "100"])
    pid_file = os.path.join(b, "init.pid")
    r = cli("create", "--bundle", b, "--pid-file", pid_file, cid).ok()
    pid = int(open(pid_file).read())
    cli.pids.add(pid)
    assert r.pid != pid
    assert alive(pid)
    assert not os.path.exists(f"/proc/{r.pid}"), "barerun create is still around"
    assert ppid_of(pid) != r.pid
    assert ppid_of(pid) == os.getpid(), "the init was not re-parented to the subreaper"
    # and it is the container's process: start runs the program in it
    cli("start", cid).ok()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "sleep":
                break
        time.sleep(0.01)
    with open(f"/proc/{pid}/comm") as f:
        assert f.read().strip() == "sleep"
    # killed, it becomes our zombie, and barerun sees it stopped
    cli("kill", cid, "KILL").ok()
    assert cli.wait_status(cid, "stopped")["status"] == "stopped"
    reap_children([pid])
    cli("delete", cid).ok()


def test_preserve_fds(cli, tmp_path):
    """fd 3 (preserved) reaches the container; fd 4 (inherited by barerun
    but not preserved) does not."""
    three = tmp_path / "three"
    three.write_text("from-fd-3\n")
    four = tmp_path / "four"
    four.write_text("from-fd-4\n")
    b = cli.bundle(["sh", "-c",
                    "[ -e /proc/self/fd/3 ] && echo has-3; "
                    "[ -e /proc/self/fd/4 ] && echo has-4; "
                    "cat <&3; ls /proc/self/fd"])
    fa = os.open(three, os.O_RDONLY | os.O_CLOEXEC)
    fb = os.open(four, os.O_RDONLY | os.O_CLOEXEC)
    # copies at fd numbers >= 100, so the dup2s below cannot clobber them
    ha = fcntl.fcntl(fa, fcntl.F_DUPFD_CLOEXEC, 100)
    hb = fcntl.fcntl(fb, fcntl.F_DUPFD_CLOEXEC, 100)

    def fds_3_and_4():
        os.dup2(ha, 3)  # inheritable
        os.dup2(hb, 4)

    try:
        # subprocess's pass_fds keeps fd numbers (and its close_fds runs
        # after preexec_fn): put the files at exactly 3 and 4 instead; every
        # other fd of this process is close-on-exec
        r = cli("run", "--preserve-fds", "1", cli.new_id(), cwd=b,
                preexec_fn=fds_3_and_4, close_fds=False)
    finally:
        for fd in (fa, fb, ha, hb):
            os.close(fd)
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert "has-3" in lines
    assert "from-fd-3" in lines
    assert "has-4" not in lines, r.out
    assert "from-fd-4" not in r.out
    # ls lists 0 1 2 3 and its own directory fd: nothing else leaked
    fds = sorted(int(x) for x in lines[lines.index("from-fd-3") + 1:])
    assert fds[:4] == [0, 1, 2, 3]
    assert len(fds) <= 5, fds


def test_no_preserve_fds_closes_inherited(cli, tmp_path):
    f = tmp_path / "leak"
    f.write_text("leak\n")
    b = cli.bundle(["sh", "-c", "[ -e /proc/self/fd/3 ] && echo has-3; echo done"])
    fa = os.open(f, os.O_RDONLY | os.O_CLOEXEC)
    ha = fcntl.fcntl(fa, fcntl.F_DUPFD_CLOEXEC, 100)
    try:
        r = cli("run", cli.new_id(), cwd=b, preexec_fn=lambda: os.dup2(ha, 3),
                close_fds=False)
    finally:
        os.close(fa)
        os.close(ha)
    assert r.rc == 0, r
    assert r.out == "done\n"


# ------------------------------------------------------------------ environment


def test_minimal_environment(cli):
    """podman runs kill/delete/state with only XDG_RUNTIME_DIR= (empty) in
    the environment, and no PATH: barerun must not need either."""
    env = {"XDG_RUNTIME_DIR": ""}
    b = cli.bundle(["sh", "-c", "echo plain; exit 3"])
    r = cli("run", cli.new_id(), cwd=b, env=env)
    assert r.rc == 3, r
    assert r.out == "plain\n"
    assert "Traceback" not in r.err

    cid = cli.new_id()
    b = cli.bundle(["sleep", "100"])
    pid_file = os.path.join(b, "p.pid")
    cli("create", "--bundle", b, "--pid-file", pid_file, cid, env=env).ok()
    cli.pids.add(int(open(pid_file).read()))
    cli("start", cid, env=env).ok()
    st = json.loads(cli("state", cid, env=env).ok().out)
    assert st["status"] == "running"
    cli("kill", cid, "9", env=env).ok()
    assert cli.wait_status(cid, "stopped")["status"] == "stopped"
    r = cli("delete", cid, env=env)
    assert r.rc == 0, r
    assert_error(cli("state", cid, env=env), "does not exist")
    r = cli("delete", "--force", cid, env=env)
    assert (r.rc, r.out, r.err) == (0, "", "")
