"""Spec features, each read back from inside a real busybox container."""

import errno
import json
import os
import stat
import time
import uuid

import pytest

import runtime
from lowlevel import caps as C
from lowlevel import cgroups
from runtime import Status
from tests.conftest import SECRET_DIR, leftover_cgroups


def caps_mask(names):
    return sum(1 << C.number(n) for n in names)


def status_fields(text):
    """/proc/self/status text -> {field: value}."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def proc_mounts(text):
    """/proc/mounts lines -> {mountpoint: (fstype, set(options))} (last wins)."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4:
            out[f[1]] = (f[2], set(f[3].split(",")), f[0])
    return out


def wait_running(c, timeout=5):
    deadline = time.monotonic() + timeout
    while c.state().status != Status.RUNNING and time.monotonic() < deadline:
        time.sleep(0.005)


# ---------------------------------------------------------------- identity


def test_hostname_and_domainname(sh):
    def m(spec):
        spec["hostname"] = "barerun-test-host"
        spec["domainname"] = "barerun.example"
    status, out, err = sh("hostname; cat /proc/sys/kernel/domainname", m)
    assert (status, err) == (0, "")
    assert out.split() == ["barerun-test-host", "barerun.example"]
    # the host's names are untouched
    assert os.uname().nodename != "barerun-test-host"


def test_user_groups_umask(sh):
    def m(spec):
        spec["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [10, 20],
                                   "umask": 0o027}
    status, out, err = sh("id -u; id -g; id -G; umask; "
                          "touch /dev/shm/f; stat -c '%u %g %a' /dev/shm/f", m)
    assert (status, err) == (0, "")
    uid, gid, groups, umask, st = out.splitlines()
    assert (uid, gid) == ("1000", "1001")
    assert set(groups.split()) == {"1001", "10", "20"}
    assert umask == "0027"
    assert st == "1000 1001 640"


def test_default_umask_and_cwd(sh):
    def m(spec):
        spec["process"]["cwd"] = "/etc"
    status, out, _ = sh("umask; pwd", m)
    assert (status, out.split()) == (0, ["0022", "/etc"])


def test_env(sh):
    def m(spec):
        spec["process"]["env"].append("BARERUN_TEST=hello world")
    status, out, _ = sh('echo "$BARERUN_TEST"', m)
    assert (status, out) == (0, "hello world\n")


# ---------------------------------------------------------------- capabilities


def test_default_capabilities(sh):
    status, out, _ = sh("cat /proc/self/status")
    f = status_fields(out)
    want = caps_mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
    assert int(f["CapEff"], 16) == want
    assert int(f["CapPrm"], 16) == want
    assert int(f["CapBnd"], 16) == want
    assert int(f["CapInh"], 16) == 0
    # ambient: the default spec lists them, but without inheritable they
    # cannot be held (skipped, as runc does)
    assert int(f["CapAmb"], 16) == 0


def test_capability_sets_match_spec(sh):
    bounding = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"]
    effective = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]
    permitted = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"]
    inheritable = ["CAP_NET_RAW", "CAP_KILL"]
    ambient = ["CAP_NET_RAW"]

    def m(spec):
        spec["process"]["capabilities"] = {
            "bounding": bounding, "effective": effective, "permitted": permitted,
            "inheritable": inheritable, "ambient": ambient}
    # `exec cat`: the shell's own sets survive one more execve as root
    status, out, err = sh("exec cat /proc/self/status", m)
    assert (status, err) == (0, "")
    f = status_fields(out)
    assert int(f["CapBnd"], 16) == caps_mask(bounding)
    assert int(f["CapAmb"], 16) == caps_mask(ambient)
    assert int(f["CapInh"], 16) == caps_mask(inheritable)
    # execve as root would grant the whole bounding set; noNewPrivileges
    # (on in the default spec) caps it at the spec's permitted set, and
    # root's effective set is its permitted set (kernel rules, as in runc)
    assert int(f["CapPrm"], 16) == caps_mask(permitted)
    assert int(f["CapEff"], 16) == caps_mask(permitted)


def test_capability_sets_non_root(sh):
    """For a non-root user the sets survive execve only through ambient."""
    def m(spec):
        spec["process"]["user"] = {"uid": 1000, "gid": 1000}
        spec["process"]["capabilities"] = {
            "bounding": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"],
            "effective": ["CAP_CHOWN", "CAP_NET_RAW"],
            "permitted": ["CAP_CHOWN", "CAP_NET_RAW"],
            "inheritable": ["CAP_CHOWN", "CAP_NET_RAW"],
            "ambient": ["CAP_NET_RAW"]}
    status, out, err = sh("cat /proc/self/status", m)
    assert (status, err) == (0, "")
    f = status_fields(out)
    assert int(f["CapBnd"], 16) == caps_mask(["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"])
    assert int(f["CapAmb"], 16) == caps_mask(["CAP_NET_RAW"])
    assert int(f["CapEff"], 16) == caps_mask(["CAP_NET_RAW"])
    assert int(f["CapPrm"], 16) == caps_mask(["CAP_NET_RAW"])


def test_dropped_capability_is_gone(sh):
    # CAP_CHOWN is not in the default spec: even root cannot chown
    status, out, err = sh("touch /dev/shm/f && chown 65534 /dev/shm/f; echo rc=$?")
    assert out.strip().endswith("rc=1")
    assert "Operation not permitted" in err

    def m(spec):
        for k in ("bounding", "effective", "permitted"):
            spec["process"]["capabilities"][k].append("CAP_CHOWN")
    status, out, err = sh("touch /dev/shm/f && chown 65534 /dev/shm/f; echo rc=$?; "
                          "stat -c %u /dev/shm/f", m)
    assert out.split() == ["rc=0", "65534"], err


# ---------------------------------------------------------------- rlimits


def test_rlimit_nofile_soft(sh):
    def m(spec):
        spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 4096}]
    status, out, _ = sh("ulimit -n; ulimit -Hn", m)
    assert (status, out.split()) == (0, ["512", "4096"])


def test_rlimit_above_hard_limit_fails_create(create, root, new_id):
    cid = new_id()

    def m(spec):
        spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 30000}]
    with pytest.raises(runtime.ContainerError) as ei:
        create(["true"], m, cid=cid)
    text = str(ei.value)
    assert "RLIMIT_NOFILE" in text
    assert "20000" in text  # the current hard limit
    assert "Traceback" not in text
    assert not os.path.exists(os.path.join(root, cid))
    assert leftover_cgroups(f"barerun/{cid}") == []


# ---------------------------------------------------------------- process controls


def test_no_new_privileges(sh):
    status, out, _ = sh("grep NoNewPrivs /proc/self/status")
    assert out.split() == ["NoNewPrivs:", "1"]
    status, out, _ = sh("grep NoNewPrivs /proc/self/status",
                        lambda s: s["process"].update(noNewPrivileges=False))
    assert out.split() == ["NoNewPrivs:", "0"]


def test_oom_score_adj(sh):
    status, out, _ = sh("cat /proc/self/oom_score_adj",
                        lambda s: s["process"].update(oomScoreAdj=432))
    assert (status, out) == (0, "432\n")


# ---------------------------------------------------------------- masked / read-only


def test_masked_paths(sh):
    # /proc/kcore is masked by the default spec, but this kernel has none:
    # /proc/keys (not empty on the host) is masked the same way
    with open("/proc/keys") as f:
        assert f.read(), "want a non-empty /proc/keys on the host"

    def m(spec):
        spec["linux"]["maskedPaths"].append(SECRET_DIR)
    status, out, err = sh(f"wc -c < /proc/keys; ls -A {SECRET_DIR} | wc -l; "
                          f"cat {SECRET_DIR}/key; echo rc=$?; "
                          f"test -e /proc/kcore && wc -c < /proc/kcore || echo 0", m)
    count_keys, count_dir, rc, count_kcore = out.split()
    assert count_keys == "0"
    assert count_dir == "0"
    assert rc == "rc=1"
    assert "No such file" in err
    assert count_kcore == "0"


def test_masked_dir_unmasked_without_spec(sh):
    status, out, _ = sh(f"cat {SECRET_DIR}/key")
    assert (status, out) == (0, "secret\n")


def test_readonly_paths(sh):
    status, out, err = sh("echo barerun > /proc/sys/kernel/domainname; echo rc=$?; "
                          "mount -o remount,rw /proc/sys; echo rc=$?; "
                          "echo barerun > /proc/sys/kernel/domainname; echo rc=$?; "
                          "grep ' /proc/sys ' /proc/mounts")
    lines = out.splitlines()
    assert lines[:3] == ["rc=1", "rc=255", "rc=1"] or lines[:3] == ["rc=1", "rc=1", "rc=1"], out
    assert err.count("Read-only file system") == 2
    assert lines[3].split()[3].split(",")[0] == "ro"


def test_readonly_root(sh):
    status, out, err = sh("touch /x; echo rc=$?; touch /dev/shm/ok; echo rc=$?")
    assert out.split() == ["rc=1", "rc=0"]
    assert "Read-only file system" in err

    status, out, err = sh("touch /barerun-test-rw && rm /barerun-test-rw; echo rc=$?",
                          lambda s: s["root"].update(readonly=False))
    assert out.split() == ["rc=0"], err


# ---------------------------------------------------------------- mounts


def test_tmpfs_mount_with_options(sh):
    def m(spec):
        spec["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosuid", "nodev", "noexec", "mode=700",
                                           "size=1m"]})
    status, out, _ = sh("cat /proc/mounts; stat -c %a /data", m)
    mounts = proc_mounts(out)
    fstype, opts, _src = mounts["/data"]
    assert fstype == "tmpfs"
    assert {"rw", "nosuid", "nodev", "noexec", "size=1024k", "mode=700"} <= opts
    assert out.split()[-1] == "700"


def test_readonly_tmpfs(sh):
    def m(spec):
        spec["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                               "options": ["ro"]})
    status, out, err = sh("touch /data/x; echo rc=$?; grep ' /data ' /proc/mounts", m)
    assert out.splitlines()[0] == "rc=1"
    assert "ro" in out.splitlines()[1].split()[3].split(",")
    assert "Read-only file system" in err


@pytest.fixture
def hostdir(tmp_path):
    d = tmp_path / "hostdir"
    d.mkdir()
    (d / "file").write_text("from the host\n")
    return str(d)


@pytest.mark.parametrize("kind", ["bind", "rbind"])
def test_bind_host_dir_readonly(sh, hostdir, kind):
    def m(spec):
        spec["mounts"].append({"destination": "/mnt", "type": "bind", "source": hostdir,
                               "options": [kind, "ro"]})
    status, out, err = sh("cat /mnt/file; touch /mnt/new; echo rc=$?; "
                          "grep ' /mnt ' /proc/mounts", m)
    lines = out.splitlines()
    assert lines[0] == "from the host"
    assert lines[1] == "rc=1"
    assert "ro" in lines[2].split()[3].split(",")
    assert "Read-only file system" in err
    assert os.listdir(hostdir) == ["file"]


def test_bind_host_dir_rw(sh, hostdir):
    def m(spec):
        spec["mounts"].append({"destination": "/mnt", "source": hostdir,
                               "options": ["rbind", "rw"]})
    status, out, err = sh("echo inside > /mnt/new; echo rc=$?", m)
    assert out == "rc=0\n", err
    with open(os.path.join(hostdir, "new")) as f:
        assert f.read() == "inside\n"


def test_bind_single_file(sh, tmp_path):
    src = tmp_path / "hostfile"
    src.write_text("one file\n")

    def m(spec):
        spec["mounts"].append({"destination": "/etc/barerun-test-file", "type": "bind",
                               "source": str(src), "options": ["bind", "ro"]})
    status, out, err = sh("cat /etc/barerun-test-file; "
                          "echo x >> /etc/barerun-test-file; echo rc=$?", m)
    assert out.splitlines() == ["one file", "rc=1"]
    assert src.read_text() == "one file\n"


def test_bind_relative_source(run, bundle):
    b = bundle(["cat", "/mnt/data.txt"], lambda s: s["mounts"].append(
        {"destination": "/mnt/data.txt", "type": "bind", "source": "data.txt",
         "options": ["bind", "ro"]}))
    with open(os.path.join(b, "data.txt"), "w") as f:
        f.write("in the bundle\n")
    assert run(b) == (0, "in the bundle\n", "")


@pytest.mark.parametrize("prop", ["rprivate", "rslave", "private", "slave", "rshared",
                                  "unbindable"])
def test_mount_propagation_option(sh, hostdir, prop):
    def m(spec):
        spec["mounts"].append({"destination": "/mnt", "type": "bind", "source": hostdir,
                               "options": ["rbind", prop]})
    status, out, err = sh("grep ' /mnt ' /proc/self/mountinfo; cat /mnt/file", m)
    assert status == 0, err
    info, content = out.splitlines()
    assert content == "from the host"
    optional = info.split(" - ")[0].split()[6:]
    if "shared" in prop:
        assert any(o.startswith("shared:") for o in optional), info
    elif "unbindable" in prop:
        assert "unbindable" in optional, info
    elif "slave" in prop:
        assert any(o.startswith("master:") for o in optional) or optional == [], info
    else:
        assert optional == [], info


@pytest.mark.parametrize("prop", ["rshared", "shared", "rprivate", "rslave"])
def test_rootfs_propagation(sh, prop):
    status, out, err = sh("grep -E ' / | /proc ' /proc/self/mountinfo",
                          lambda s: s["linux"].update(rootfsPropagation=prop))
    assert status == 0, err
    root_line = out.splitlines()[0]
    optional = root_line.split(" - ")[0].split()[6:]
    if "shared" in prop:
        assert any(o.startswith("shared:") for o in optional), root_line
    else:
        assert not any(o.startswith("shared:") for o in optional), root_line


def test_mount_destination_created_in_rootfs(sh, private_rootfs, tmp_path):
    def m(spec):
        spec["mounts"].append({"destination": "/new/dir/deep", "type": "tmpfs",
                               "source": "tmpfs"})
    status, out, err = sh("grep ' /new/dir/deep ' /proc/mounts", m, rootfs_path=private_rootfs)
    assert status == 0, err
    assert os.path.isdir(os.path.join(private_rootfs, "new/dir/deep"))


# ---------------------------------------------------------------- devices


def test_default_devices(sh):
    status, out, err = sh("for d in null zero full random urandom tty; do "
                          "stat -c '%n %F %t %T %a' /dev/$d; done; "
                          "echo x > /dev/null && head -c 4 /dev/zero | wc -c")
    assert status == 0, err
    lines = out.splitlines()
    want = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
            "urandom": (1, 9), "tty": (5, 0)}
    for line in lines[:6]:
        name, *kind, major, minor, mode = line.split()
        assert " ".join(kind) == "character special file", line
        assert (int(major, 16), int(minor, 16)) == want[name.split("/")[-1]], line
        assert mode == "666", line
    assert lines[6] == "4"


def test_linux_devices_node(sh):
    def m(spec):
        spec["linux"]["devices"] = [{"path": "/dev/barerun-test-null", "type": "c",
                                     "major": 1, "minor": 3, "fileMode": 0o620,
                                     "uid": 0, "gid": 5}]
    status, out, err = sh("stat -c '%F %t %T %a %u %g' /dev/barerun-test-null; "
                          "echo x > /dev/barerun-test-null; echo rc=$?", m)
    assert status == 0, err
    line, rc = out.splitlines()
    assert line == "character special file 1 3 620 0 5"
    assert rc == "rc=0", err
    assert not os.path.exists("/dev/barerun-test-null")


def test_dev_symlinks(sh):
    status, out, err = sh("for l in fd stdin stdout stderr ptmx; do "
                          "echo $l $(readlink /dev/$l); done; ls /dev/fd/ | wc -l")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:5] == ["fd /proc/self/fd", "stdin /proc/self/fd/0",
                         "stdout /proc/self/fd/1", "stderr /proc/self/fd/2",
                         "ptmx pts/ptmx"]
    assert int(lines[5]) >= 3


def test_devpts_and_shm(sh):
    status, out, err = sh("cat /proc/mounts")
    mounts = proc_mounts(out)
    assert mounts["/dev/pts"][0] == "devpts"
    assert {"nosuid", "noexec", "mode=620", "ptmxmode=666", "gid=5"} <= mounts["/dev/pts"][1]
    assert mounts["/dev/shm"][0] == "tmpfs" and "size=65536k" in mounts["/dev/shm"][1]
    assert mounts["/dev/mqueue"][0] == "mqueue"
    assert mounts["/sys"][0] == "sysfs" and "ro" in mounts["/sys"][1]
    assert mounts["/"][1] >= {"ro"}


# ---------------------------------------------------------------- namespaces


def host_ns(kind):
    return os.readlink(f"/proc/self/ns/{kind}")


def test_namespaces(sh):
    status, out, err = sh("echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; "
                          "for n in pid mnt uts ipc net cgroup; do readlink /proc/self/ns/$n; done; "
                          "echo ==; cat /proc/net/dev; echo ==; cat /proc/self/cgroup")
    assert status == 0, err
    head, netdev, cgroup = out.split("==\n")
    lines = head.splitlines()
    assert lines[0] == "1"
    assert lines[1].startswith("sh -c echo $$;")
    ns = lines[2:8]
    for kind, link in zip(("pid", "mnt", "uts", "ipc", "net", "cgroup"), ns):
        assert link.startswith(kind + ":[")
        assert link != host_ns(kind), f"{kind} namespace is the host's"
    devs = [line.split(":")[0].strip() for line in netdev.splitlines()[2:]]
    assert devs == ["lo"]
    cg = cgroup.splitlines()
    assert cg and all(line.split(":", 2)[2] == "/" for line in cg), cg


def test_without_namespaces_shares_hosts(sh):
    def m(spec):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] in ("pid", "mount", "uts")]
    status, out, err = sh("readlink /proc/self/ns/net; readlink /proc/self/ns/ipc", m)
    assert status == 0, err
    assert out.split() == [host_ns("net"), host_ns("ipc")]


def test_without_mount_namespace_chroot(sh):
    """No mount namespace: the init only chroots into the rootfs (and the
    spec may then ask for no mounts, masks or read-only root)."""
    def m(spec):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] != "mount"]
        spec["mounts"] = []
        spec["linux"]["maskedPaths"] = []
        spec["linux"]["readonlyPaths"] = []
        spec["root"]["readonly"] = False
    status, out, err = sh(f"ls {SECRET_DIR}; ls /proc | wc -l", m)
    assert status == 0, err
    assert out.split() == ["key", "0"]


def test_join_network_namespace_by_path(create, sh):
    first = create(["sleep", "60"]).c
    first.start()
    pid = first.state().pid
    net = os.readlink(f"/proc/{pid}/ns/net")
    assert net != host_ns("net")

    def m(spec):
        for n in spec["linux"]["namespaces"]:
            if n["type"] == "network":
                n["path"] = f"/proc/{pid}/ns/net"
    status, out, err = sh("readlink /proc/self/ns/net; readlink /proc/self/ns/uts", m)
    assert status == 0, err
    got_net, got_uts = out.split()
    assert got_net == net
    assert got_uts != os.readlink(f"/proc/{pid}/ns/uts")


def test_join_pid_namespace_by_path(create, sh):
    first = create(["sleep", "60"]).c
    first.start()
    pid = first.state().pid

    def m(spec):
        for n in spec["linux"]["namespaces"]:
            if n["type"] == "pid":
                n["path"] = f"/proc/{pid}/ns/pid"
    status, out, err = sh("echo $$; tr '\\0' ' ' < /proc/1/cmdline", m)
    assert status == 0, err
    me, init = out.splitlines()
    assert me != "1"
    assert init.strip() == "sleep 60"


def test_sysctl(sh):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host = f.read()

    def m(spec):
        spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    status, out, err = sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni", m)
    assert (status, out.split()) == (0, ["1", "1234"]), err
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host


# ---------------------------------------------------------------- cgroups


def cg_file(rel, controller, name):
    with open(f"/sys/fs/cgroup/{controller}/{rel}/{name}") as f:
        return f.read().strip()


def test_memory_limit_oom_kills(create):
    def m(spec):
        spec["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}
    # busybox tail keeps its last 10 lines in memory: one newline-less line
    # of 64 MiB is 64 MiB of anonymous memory charged to the cgroup; tail
    # raises its own oom_score_adj so the OOM killer picks it, not the shell
    # (the victim is otherwise the kernel's choice of the moment), and head
    # too, so that a second OOM while tail's memory is still being freed
    # takes head (harmless), never the shell (1 in ~10 runs did)
    o = create(["sh", "-c", "(echo 999 > /proc/self/oom_score_adj; exec head -c 64m /dev/zero) | "
                "(echo 1000 > /proc/self/oom_score_adj; exec tail) | wc -c"], m)
    c = o.c
    rel = f"barerun/{c.id}"
    assert cg_file(rel, "memory", "memory.limit_in_bytes") == str(16 << 20)
    c.start()
    status = c.wait(timeout=30)
    oom = dict(line.split() for line in cg_file(rel, "memory", "memory.oom_control").splitlines())
    c.delete()
    assert int(oom["oom_kill"]) >= 1
    assert o.stdout().strip() in ("0", "")  # tail never wrote its last byte
    assert status == 0  # `wc` is the pipeline's last command ...

    # ... and as the container's only program: 128 + SIGKILL
    o = create(["tail"], m, stdin="/dev/zero")
    o.c.start()
    assert o.c.wait(timeout=30) == 137


def test_pids_limit_stops_fork_loop(sh, create):
    def m(spec):
        spec["linux"]["resources"]["pids"] = {"limit": 10}
    o = create(["sh", "-c", "n=0; for i in $(seq 20); do sleep 5 & n=$((n+1)); done; "
                            "echo started"], m)
    c = o.c
    assert cg_file(f"barerun/{c.id}", "pids", "pids.max") == "10"
    c.start()
    c.wait(timeout=30)
    c.delete(force=True)
    assert "can't fork" in o.stderr() or "Resource temporarily unavailable" in o.stderr()


def test_cpu_shares_and_quota_inside(sh):
    def m(spec):
        spec["linux"]["resources"]["cpu"] = {"shares": 512, "quota": 50000, "period": 100000}
    status, out, err = sh("cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
                          "/sys/fs/cgroup/cpu/cpu.cfs_period_us", m)
    assert (status, out.split()) == (0, ["512", "50000", "100000"]), err


def test_cpu_and_memory_visible_from_host(create):
    def m(spec):
        spec["linux"]["resources"].update(cpu={"shares": 256, "quota": 20000},
                                          memory={"limit": 64 << 20, "swappiness": 10},
                                          pids={"limit": 50})
    c = create(["true"], m).c
    rel = f"barerun/{c.id}"
    assert cg_file(rel, "cpu", "cpu.shares") == "256"
    assert cg_file(rel, "cpu", "cpu.cfs_quota_us") == "20000"
    assert cg_file(rel, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert cg_file(rel, "memory", "memory.swappiness") == "10"
    assert cg_file(rel, "pids", "pids.max") == "50"


def test_cgroups_path_honoured(create, root):
    rel = f"barerun-test/{uuid.uuid4().hex[:12]}"
    o = create(["sh", "-c", "cat /proc/self/cgroup"],
               lambda s: s["linux"].update(cgroupsPath=rel))
    c = o.c
    pid = c.state().pid
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert all(line.rsplit(":", 1)[1] == "/" + rel for line in lines), lines
    assert not leftover_cgroups(f"barerun/{c.id}")
    c.start()
    assert c.wait(timeout=10) == 0
    c.delete()
    assert leftover_cgroups(rel) == []


def test_annotations_in_state(create, root):
    ann = {"org.example.key": "value", "io.barerun.test": "1"}
    c = create(["true"], lambda s: s.update(annotations=ann)).c
    with open(os.path.join(root, c.id, "state.json")) as f:
        state = json.load(f)
    assert state["annotations"] == ann
    assert state["id"] == c.id
    assert state["pid"] == c.state().pid


@pytest.mark.parametrize("uid, passwd, home", [
    (0, "root:x:0:0:root:/root:/bin/sh\n", "/root"),
    (100, "root:x:0:0:root:/root:/bin/sh\nu:x:100:100::/home/u:/bin/sh\n", "/home/u"),
    (200, "root:x:0:0:root:/root:/bin/sh\n", "/"),
])
def test_home_comes_from_the_containers_passwd(run, bundle, rootfs, tmp_path, uid, passwd, home):
    """No HOME in process.env: the user's entry in the container's own
    /etc/passwd gives it, else "/" (as runc; podman run --user 100)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(passwd)

    def m(spec):
        spec["process"]["env"] = [e for e in spec["process"]["env"] if not e.startswith("HOME=")]
        spec["process"]["user"] = {"uid": uid, "gid": uid}
        spec["mounts"].append({"destination": "/etc/passwd", "type": "bind",
                               "source": str(etc / "passwd"), "options": ["bind", "ro"]})
    status, out, err = run(["sh", "-c", "echo $HOME"], m)
    assert (status, out) == (0, home + "\n"), err


def test_a_relative_mount_destination_is_under_root(run):
    def m(spec):
        spec["mounts"].append({"destination": "scratch", "type": "tmpfs", "source": "tmpfs"})
    status, out, err = run(["sh", "-c", "grep ' /scratch ' /proc/mounts"], m)
    assert status == 0 and "tmpfs" in out, err
