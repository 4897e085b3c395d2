"""More of the runc-compatible command line, with real containers:
update (flags, `--resources -` on stdin as containerd sends it,
`--resources=FILE` as podman sends it), events (--stats and the interval
stream), features and --version (see the shared CLIENTS.md notes).

The helpers and the ``cli`` fixture (private --root, ids "barerun-test-",
force-delete and leftover checks) come from test_cli.py.
"""

import json
import os
import subprocess
import time

import pytest

from tests.runtime.test_cli import (  # noqa: F401 - fixtures used by name
    BARERUN, TIMEOUT, assert_error, cgroups_of, cli, cli_rootfs, subreaper)

CGROUP_ROOT = "/sys/fs/cgroup"
MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real containers need root")


def cgfile(cid, controller, name):
    """A v1 interface file of the container's default cgroup barerun/<id>."""
    path = os.path.join(CGROUP_ROOT, controller, "barerun", cid, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this host")
    with open(path) as f:
        return f.read().strip()


def running(cli):
    cid, pid, bundle = cli.create(["sleep", "1000"])
    cli("start", cid).ok()
    return cid, pid, bundle


def with_stdin(cli, data, *args, cwd=None):
    """barerun [--root R] ARGS with ``data`` on stdin (containerd's update)."""
    argv = cli.argv(args)
    p = subprocess.run(argv, input=data, capture_output=True, text=True, timeout=TIMEOUT,
                       cwd=cwd or str(cli.tmp))
    assert "Traceback" not in p.stderr, p.stderr
    return p


# ------------------------------------------------------------------ update


def test_update_flags(cli):
    cid, _, _ = running(cli)
    cli("update", "--memory", "64m", "--memory-reservation", "32M", "--cpu-shares", "512",
        "--pids-limit", "20", "--cpu-period", "100000", "--cpu-quota", "50000",
        "--cpuset-cpus", "0", cid).ok()
    assert int(cgfile(cid, "memory", "memory.limit_in_bytes")) == 64 * MiB
    assert int(cgfile(cid, "memory", "memory.soft_limit_in_bytes")) == 32 * MiB
    assert cgfile(cid, "cpu", "cpu.shares") == "512"
    assert cgfile(cid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert cgfile(cid, "cpu", "cpu.cfs_period_us") == "100000"
    assert cgfile(cid, "pids", "pids.max") == "20"
    assert cgfile(cid, "cpuset", "cpuset.cpus") == "0"
    # runc's own spelling, and -1: no limit
    cli("update", "--cpu-share", "256", "--memory", "-1", "--pids-limit", "0", cid).ok()
    assert cgfile(cid, "cpu", "cpu.shares") == "256"
    assert int(cgfile(cid, "memory", "memory.limit_in_bytes")) > 2**60
    assert cgfile(cid, "pids", "pids.max") == "max"
    # the container still runs and sees its limit
    r = cli("exec", cid, "cat", "/proc/self/cgroup").ok()
    assert "memory:" in r.out


def test_update_resources_on_stdin_as_containerd(cli):
    """The shim's call: global flags, then `update --resources - ID` with
    LinuxResources JSON (and a newline) on stdin."""
    cid, _, bundle = running(cli)
    log = os.path.join(bundle, "log.json")
    p = with_stdin(cli, '{"memory":{"limit":123731968},"cpu":{"shares":256}}\n',
                   "--log", log, "--log-format", "json", "update", "--resources", "-", cid,
                   cwd=bundle)
    assert p.returncode == 0, p
    assert int(cgfile(cid, "memory", "memory.limit_in_bytes")) == 123731968
    assert cgfile(cid, "cpu", "cpu.shares") == "256"
    # nothing but JSON log records in log.json (here: none at all)
    assert not os.path.exists(log) or not open(log).read().strip()
    # only the fields given change
    p = with_stdin(cli, '{"pids":{"limit":33}}', "update", "--resources", "-", cid)
    assert p.returncode == 0, p
    assert cgfile(cid, "pids", "pids.max") == "33"
    assert int(cgfile(cid, "memory", "memory.limit_in_bytes")) == 123731968


def test_update_resources_file_as_podman(cli, tmp_path):
    """podman: `update --resources=/var/tmp/podmanNNN ID` (the = form)."""
    cid, _, _ = running(cli)
    res = tmp_path / "podman-resources"
    res.write_text('{"memory":{"limit":314572800,"swap":629145600},"cpu":{"shares":512}}')
    cli("update", f"--resources={res}", cid).ok()
    assert int(cgfile(cid, "memory", "memory.limit_in_bytes")) == 314572800
    assert int(cgfile(cid, "memory", "memory.memsw.limit_in_bytes")) == 629145600
    assert cgfile(cid, "cpu", "cpu.shares") == "512"
    # a flag given with --resources wins over the same JSON field
    cli("update", f"--resources={res}", "--cpu-shares", "300", cid).ok()
    assert cgfile(cid, "cpu", "cpu.shares") == "300"


def test_update_errors(cli, tmp_path):
    cid, _, _ = running(cli)
    missing = tmp_path / "no-such-file"
    assert_error(cli("update", f"--resources={missing}", cid), str(missing),
                 "No such file or directory")
    p = with_stdin(cli, '{"memory": {"limit": "lots"}}', "update", "--resources", "-", cid)
    assert p.returncode == 1
    assert "resources.memory.limit" in p.stderr and "must be an integer" in p.stderr, p.stderr
    p = with_stdin(cli, '{"memory": ', "update", "--resources", "-", cid)
    assert p.returncode == 1 and "invalid JSON" in p.stderr, p.stderr
    p = with_stdin(cli, '[1, 2]', "update", "--resources", "-", cid)
    assert p.returncode == 1 and "JSON object" in p.stderr, p.stderr
    assert_error(cli("update", "--memory", "lots", cid), "--memory", "lots")
    assert_error(cli("update", "--cpu-shares", "x", cid), "--cpu-shares")
    # below the current usage: the kernel refuses, the file is named
    assert_error(cli("update", "--memory", "4k", cid), "memory.limit_in_bytes",
                 "Device or resource busy")
    assert_error(cli("update", "--memory", "1m", cli.new_id()), "does not exist")
    cli("kill", cid, "KILL").ok()
    cli.wait_status(cid, "stopped")
    assert_error(cli("update", "--memory", "64m", cid), "stopped")


# ------------------------------------------------------------------ events


def test_events_stats_one_line(cli):
    cid, _, _ = running(cli)
    r = cli("events", "--stats", cid).ok()
    lines = r.out.splitlines()
    assert len(lines) == 1, r.out
    ev = json.loads(lines[0])
    assert ev["type"] == "stats" and ev["id"] == cid
    data = ev["data"]
    assert data["memory"]["usage"]["usage"] > 0
    assert data["memory"]["usage"]["limit"] > 0
    assert data["pids"]["current"] == 1
    assert data["cpu"]["usage"]["total"] > 0
    # every number is one go-runc's uint64 fields can take
    def numbers(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from numbers(x)
        elif isinstance(v, (int, float)):
            yield v
    assert all(isinstance(n, int) and n >= 0 for n in numbers(data))


def test_events_stream_until_the_container_stops(cli):
    cid, _, _ = running(cli)
    p, out, err = cli.spawn("events", "--interval", "100ms", cid)
    try:
        deadline = time.monotonic() + 10
        while open(out).read().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        cli("kill", cid, "KILL").ok()
        rc = p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 0, open(err).read()
    events = [json.loads(line) for line in open(out).read().splitlines()]
    assert len(events) >= 2
    assert all(e["type"] == "stats" and e["id"] == cid for e in events)


def test_events_errors(cli):
    assert_error(cli("events", "--stats", cli.new_id()), "does not exist")
    cid, _, _ = running(cli)
    assert_error(cli("events", "--interval", "soon", cid), "--interval")
    cli("kill", cid, "KILL").ok()
    cli.wait_status(cid, "stopped")
    assert_error(cli("events", "--stats", cid), "not running")


# ------------------------------------------------------------------ features, version


def test_features():
    r = subprocess.run([BARERUN, "features"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    f = json.loads(r.stdout)
    assert f["ociVersionMin"] == "1.0.0"
    assert f["ociVersionMax"].startswith("1.0.2")
    assert f["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer",
                          "poststart", "poststop"]
    assert "linux.personality" in f["annotations"]["org.barerun.refused"]
    opts = set(f["mountOptions"])
    assert {"ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "rprivate",
            "rslave"} <= opts
    assert "idmap" not in opts
    linux = f["linux"]
    assert {"pid", "mount", "network", "ipc", "uts", "cgroup"} == set(linux["namespaces"])
    assert "CAP_SYS_ADMIN" in linux["capabilities"]
    assert "CAP_CHOWN" in linux["capabilities"]
    assert linux["cgroup"]["v1"] and linux["cgroup"]["v2"]
    assert linux["cgroup"]["systemd"] is False
    assert linux["apparmor"] == {"enabled": False}
    assert linux["selinux"] == {"enabled": False}
    assert isinstance(linux["seccomp"]["enabled"], bool)


def go_runc_parse_version(text):
    """go-runc 1.0.0's parseVersion (containerd 1.6): by line prefix."""
    parts = text.strip().split("\n")
    v = {}
    if parts and parts[0].startswith("runc version "):
        v["runc"] = parts[0][13:]
    for part in parts[1:]:
        if part.startswith("commit: "):
            v["commit"] = part[8:]
        elif part.startswith("spec: "):
            v["spec"] = part[6:]
    return v


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version(flag):
    r = subprocess.run([BARERUN, flag], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].startswith("barerun version ")
    assert lines[1].startswith("commit: ") and len(lines[1]) > len("commit: ")
    assert lines[2] == "spec: 1.0.2-dev"
    v = go_runc_parse_version(r.stdout)
    assert v["spec"] == "1.0.2-dev"


def test_usage_error_is_a_json_log_record(cli, tmp_path):
    """A flag barerun does not know still ends up in log.json as JSON
    (containerd would otherwise say "unable to retrieve OCI runtime error")."""
    log = tmp_path / "log.json"
    r = cli("--log", log, "--log-format", "json", "create", "--no-such-flag", "x")
    assert_error(r, "--no-such-flag")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 1
    assert records[0]["level"] == "error" and "--no-such-flag" in records[0]["msg"]
    assert "T" in records[0]["time"] and records[0]["time"].endswith("Z")


def test_trace_names_the_container_and_the_spec_field_of_each_step(cli):
    """--trace: every line names the container; the init's steps name the
    spec field they come from, and the parent's the resource field."""
    def m(spec):
        spec["linux"]["resources"]["pids"] = {"limit": 50}
    cid = cli.new_id()
    b = cli.bundle(["true"], m)
    r = cli("--trace", "run", "--bundle", b, cid).ok()
    lines = [ln for ln in r.err.splitlines() if ln.startswith("trace ")]
    assert lines and all(ln.startswith(f"trace {cid} ") for ln in lines), lines[:3]
    text = "\n".join(lines)
    assert "step what='mount proc (mounts[0])' path='/proc'" in text
    assert "step what='linux.resources.pids'" in text


def test_bad_bundle_files_and_roots_are_one_clear_line(cli, tmp_path):
    """config.json a FIFO (would block a plain open), JSON nested 50000
    deep, --root a regular file, --pid-file a directory: one line naming
    the path, nothing left behind."""
    fifo_bundle = tmp_path / "fifo-bundle"
    fifo_bundle.mkdir()
    os.mkfifo(fifo_bundle / "config.json")
    r = cli("create", "--bundle", fifo_bundle, cli.new_id(), timeout=10)
    assert_error(r, "config.json is not a regular file")

    deep = tmp_path / "deep-bundle"
    deep.mkdir()
    (deep / "config.json").write_text("[" * 50000 + "]" * 50000)
    r = cli("create", "--bundle", deep, cli.new_id())
    assert_error(r, "config.json is nested too deeply")

    afile = tmp_path / "a-file"
    afile.write_text("")
    r = cli("--root", afile, "list", root=False)
    assert_error(r, f"state root {afile} is not a directory")

    piddir = tmp_path / "piddir"
    piddir.mkdir()
    b = cli.bundle(["true"])
    cid = cli.new_id()
    r = cli("create", "--bundle", b, "--pid-file", piddir, cid)
    assert_error(r, f"pid file {piddir}: Is a directory")
    assert os.listdir(tmp_path).count("piddir") == 1
    assert not [n for n in os.listdir(tmp_path) if n.startswith("piddir.tmp")]
    assert cli("state", cid).rc != 0  # the failed create left nothing


def test_a_console_socket_path_too_long_for_a_unix_address_is_one_line(cli, tmp_path):
    def m(spec):
        spec["process"]["terminal"] = True
    b = cli.bundle(["true"], m)
    sock = str(tmp_path / ("s" * 120))
    cid = cli.new_id()
    r = cli("create", "--bundle", b, "--console-socket", sock, cid)
    assert_error(r, f"console socket {sock}", "longer than 107 bytes")
    assert cli("state", cid).rc != 0


def test_a_failed_exec_leaves_no_process_behind(cli, tmp_path):
    """exec whose --pid-file cannot be written: one line, and the process it
    had started is gone, not left running untracked in the container."""
    cid, pid, _b = cli.create(["sleep", "60"])
    cli("start", cid).ok()
    piddir = tmp_path / "exec-piddir"
    piddir.mkdir()
    r = cli("exec", "--pid-file", piddir, cid, "sleep", "12345")
    assert_error(r, f"pid file {piddir}: Is a directory")
    left = [p for p in cgroups_procs(cid) if "12345" in open(f"/proc/{p}/cmdline").read()]
    assert not left, f"exec'd process left running: {left}"


def cgroups_procs(cid):
    procs = set()
    for d in cgroups_of(cid):
        try:
            procs |= set(open(os.path.join(d, "cgroup.procs")).read().split())
        except OSError:
            pass
    return procs
