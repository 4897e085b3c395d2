"""runtime/spec.py: config.json -> Spec, and the errors that name the field.

Pure parsing: no container is made (the only file-system use is a bundle
directory with an empty rootfs directory)."""

import json
import os
import resource

import pytest

from lowlevel import mounts as M
from runtime import InvalidSpec, NotFound
from runtime import spec as S
from tests.bundles import default_spec


@pytest.fixture
def bdir(tmp_path):
    os.mkdir(tmp_path / "rootfs")
    return str(tmp_path)


def parse(bdir, modify=None):
    spec = default_spec(["sh"])
    if modify:
        got = modify(spec)
        spec = spec if got is None else got
    return S.parse(json.loads(json.dumps(spec)), bdir)


def bad(bdir, modify, field):
    with pytest.raises(InvalidSpec) as ei:
        parse(bdir, modify)
    assert ei.value.field == field, str(ei.value)
    assert field in str(ei.value)
    return ei.value


# ---------------------------------------------------------------- the default


def test_default_spec(bdir):
    s = parse(bdir)
    assert s.bundle == bdir
    assert s.rootfs == os.path.join(bdir, "rootfs")
    assert s.readonly_root is True
    assert s.process.args == ["sh"]
    assert s.process.user.uid == 0 and s.process.user.gid == 0
    assert s.process.no_new_privileges is True
    assert s.process.rlimits == [("RLIMIT_NOFILE", 1024, 1024)]
    assert s.process.capabilities["bounding"] == ["CAP_AUDIT_WRITE", "CAP_KILL",
                                                  "CAP_NET_BIND_SERVICE"]
    assert s.process.capabilities["inheritable"] == []
    assert s.hostname == "barerun"
    assert s.namespaces == {k: None for k in ("pid", "network", "ipc", "uts", "mount", "cgroup")}
    assert [m.destination for m in s.mounts][:3] == ["/proc", "/dev", "/dev/pts"]
    assert "/proc/kcore" in s.masked_paths
    assert "/proc/sys" in s.readonly_paths
    assert s.cgroups_path is None
    assert s.resources.devices == [(False, "a", None, None, "rwm")]
    assert s.sysctl == {}
    assert s.annotations == {}


def test_relative_and_absolute_root_path(bdir, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    s = parse(bdir, lambda sp: sp["root"].update(path=str(other)))
    assert s.rootfs == str(other)


# ---------------------------------------------------------------- load_bundle


def test_load_bundle_missing_dir(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(NotFound) as ei:
        S.load_bundle(missing)
    assert missing in str(ei.value)


def test_load_bundle_missing_config(tmp_path):
    with pytest.raises(NotFound) as ei:
        S.load_bundle(str(tmp_path))
    assert "config.json" in str(ei.value)


def test_load_bundle_malformed_json(bdir):
    with open(os.path.join(bdir, "config.json"), "w") as f:
        f.write('{"process": ')
    with pytest.raises(InvalidSpec) as ei:
        S.load_bundle(bdir)
    assert "config.json" in str(ei.value) and "JSON" in str(ei.value)


def test_load_bundle_not_an_object(bdir):
    with open(os.path.join(bdir, "config.json"), "w") as f:
        f.write("[1, 2]")
    with pytest.raises(InvalidSpec):
        S.load_bundle(bdir)


def test_missing_rootfs_names_path(bdir):
    with pytest.raises(NotFound) as ei:
        parse(bdir, lambda sp: sp["root"].update(path="nosuch"))
    assert os.path.join(bdir, "nosuch") in str(ei.value)


# ---------------------------------------------------------------- process


def test_missing_process(bdir):
    bad(bdir, lambda sp: sp.pop("process") and None, "process")


def test_missing_args(bdir):
    bad(bdir, lambda sp: sp["process"].pop("args") and None, "process.args")


def test_empty_args(bdir):
    bad(bdir, lambda sp: sp["process"].update(args=[]), "process.args")


def test_args_not_strings(bdir):
    bad(bdir, lambda sp: sp["process"].update(args=["sh", 1]), "process.args[1]")


@pytest.mark.parametrize("value", ["0", 1.5, True, [0]])
def test_uid_wrong_type(bdir, value):
    e = bad(bdir, lambda sp: sp["process"]["user"].update(uid=value), "process.user.uid")
    assert "integer" in str(e)


def test_additional_gids_wrong_type(bdir):
    bad(bdir, lambda sp: sp["process"]["user"].update(additionalGids=[1, "2"]),
        "process.user.additionalGids[1]")


def test_user_fields(bdir):
    s = parse(bdir, lambda sp: sp["process"].update(
        user={"uid": 1000, "gid": 100, "additionalGids": [10, 20], "umask": 0o077}))
    u = s.process.user
    assert (u.uid, u.gid, u.additional_gids, u.umask) == (1000, 100, [10, 20], 0o077)


def test_relative_cwd(bdir):
    bad(bdir, lambda sp: sp["process"].update(cwd="tmp"), "process.cwd")


def test_unknown_capability(bdir):
    bad(bdir, lambda sp: sp["process"]["capabilities"]["effective"].append("CAP_NOPE"),
        "process.capabilities.effective[3]")


def test_rlimits(bdir):
    s = parse(bdir, lambda sp: sp["process"].update(rlimits=[
        {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
        {"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1}]))
    assert s.process.rlimits == [("RLIMIT_NOFILE", 100, 200),
                                 ("RLIMIT_CORE", resource.RLIM_INFINITY, resource.RLIM_INFINITY)]


def test_rlimit_unknown(bdir):
    bad(bdir, lambda sp: sp["process"].update(rlimits=[{"type": "RLIMIT_NOPE", "soft": 1,
                                                        "hard": 1}]),
        "process.rlimits[0].type")


def test_rlimit_soft_above_hard(bdir):
    bad(bdir, lambda sp: sp["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 2,
                                                        "hard": 1}]),
        "process.rlimits[0].soft")


def test_oom_score_adj_and_terminal(bdir):
    s = parse(bdir, lambda sp: sp["process"].update(oomScoreAdj=500))
    assert s.process.oom_score_adj == 500
    bad(bdir, lambda sp: sp["process"].update(terminal="yes"), "process.terminal")


@pytest.mark.parametrize("key, lsm", [("apparmorProfile", "apparmor"),
                                      ("selinuxLabel", "selinux")])
def test_lsm_labels_ignored_with_a_warning_where_the_lsm_is_off(bdir, key, lsm, capfd):
    """As runc: nothing to apply without the LSM; refused where it is on
    (barerun cannot apply labels yet), never silently dropped."""
    from runtime.spec import lsm_enabled
    if lsm_enabled(lsm):
        bad(bdir, lambda sp: sp["process"].update({key: "x"}), f"process.{key}")
        return
    parse(bdir, lambda sp: sp["process"].update({key: "x"}))
    assert f"warning: process.{key} 'x' ignored: {lsm} is not enabled" in capfd.readouterr().err


# ---------------------------------------------------------------- root, hostname


def test_missing_root(bdir):
    bad(bdir, lambda sp: sp.pop("root") and None, "root")


def test_root_readonly_wrong_type(bdir):
    bad(bdir, lambda sp: sp["root"].update(readonly="true"), "root.readonly")


def test_hostname_needs_uts(bdir):
    def m(sp):
        sp["linux"]["namespaces"] = [n for n in sp["linux"]["namespaces"] if n["type"] != "uts"]
    bad(bdir, m, "hostname")


def test_hooks_relative_path_refused(bdir):
    bad(bdir, lambda sp: sp.update(hooks={"prestart": [{"path": "bin/true"}]}),
        "hooks.prestart[0].path")


# ---------------------------------------------------------------- namespaces


def test_namespace_unknown(bdir):
    bad(bdir, lambda sp: sp["linux"]["namespaces"].append({"type": "nope"}),
        "linux.namespaces[6].type")


def test_namespace_twice(bdir):
    bad(bdir, lambda sp: sp["linux"]["namespaces"].append({"type": "pid"}),
        "linux.namespaces[6].type")


def test_user_namespace_refused(bdir):
    bad(bdir, lambda sp: sp["linux"]["namespaces"].append({"type": "user"}),
        "linux.namespaces[6].type")


def _no_mount_ns(sp):
    sp["linux"]["namespaces"] = [n for n in sp["linux"]["namespaces"] if n["type"] != "mount"]


@pytest.mark.parametrize("field,strip", [
    ("mounts", ()),
    ("linux.maskedPaths", ("mounts",)),
    ("linux.readonlyPaths", ("mounts", "maskedPaths")),
    ("root.readonly", ("mounts", "maskedPaths", "readonlyPaths")),
])
def test_no_mount_namespace_refuses_what_it_cannot_do(bdir, field, strip):
    def m(sp):
        _no_mount_ns(sp)
        for key in strip:
            (sp if key == "mounts" else sp["linux"]).pop(key)
    bad(bdir, m, field)


def test_no_mount_namespace_plain_chroot(bdir):
    def m(sp):
        _no_mount_ns(sp)
        sp.pop("mounts")
        sp["linux"].pop("maskedPaths")
        sp["linux"].pop("readonlyPaths")
        sp["root"]["readonly"] = False
    assert "mount" not in parse(bdir, m).namespaces


def test_namespace_path(bdir):
    def m(sp):
        sp["linux"]["namespaces"][1]["path"] = "/proc/self/ns/net"
    s = parse(bdir, m)
    assert s.namespaces["network"] == "/proc/self/ns/net"


def test_namespace_path_missing(bdir):
    def m(sp):
        sp["linux"]["namespaces"][1]["path"] = "/nonexistent/ns/net"
    e = bad(bdir, m, "linux.namespaces[1].path")
    assert "/nonexistent/ns/net" in str(e)


# ---------------------------------------------------------------- mounts


def _mount(**m):
    return lambda sp: sp["mounts"].append(m)


def test_mount_options(bdir):
    s = parse(bdir, _mount(destination="/data", type="tmpfs", source="tmpfs",
                           options=["nosuid", "nodev", "ro", "mode=700", "size=1m", "rslave"]))
    m = s.mounts[-1]
    assert m.flags == M.MS["MS_NOSUID"] | M.MS["MS_NODEV"] | M.MS["MS_RDONLY"]
    assert m.data == "mode=700,size=1m"
    assert m.propagation == [M.MS["MS_SLAVE"] | M.MS["MS_REC"]]
    assert not m.bind
    assert m.field == "mounts[7]"


def test_mount_option_cancels(bdir):
    s = parse(bdir, _mount(destination="/data", type="tmpfs", source="tmpfs",
                           options=["ro", "rw", "noexec", "exec"]))
    assert s.mounts[-1].flags == 0


def test_bind_mount(bdir):
    s = parse(bdir, _mount(destination="/x", type="none", source="/tmp",
                           options=["rbind", "ro"]))
    m = s.mounts[-1]
    assert m.bind
    assert m.flags & M.MS["MS_BIND"] and m.flags & M.MS["MS_REC"] and m.flags & M.MS["MS_RDONLY"]
    s = parse(bdir, _mount(destination="/x", type="bind", source="/tmp"))
    assert s.mounts[-1].bind and s.mounts[-1].flags == M.MS["MS_BIND"]


def test_bind_needs_source(bdir):
    bad(bdir, _mount(destination="/x", options=["bind"]), "mounts[7].source")


def test_mount_relative_destination_is_under_root(bdir):
    s = parse(bdir, _mount(destination="x", type="tmpfs"))
    assert s.mounts[7].destination == "/x"
    bad(bdir, _mount(destination="", type="tmpfs"), "mounts[7].destination")


def test_mount_needs_type(bdir):
    bad(bdir, _mount(destination="/x", source="tmpfs"), "mounts[7].type")


def test_mount_options_not_strings(bdir):
    bad(bdir, _mount(destination="/x", type="tmpfs", options=["ro", 3]), "mounts[7].options[1]")


def test_mount_x_options_ignored(bdir):
    s = parse(bdir, _mount(destination="/x", type="tmpfs", options=["X-mount.mkdir", "ro"]))
    assert s.mounts[-1].data == ""


def test_rootfs_propagation(bdir):
    s = parse(bdir, lambda sp: sp["linux"].update(rootfsPropagation="rprivate"))
    assert s.rootfs_propagation == M.MS["MS_PRIVATE"] | M.MS["MS_REC"]
    bad(bdir, lambda sp: sp["linux"].update(rootfsPropagation="sideways"),
        "linux.rootfsPropagation")


# ---------------------------------------------------------------- devices


def test_devices(bdir):
    s = parse(bdir, lambda sp: sp["linux"].update(devices=[
        {"path": "/dev/barerun-test-null", "type": "c", "major": 1, "minor": 3,
         "fileMode": 0o620, "uid": 0, "gid": 5}]))
    assert s.devices == [S.Device("/dev/barerun-test-null", "c", 1, 3, 0o620, 0, 5)]


def test_device_outside_dev(bdir):
    bad(bdir, lambda sp: sp["linux"].update(devices=[{"path": "/etc/x", "type": "c"}]),
        "linux.devices[0].path")


def test_device_bad_type(bdir):
    bad(bdir, lambda sp: sp["linux"].update(devices=[{"path": "/dev/x", "type": "z"}]),
        "linux.devices[0].type")


# ---------------------------------------------------------------- resources, cgroups


def test_resources(bdir):
    def m(sp):
        sp["linux"]["resources"].update(
            memory={"limit": 16 << 20, "swap": 32 << 20},
            cpu={"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
            pids={"limit": 10})
    r = parse(bdir, m).resources
    assert (r.memory_limit, r.memory_swap) == (16 << 20, 32 << 20)
    assert (r.cpu_shares, r.cpu_quota, r.cpu_period, r.cpuset_cpus) == (512, 50000, 100000, "0")
    assert r.pids_limit == 10


def test_resources_wrong_type(bdir):
    bad(bdir, lambda sp: sp["linux"]["resources"].update(memory={"limit": "16m"}),
        "linux.resources.memory.limit")


def test_resources_negative(bdir):
    bad(bdir, lambda sp: sp["linux"]["resources"].update(cpu={"shares": -5}),
        "linux.resources.cpu.shares")


def test_resources_device_access(bdir):
    bad(bdir, lambda sp: sp["linux"]["resources"].update(
        devices=[{"allow": True, "type": "c", "access": "rwx"}]),
        "linux.resources.devices[0].access")


def test_cgroups_path(bdir):
    s = parse(bdir, lambda sp: sp["linux"].update(cgroupsPath="/barerun-test/abc/"))
    assert s.cgroups_path == "barerun-test/abc"
    bad(bdir, lambda sp: sp["linux"].update(cgroupsPath="a/../../b"), "linux.cgroupsPath")
    bad(bdir, lambda sp: sp["linux"].update(cgroupsPath="system.slice:barerun:x"),
        "linux.cgroupsPath")


# ---------------------------------------------------------------- sysctl, annotations


def test_sysctl(bdir):
    s = parse(bdir, lambda sp: sp["linux"].update(sysctl={"net.ipv4.ip_forward": "1",
                                                          "kernel.shmmax": "1000000"}))
    assert s.sysctl == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000000"}


def test_sysctl_not_namespaced(bdir):
    bad(bdir, lambda sp: sp["linux"].update(sysctl={"vm.swappiness": "10"}),
        "linux.sysctl.vm.swappiness")


def test_sysctl_needs_its_namespace(bdir):
    def m(sp):
        sp["linux"]["namespaces"] = [n for n in sp["linux"]["namespaces"]
                                     if n["type"] != "network"]
        sp["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    bad(bdir, m, "linux.sysctl.net.ipv4.ip_forward")


def test_sysctl_value_type(bdir):
    bad(bdir, lambda sp: sp["linux"].update(sysctl={"net.ipv4.ip_forward": 1}),
        "linux.sysctl.net.ipv4.ip_forward")


def test_sysctl_path_escape(bdir):
    bad(bdir, lambda sp: sp["linux"].update(sysctl={"net/../../x": "1"}),
        "linux.sysctl.net/../../x")


def test_annotations(bdir):
    s = parse(bdir, lambda sp: sp.update(annotations={"a": "b"}))
    assert s.annotations == {"a": "b"}
    bad(bdir, lambda sp: sp.update(annotations=["a"]), "annotations")


def test_unsupported_linux_fields(bdir):
    bad(bdir, lambda sp: sp["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1,
                                                          "size": 1}]),
        "linux.uidMappings")


def test_memory_swappiness(bdir):
    s = parse(bdir, lambda sp: sp["linux"]["resources"].update(memory={"swappiness": 10}))
    assert s.resources.memory_swappiness == 10
    bad(bdir, lambda sp: sp["linux"]["resources"].update(memory={"swappiness": 101}),
        "linux.resources.memory.swappiness")


# ------------------------------------------------- values the kernel cannot take


@pytest.mark.parametrize("where, value, field, says", [
    ("readonly", "/proc/a\0b", "linux.readonlyPaths[0]", "NUL byte"),
    ("readonly", "/proc/\ud800", "linux.readonlyPaths[0]", "lone surrogate"),
    ("cwd", "/a\0b", "process.cwd", "NUL byte"),
    ("uid", 1 << 32, "process.user.uid", "0 to 4294967294"),
    ("gid", -1, "process.user.gid", "0 to 4294967294"),
    ("umask", 0o10000, "process.user.umask", "0 to 0o777"),
    ("gids", [1 << 40], "process.user.additionalGids[0]", "0 to 4294967294"),
    ("gids", list(range(70000)), "process.user.additionalGids", "at most 65536"),
])
def test_values_beyond_the_kernels_range_name_their_field(bdir, where, value, field, says):
    def m(spec):
        if where == "readonly":
            spec["linux"]["readonlyPaths"] = [value]
        elif where == "cwd":
            spec["process"]["cwd"] = value
        elif where == "gids":
            spec["process"]["user"]["additionalGids"] = value
        else:
            spec["process"]["user"][where] = value
    e = bad(bdir, m, field)
    assert says in str(e)
