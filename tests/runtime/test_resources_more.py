"""linux.resources beyond memory, cpu, pids and devices: blockIO,
hugepageLimits, network, rdma, unified, and memory.kernel / kernelTCP /
disableOOMKiller, cpu.realtimeRuntime / realtimePeriod / idle / burst.

What Docker sends on every run (``blockIO.weight: 0``) and on every
``docker update`` (``memory.kernel: 0``) is unset, as in runc, and
creates a container without a word.  Each value is read back from the
kernel's file in the container's cgroup; each bad value is refused naming
its field; what this host cannot apply fails (or, where runc ignores it,
is left out) naming the field and the missing controller or file.
"""

import errno
import json
import os
import uuid

import pytest

from lowlevel import cgroups
from lowlevel.cgroups import resources as res_mod
from runtime import ContainerError, InvalidSpec
from runtime import resources as R
from runtime import spec as S

HOST = cgroups.detect() if os.path.isdir("/sys/fs/cgroup") else None
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="real containers need root")


def parse(raw, fld="linux.resources"):
    return S.parse_resources(json.loads(json.dumps(raw)), fld)


def bad(raw, field, fld="linux.resources"):
    with pytest.raises(InvalidSpec) as ei:
        parse(raw, fld)
    assert ei.value.field == field, str(ei.value)
    assert "[Errno" not in str(ei.value) and "\n" not in str(ei.value)
    return str(ei.value)


def read(path):
    with open(path) as f:
        return f.read().strip()


def with_resources(res):
    def m(spec):
        spec["linux"]["resources"].update(json.loads(json.dumps(res)))
    return m


def whole_disk():
    """(major, minor) of the disk under / (its whole disk when / is on a
    partition), else of the first non-loop disk in /sys/block."""
    st = os.stat("/").st_dev
    sysdir = f"/sys/dev/block/{os.major(st)}:{os.minor(st)}"
    if os.path.isdir(sysdir):
        if os.path.exists(os.path.join(sysdir, "partition")):
            sysdir = os.path.realpath(os.path.join(sysdir, ".."))
        return tuple(int(n) for n in read(os.path.join(sysdir, "dev")).split(":"))
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("loop", "ram", "zram")):
            return tuple(int(n) for n in read(f"/sys/block/{name}/dev").split(":"))
    return None


@pytest.fixture
def disk():
    found = whole_disk()
    if found is None:
        pytest.skip("no whole block device on this machine (/sys/dev/block, /sys/block)")
    return found


def cgdir(c, controller):
    """The container's directory in the hierarchy holding ``controller``."""
    paths = c.cgroup.paths
    return paths[controller] if controller in paths else paths["unified"]


def need_file(c, controller, name):
    path = os.path.join(cgdir(c, controller), name)
    if not os.path.exists(path):
        pytest.skip(f"this host has no {name} in the container's cgroup ({path})")
    return path


# ------------------------------------------------------------------ what Docker sends

DOCKER_ZEROS = {
    "blockIO": {"weight": 0, "leafWeight": 0},
    "memory": {"kernel": 0, "kernelTCP": 0, "disableOOMKiller": False},
    "cpu": {"realtimeRuntime": 0, "realtimePeriod": 0},
    "network": {"classID": 0},
    "hugepageLimits": [], "rdma": {}, "unified": {},
}


def test_zero_values_are_unset():
    r = parse(DOCKER_ZEROS)
    for f in res_mod.CONTROLLER_FIELDS:
        assert not r.wants(f), f
    assert r.empty() or r.devices


@needs_root
def test_docker_zero_values_create_a_container_without_a_warning(create, capsys):
    o = create(["true"], with_resources(DOCKER_ZEROS))
    c = o.c
    if "blkio" in c.cgroup.paths:
        for name in ("read_bps", "write_bps", "read_iops", "write_iops"):
            path = os.path.join(c.cgroup.paths["blkio"], f"blkio.throttle.{name}_device")
            assert read(path) == ""
    c.start()
    assert c.wait(timeout=10) == 0
    c.delete()
    err = capsys.readouterr().err
    assert "warning" not in err, err


@needs_root
def test_update_with_dockers_zero_values(create, capsys):
    o = create(["sleep", "30"])
    c = o.c
    c.update({"memory": {"kernel": 0}, "blockIO": {"weight": 0}})
    err = capsys.readouterr().err
    assert "warning" not in err, err
    c.delete(force=True)


# ------------------------------------------------------------------ parsing: each field

def test_each_field_parsed():
    r = parse({
        "memory": {"kernel": 1 << 20, "kernelTCP": 2 << 20, "disableOOMKiller": True},
        "cpu": {"realtimeRuntime": -1, "realtimePeriod": 1000000, "idle": 0, "burst": 0},
        "blockIO": {
            "weight": 10, "leafWeight": 1000,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 500},
                             {"major": 8, "minor": 16, "leafWeight": 300},
                             {"major": 8, "minor": 32, "weight": 0}],   # nothing set: dropped
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 2**64 - 1}],
            "throttleWriteIOPSDevice": [{"major": 4294967295, "minor": 0, "rate": 7}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}, {"pageSize": "1GB", "limit": 1 << 30}],
        "network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5},
                                                        {"name": "lo", "priority": 0}]},
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "mlx4_0": {"hcaObjects": 0},
                 "none_0": {}},
        "unified": {"memory.high": "max", "io.weight": "default 100"},
    })
    assert (r.memory_kernel, r.memory_kernel_tcp, r.memory_disable_oom_killer) == \
        (1 << 20, 2 << 20, True)
    assert (r.cpu_rt_runtime, r.cpu_rt_period, r.cpu_idle, r.cpu_burst) == (-1, 1000000, 0, 0)
    assert (r.blkio_weight, r.blkio_leaf_weight) == (10, 1000)
    assert r.blkio_weight_device == [(8, 0, 500, None), (8, 16, None, 300)]
    assert r.blkio_throttle_read_bps == [(8, 0, 1048576)]
    assert r.blkio_throttle_write_bps == [(8, 0, 0)]
    assert r.blkio_throttle_read_iops == [(8, 0, 2**64 - 1)]
    assert r.blkio_throttle_write_iops == [(4294967295, 0, 7)]
    assert r.hugetlb_limits == [("2MB", 0), ("1GB", 1 << 30)]
    assert r.net_cls_classid == 0x100001
    assert r.net_prio_ifpriomap == [("eth0", 5), ("lo", 0)]
    assert r.rdma_limits == [("mlx5_1", 3, 10000), ("mlx4_0", None, 0)]
    assert r.unified == [("memory.high", "max"), ("io.weight", "default 100")]


@pytest.mark.parametrize("raw, field", [
    ({"blockIO": {"weight": 5}}, "blockIO.weight"),
    ({"blockIO": {"weight": 1001}}, "blockIO.weight"),
    ({"blockIO": {"weight": "500"}}, "blockIO.weight"),
    ({"blockIO": {"weight": True}}, "blockIO.weight"),
    ({"blockIO": {"leafWeight": 9}}, "blockIO.leafWeight"),
    ({"blockIO": []}, "blockIO"),
    ({"blockIO": {"weightDevice": [{"minor": 0, "weight": 500}]}}, "blockIO.weightDevice[0].major"),
    ({"blockIO": {"weightDevice": [{"major": -1, "minor": 0, "weight": 500}]}},
     "blockIO.weightDevice[0].major"),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": 2**32, "weight": 500}]}},
     "blockIO.weightDevice[0].minor"),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 1001}]}},
     "blockIO.weightDevice[0].weight"),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "leafWeight": 2}]}},
     "blockIO.weightDevice[0].leafWeight"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1},
                                            {"major": 8, "minor": 16, "rate": -1}]}},
     "blockIO.throttleReadBpsDevice[1].rate"),
    ({"blockIO": {"throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2**64}]}},
     "blockIO.throttleWriteBpsDevice[0].rate"),
    ({"blockIO": {"throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": "fast"}]}},
     "blockIO.throttleReadIOPSDevice[0].rate"),
    ({"blockIO": {"throttleWriteIOPSDevice": ["8:0 100"]}}, "blockIO.throttleWriteIOPSDevice[0]"),
    ({"blockIO": {"throttleWriteIOPSDevice": [{"major": 8, "rate": 1}]}},
     "blockIO.throttleWriteIOPSDevice[0].minor"),
    ({"hugepageLimits": [{"limit": 0}]}, "hugepageLimits[0].pageSize"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 0}]}, "hugepageLimits[0].pageSize"),
    ({"hugepageLimits": [{"pageSize": "2mb", "limit": 0}]}, "hugepageLimits[0].pageSize"),
    ({"hugepageLimits": [{"pageSize": "02MB", "limit": 0}]}, "hugepageLimits[0].pageSize"),
    ({"hugepageLimits": [{"pageSize": "../2MB", "limit": 0}]}, "hugepageLimits[0].pageSize"),
    ({"hugepageLimits": [{"pageSize": "2MB"}]}, "hugepageLimits[0].limit"),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": -1}]}, "hugepageLimits[0].limit"),
    ({"hugepageLimits": {"2MB": 0}}, "hugepageLimits"),
    ({"network": {"classID": 2**32}}, "network.classID"),
    ({"network": {"classID": -1}}, "network.classID"),
    ({"network": {"priorities": [{"name": "", "priority": 1}]}}, "network.priorities[0].name"),
    ({"network": {"priorities": [{"name": "a/b", "priority": 1}]}}, "network.priorities[0].name"),
    ({"network": {"priorities": [{"name": "eth 0", "priority": 1}]}},
     "network.priorities[0].name"),
    ({"network": {"priorities": [{"name": "eth\u00000", "priority": 1}]}},
     "network.priorities[0].name"),
    ({"network": {"priorities": [{"name": "x" * 16, "priority": 1}]}},
     "network.priorities[0].name"),
    ({"network": {"priorities": [{"priority": 1}]}}, "network.priorities[0].name"),
    ({"network": {"priorities": [{"name": "lo", "priority": -1}]}},
     "network.priorities[0].priority"),
    ({"network": {"priorities": [{"name": "lo"}]}}, "network.priorities[0].priority"),
    ({"rdma": {"mlx5_1": 3}}, "rdma.mlx5_1"),
    ({"rdma": {"mlx5_1": {"hcaHandles": -1}}}, "rdma.mlx5_1.hcaHandles"),
    ({"rdma": {"mlx5_1": {"hcaObjects": 2**31}}}, "rdma.mlx5_1.hcaObjects"),
    ({"rdma": {"a/b": {"hcaHandles": 1}}}, "rdma.a/b"),
    ({"rdma": {"mlx 5": {"hcaHandles": 1}}}, "rdma.mlx 5"),
    ({"rdma": []}, "rdma"),
    ({"unified": {"../memory.high": "max"}}, "unified.../memory.high"),
    ({"unified": {"memory/high": "max"}}, "unified.memory/high"),
    ({"unified": {"..": "max"}}, "unified..."),
    ({"unified": {"": "max"}}, "unified."),
    ({"unified": {"memory.high": 5}}, "unified.memory.high"),
    ({"unified": {"memory.high": "5\u0000"}}, "unified.memory.high"),
    ({"unified": {"memory.h\u0000igh": "5"}}, "unified.memory.h\u0000igh"),
    ({"unified": ["memory.high"]}, "unified"),
    ({"memory": {"kernel": -2}}, "memory.kernel"),
    ({"memory": {"kernelTCP": -2}}, "memory.kernelTCP"),
    ({"memory": {"kernelTCP": 2**63}}, "memory.kernelTCP"),
    ({"memory": {"disableOOMKiller": "yes"}}, "memory.disableOOMKiller"),
    ({"cpu": {"realtimeRuntime": -2}}, "cpu.realtimeRuntime"),
    ({"cpu": {"realtimePeriod": -1}}, "cpu.realtimePeriod"),
    ({"cpu": {"idle": 2}}, "cpu.idle"),
    ({"cpu": {"idle": -1}}, "cpu.idle"),
    ({"cpu": {"burst": -1}}, "cpu.burst"),
])
def test_bad_value_names_its_field(raw, field):
    bad(raw, f"linux.resources.{field}")


def test_update_names_fields_under_resources():
    """Container.update and `barerun update` parse with "resources"."""
    bad({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": -1}]}},
        "resources.blockIO.throttleReadBpsDevice[0].rate", fld="resources")
    bad({"hugepageLimits": [{"pageSize": "huge", "limit": 1}]},
        "resources.hugepageLimits[0].pageSize", fld="resources")


def test_whole_spec_parses_these_fields(tmp_path):
    from tests.bundles import default_spec
    os.mkdir(tmp_path / "rootfs")
    spec = default_spec(["sh"])
    spec["linux"]["resources"].update(blockIO={"weight": 500},
                                      memory={"disableOOMKiller": True},
                                      cpu={"realtimeRuntime": 1000, "realtimePeriod": 100000})
    s = S.parse(json.loads(json.dumps(spec)), str(tmp_path))
    assert s.resources.blkio_weight == 500 and s.resources.memory_disable_oom_killer
    assert (s.resources.cpu_rt_runtime, s.resources.cpu_rt_period) == (1000, 100000)


# ------------------------------------------------------------------ real containers: round trip

@needs_root
def test_block_io_round_trip(create, disk):
    major, minor = disk
    dev = {"major": major, "minor": minor}
    o = create(["true"], with_resources({"blockIO": {
        "weight": 300,
        "throttleReadBpsDevice": [{**dev, "rate": 1 << 20}],
        "throttleWriteBpsDevice": [{**dev, "rate": 2 << 20}],
        "throttleReadIOPSDevice": [{**dev, "rate": 100}],
        "throttleWriteIOPSDevice": [{**dev, "rate": 200}]}}))
    c = o.c
    if "blkio" not in c.cgroup.paths:
        pytest.skip("no v1 blkio hierarchy on this host")
    path = c.cgroup.paths["blkio"]
    weight = "blkio.weight" if os.path.exists(os.path.join(path, "blkio.weight")) \
        else "blkio.bfq.weight"
    assert read(os.path.join(path, weight)).split()[-1] == "300"
    for name, value in (("read_bps", 1 << 20), ("write_bps", 2 << 20),
                        ("read_iops", 100), ("write_iops", 200)):
        assert read(os.path.join(path, f"blkio.throttle.{name}_device")) == \
            f"{major}:{minor} {value}"
    # update: another weight, one throttle taken away (rate 0), and
    # Docker's zeros on the way change nothing else
    c.update({"blockIO": {"weight": 0, "throttleReadBpsDevice": [{**dev, "rate": 0}]},
              "memory": {"kernel": 0}})
    assert read(os.path.join(path, weight)).split()[-1] == "300"
    assert read(os.path.join(path, "blkio.throttle.read_bps_device")) == ""
    c.update({"blockIO": {"weight": 700}})
    assert read(os.path.join(path, weight)).split()[-1] == "700"
    c.delete(force=True)


@needs_root
def test_memory_and_cpu_round_trip(create, capsys):
    o = create(["true"], with_resources({
        "memory": {"disableOOMKiller": True, "kernelTCP": 4 << 20},
        "cpu": {"idle": 1, "quota": 50000, "period": 100000, "burst": 20000,
                "realtimePeriod": 500000}}))
    c = o.c
    oom = need_file(c, "memory", "memory.oom_control")
    assert "oom_kill_disable 1" in read(oom).splitlines()
    tcp = os.path.join(cgdir(c, "memory"), "memory.kmem.tcp.limit_in_bytes")
    err = capsys.readouterr().err
    if os.path.exists(tcp):
        assert read(tcp) == str(4 << 20)
        assert "warning" not in err
    else:       # left out, as runc, with its warning
        assert "linux.resources.memory.kernelTCP" in err
    assert read(need_file(c, "cpu", "cpu.idle")) == "1"
    assert read(need_file(c, "cpu", "cpu.cfs_burst_us")) == "20000"
    assert read(need_file(c, "cpu", "cpu.rt_period_us")) == "500000"
    c.update({"cpu": {"idle": 0}})
    assert read(need_file(c, "cpu", "cpu.idle")) == "0"
    c.start()
    assert c.wait(timeout=10) == 0
    c.delete()


@needs_root
def test_kernel_memory_is_ignored_with_one_warning(create, capsys):
    o = create(["true"], with_resources({"memory": {"kernel": 64 << 20}}))
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if "linux.resources.memory.kernel:" in line]
    assert len(warned) == 1 and warned[0].startswith("barerun: warning: "), err
    kmem = os.path.join(cgdir(o.c, "memory"), "memory.kmem.limit_in_bytes")
    if os.path.exists(kmem):
        assert int(read(kmem)) != 64 << 20
    o.c.delete(force=True)


@needs_root
def test_realtime_runtime_with_a_parent_that_grants_it(create, new_id):
    """The kernel takes a container's cpu.rt_runtime_us only out of its
    parent's: with a cgroupsPath under a parent given 20 ms, 10 ms fit;
    under barerun/ (0 ms) the create fails naming the field."""
    if HOST is None or "cpu" not in HOST.v1:
        pytest.skip("no v1 cpu hierarchy (cgroup v2 has no real-time limits)")
    if not os.path.exists(os.path.join(HOST.v1["cpu"], "cpu.rt_runtime_us")):
        pytest.skip("this kernel has no cpu.rt_runtime_us (no RT_GROUP_SCHED)")
    with pytest.raises(InvalidSpec) as ei:
        create(["true"], with_resources({"cpu": {"realtimeRuntime": 10000}}))
    assert ei.value.field == "linux.resources.cpu.realtimeRuntime"
    assert "cpu.rt_runtime_us" in str(ei.value) and "[Errno" not in str(ei.value)
    parent = f"barerun-test-rt-{uuid.uuid4().hex[:8]}"
    parent_cpu = os.path.join(HOST.v1["cpu"], parent)
    os.mkdir(parent_cpu)
    try:
        with open(os.path.join(parent_cpu, "cpu.rt_runtime_us"), "w") as f:
            f.write("20000")
        cid = new_id()

        def m(spec):
            spec["linux"]["cgroupsPath"] = f"{parent}/{cid}"
            spec["linux"]["resources"]["cpu"] = {"realtimeRuntime": 10000,
                                                 "realtimePeriod": 1000000}
        o = create(["true"], m, cid=cid)
        path = o.c.cgroup.paths["cpu"]
        assert read(os.path.join(path, "cpu.rt_runtime_us")) == "10000"
        assert read(os.path.join(path, "cpu.rt_period_us")) == "1000000"
        o.c.delete(force=True)
        assert not os.path.exists(parent_cpu)     # the empty parent goes with it
    finally:
        if os.path.isdir(parent_cpu):
            for entry in os.scandir(parent_cpu):
                if entry.is_dir():
                    os.rmdir(entry.path)
            os.rmdir(parent_cpu)


def _hugetlb_dir_or_skip(c):
    if "hugetlb" in c.cgroup.paths:
        return c.cgroup.paths["hugetlb"], ".limit_in_bytes"
    path = c.cgroup.paths.get("unified")
    if path is None:
        pytest.skip("no hugetlb hierarchy and no unified one")
    root = HOST.unified
    if "hugetlb" not in read(os.path.join(root, "cgroup.subtree_control")).split() \
            and HOST.mode != "v2":
        pytest.skip("the unified root does not enable hugetlb (cgroup.subtree_control)")
    return path, ".max"


@needs_root
def test_hugepage_limits_and_unified_round_trip(create):
    sizes = res_mod.hugepage_sizes()
    if not sizes:
        pytest.skip("this kernel has no huge pages (/sys/kernel/mm/hugepages)")
    size = sizes[0]
    o = create(["true"], with_resources({
        "hugepageLimits": [{"pageSize": size, "limit": 4 << 20}],
        "unified": {f"hugetlb.{sizes[-1]}.max": "0"}}))
    c = o.c
    path, suffix = _hugetlb_dir_or_skip(c)
    assert read(os.path.join(path, f"hugetlb.{size}{suffix}")) == str(4 << 20)
    rsvd = os.path.join(path, f"hugetlb.{size}.rsvd{suffix}")
    if os.path.exists(rsvd):
        assert read(rsvd) == str(4 << 20)
    assert read(os.path.join(c.cgroup.paths["unified"], f"hugetlb.{sizes[-1]}.max")) == "0"
    c.update({"hugepageLimits": [{"pageSize": size, "limit": 0}]})
    assert read(os.path.join(path, f"hugetlb.{size}{suffix}")) == "0"
    c.delete(force=True)


# ------------------------------------------------------------------ what this host cannot apply

def _create_fails(create, res, error=ContainerError):
    with pytest.raises(error) as ei:
        create(["true"], with_resources(res))
    text = str(ei.value)
    assert "[Errno" not in text and "\n" not in text and "Traceback" not in text
    return ei.value


@needs_root
def test_unknown_page_size_names_the_field(create):
    sizes = res_mod.hugepage_sizes()
    size = next(f"{n}MB" for n in (3, 5, 7, 9, 11) if f"{n}MB" not in sizes)
    e = _create_fails(create, {"hugepageLimits": [{"pageSize": sizes[0] if sizes else "2MB",
                                                   "limit": 0},
                                                  {"pageSize": size, "limit": 0}]},
                      InvalidSpec)
    assert e.field == "linux.resources.hugepageLimits[1].pageSize"
    assert f"no {size} huge pages" in str(e)


@needs_root
def test_unknown_block_device_names_the_entry(create, disk):
    taken = {tuple(int(n) for n in read(f"/sys/block/{b}/dev").split(":"))
             for b in os.listdir("/sys/block")}
    major = next(m for m in range(4000, 4095) if all(t[0] != m for t in taken))
    e = _create_fails(create, {"blockIO": {"throttleReadBpsDevice": [
        {"major": disk[0], "minor": disk[1], "rate": 1},
        {"major": major, "minor": 0, "rate": 1}]}}, InvalidSpec)
    assert e.field == "linux.resources.blockIO.throttleReadBpsDevice[1]"
    assert f"no block device {major}:0" in str(e)


@needs_root
def test_controllers_this_host_lacks_name_field_and_controller(create):
    if HOST is None or HOST.mode == "v2":
        pytest.skip("a v2 host leaves net_cls and net_prio out instead (as runc)")
    offered = set()
    if HOST.unified:
        offered = set(read(os.path.join(HOST.unified, "cgroup.controllers")).split())
    ran = 0
    for name, res, field in (
            ("net_cls", {"network": {"classID": 0x100001}}, "network.classID"),
            ("net_prio", {"network": {"priorities": [{"name": "lo", "priority": 1}]}},
             "network.priorities[0]"),
            ("rdma", {"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "rdma.mlx5_1")):
        if name in HOST.v1 or name in offered:
            continue
        e = _create_fails(create, res)
        assert str(e).startswith(f"linux.resources.{field}: this host has no usable "
                                 f"{name} controller"), str(e)
        ran += 1
    if not ran:
        pytest.skip("this host has net_cls, net_prio and rdma")


@needs_root
def test_unified_key_without_its_file_names_key_and_file(create):
    if HOST is None or HOST.unified is None:
        pytest.skip("no unified hierarchy")
    if "memory" in read(os.path.join(HOST.unified, "cgroup.subtree_control")).split():
        pytest.skip("the unified tree has the memory controller here")
    e = _create_fails(create, {"unified": {"memory.high": "max"}})
    assert str(e).startswith("linux.resources.unified.memory.high: this host has no "
                             "memory.high"), str(e)
    assert "memory controller" in str(e)


@needs_root
def test_leaf_weight_without_its_file(create):
    if HOST is None or "blkio" not in HOST.v1:
        pytest.skip("no v1 blkio hierarchy")
    if os.path.exists(os.path.join(HOST.v1["blkio"], "barerun", "blkio.leaf_weight")) or \
            os.path.exists(os.path.join(HOST.v1["blkio"], "blkio.leaf_weight")):
        pytest.skip("this kernel has blkio.leaf_weight (CFQ)")
    e = _create_fails(create, {"blockIO": {"leafWeight": 500}})
    assert str(e).startswith("linux.resources.blockIO.leafWeight: this host has no "
                             "blkio.leaf_weight"), str(e)


def test_no_unified_hierarchy_names_the_field():
    """A v1 host (the unified mount taken out of this host's layout): the
    unified files have nowhere to go."""
    if HOST is None or not HOST.v1:
        pytest.skip("no v1 hierarchies to make a v1 layout of")
    layout = cgroups.Layout("v1", HOST.v1, None)
    cg = cgroups.Cgroup(f"barerun-test-{uuid.uuid4().hex[:8]}", layout=layout)
    res = parse({"unified": {"memory.high": "max"}})
    with pytest.raises(ContainerError) as ei:
        R.apply(cg, res, devices=False)
    assert str(ei.value).startswith("linux.resources.unified.memory.high: this host has no "
                                    "usable cgroup v2 (unified) hierarchy"), str(ei.value)
    assert not cg.exists()


@needs_root
def test_update_refuses_bad_values_by_field(create):
    o = create(["sleep", "30"])
    with pytest.raises(InvalidSpec) as ei:
        o.c.update({"blockIO": {"weight": 5}})
    assert ei.value.field == "resources.blockIO.weight"
    o.c.delete(force=True)


def test_error_texts_are_one_line_without_errno():
    e = R._error(OSError(errno.ENOENT, "write '1' on /nonexistent/dir/blkio.leaf_weight: "
                                       "No such file or directory"), "f", "blkio")
    assert "cgroup is gone" in str(e) and "[Errno" not in str(e)
    e = R._error(OSError(errno.EOPNOTSUPP, "write '8:0 1' on /x/blkio.bfq.weight_device "
                                           "(bfq): Operation not supported"), "f", "blkio")
    assert str(e).startswith("f: this host cannot apply it")
    e = R._error(OSError(errno.ENOENT, "set memory_swap=1 (no swap accounting in this kernel) "
                                       "on /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes: "
                                       "No such file or directory"), "f", "memory")
    assert str(e).startswith("f: this host has no memory.memsw.limit_in_bytes")


@needs_root
def test_memory_cpu_pids_still_applied_together(create):
    """The classic fields still go in one write group per spec object:
    limit and swap in the kernel's order, quota with period."""
    o = create(["true"], with_resources({"memory": {"limit": 64 << 20},
                                         "cpu": {"shares": 512, "quota": 20000,
                                                 "period": 100000},
                                         "pids": {"limit": 50}}))
    c = o.c
    if not {"memory", "cpu", "pids"} <= set(c.cgroup.paths):
        pytest.skip("needs v1 memory, cpu and pids hierarchies")
    mem = c.cgroup.paths["memory"]
    assert read(os.path.join(mem, "memory.limit_in_bytes")) == str(64 << 20)
    assert read(os.path.join(c.cgroup.paths["cpu"], "cpu.shares")) == "512"
    assert read(os.path.join(c.cgroup.paths["cpu"], "cpu.cfs_quota_us")) == "20000"
    assert read(os.path.join(c.cgroup.paths["pids"], "pids.max")) == "50"
    swap = os.path.join(mem, "memory.memsw.limit_in_bytes")
    if os.path.exists(swap):
        # a memory+swap total above the old limit: memsw first, then the limit
        c.update({"memory": {"limit": 128 << 20, "swap": 256 << 20}})
        assert read(os.path.join(mem, "memory.limit_in_bytes")) == str(128 << 20)
        assert read(swap) == str(256 << 20)
    c.update({"cpu": {"period": 10000, "quota": 5000}})
    assert read(os.path.join(c.cgroup.paths["cpu"], "cpu.cfs_period_us")) == "10000"
    c.delete(force=True)


@pytest.fixture
def loop_disk(tmp_path):
    """A loop device over a scratch file: a whole disk of the test's own,
    detached afterwards."""
    import subprocess
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.write(os.urandom(4 << 20))
    r = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no loop device (losetup: {r.stderr.strip()})")
    dev = r.stdout.strip()
    try:
        yield os.stat(dev).st_rdev
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


@needs_root
def test_read_throttle_slows_the_containers_reads(run, loop_disk):
    """The throttle does what it says: 3 MiB read from a disk throttled to
    1 MiB/s take more than a second (unthrottled: milliseconds)."""
    import time
    if HOST is None or "blkio" not in HOST.v1:
        pytest.skip("no v1 blkio hierarchy (the io controller is not in this host's v2)")
    major, minor = os.major(loop_disk), os.minor(loop_disk)

    def throttled(rate):
        def m(spec):
            spec["linux"]["devices"] = [{"path": "/dev/disk0", "type": "b", "major": major,
                                         "minor": minor, "fileMode": 0o600}]
            spec["linux"]["resources"]["devices"] = [
                {"allow": True, "type": "b", "major": major, "minor": minor, "access": "r"}]
            if rate:
                spec["linux"]["resources"]["blockIO"] = {"throttleReadBpsDevice": [
                    {"major": major, "minor": minor, "rate": rate}]}
        return m

    script = "dd if=/dev/disk0 of=/dev/null bs=64k count=48 iflag=direct"
    took = []
    for rate in (0, 1 << 20):
        start = time.monotonic()
        status, _, err = run(["sh", "-c", script], throttled(rate), timeout=30)
        took.append(time.monotonic() - start)
        assert status == 0, err
    assert took[0] < 1.0 < took[1], took
