"""Bad input to create: a clear ContainerError (never a traceback) and
nothing left behind: no state dir, no cgroup, no process."""

import errno
import json
import os

import pytest

import runtime
from tests.conftest import leftover_cgroups


def assert_nothing_left(root, cid):
    assert os.listdir(root) == [], f"left in the state root: {os.listdir(root)}"
    assert leftover_cgroups(f"barerun/{cid}") == []


def create_fails(root, cid, bundle_dir, exc_type=runtime.ContainerError):
    with pytest.raises(exc_type) as ei:
        runtime.create(cid, bundle_dir, root=root)
    assert "Traceback" not in str(ei.value)
    assert_nothing_left(root, cid)
    return ei.value


# ---------------------------------------------------------------- the bundle


def test_malformed_json(root, bundle, new_id):
    b = bundle(["true"])
    with open(os.path.join(b, "config.json"), "w") as f:
        f.write('{"ociVersion": "1.0.2", "process": {')
    e = create_fails(root, new_id(), b, runtime.InvalidSpec)
    assert "config.json" in str(e)


def test_missing_process_args(root, bundle, new_id):
    b = bundle(None, lambda s: s["process"].pop("args") and None)
    e = create_fails(root, new_id(), b, runtime.InvalidSpec)
    assert e.field == "process.args"
    assert "process.args" in str(e)


def test_wrong_type_names_field(root, bundle, new_id):
    b = bundle(["true"], lambda s: s["process"]["user"].update(uid="0"))
    e = create_fails(root, new_id(), b, runtime.InvalidSpec)
    assert e.field == "process.user.uid"
    assert "process.user.uid" in str(e)


def test_missing_bundle(root, tmp_path, new_id):
    missing = str(tmp_path / "no-such-bundle")
    e = create_fails(root, new_id(), missing, runtime.NotFound)
    assert missing in str(e)


def test_missing_config_json(root, tmp_path, new_id):
    d = tmp_path / "empty-bundle"
    d.mkdir()
    e = create_fails(root, new_id(), str(d), runtime.NotFound)
    assert "config.json" in str(e)


def test_missing_rootfs(root, bundle, tmp_path, new_id):
    missing = str(tmp_path / "no-such-rootfs")
    b = bundle(["true"], rootfs_path=missing)
    e = create_fails(root, new_id(), b, runtime.NotFound)
    assert missing in str(e)


# ---------------------------------------------------------------- failures in the init


def test_program_not_found(root, bundle, new_id):
    cid = new_id()
    e = create_fails(root, cid, bundle(["barerun-no-such-program"]), runtime.ChildError)
    assert "executable file not found" in str(e)
    assert "barerun-no-such-program" in str(e)


def test_program_path_not_found(root, bundle, new_id):
    e = create_fails(root, new_id(), bundle(["/bin/barerun-nope"]), runtime.ChildError)
    assert "/bin/barerun-nope" in str(e)
    assert e.errno == errno.ENOENT


@pytest.mark.parametrize("prog", ["/etc", "/etc/passwd"], ids=["directory", "not-executable"])
def test_program_not_executable_fails_create(root, bundle, new_id, prog):
    """As runc: `exec: "/etc": permission denied` at create, not at start."""
    e = create_fails(root, new_id(), bundle([prog]), runtime.ChildError)
    assert prog in str(e) and "Permission denied" in str(e)
    assert e.errno == errno.EACCES


def test_unknown_filesystem_type(root, bundle, new_id):
    b = bundle(["true"], lambda s: s["mounts"].append(
        {"destination": "/mnt", "type": "nosuchfs", "source": "none"}))
    e = create_fails(root, new_id(), b, runtime.ChildError)
    assert "mount" in e.step and "nosuchfs" in e.step
    assert "mounts[7]" in e.step
    assert e.errno == errno.ENODEV
    assert e.path == "/mnt"
    # the message names the destination, not the fd the mount went through
    assert "/mnt" in str(e) and "/proc/self/fd" not in str(e), str(e)


def test_bind_source_missing(root, bundle, tmp_path, new_id):
    missing = str(tmp_path / "no-such-dir")
    b = bundle(["true"], lambda s: s["mounts"].append(
        {"destination": "/mnt", "type": "bind", "source": missing, "options": ["bind"]}))
    e = create_fails(root, new_id(), b, runtime.ChildError)
    assert e.errno == errno.ENOENT
    assert missing in str(e)
    assert "mounts[7]" in str(e)


def test_join_namespace_not_a_namespace(root, bundle, tmp_path, new_id):
    notns = tmp_path / "not-a-namespace"
    notns.write_text("")

    def m(s):
        for n in s["linux"]["namespaces"]:
            if n["type"] == "network":
                n["path"] = str(notns)
    e = create_fails(root, new_id(), bundle(["true"], m), runtime.ChildError)
    assert "network" in e.step
    assert e.path == str(notns)
    assert e.errno == errno.EINVAL


def test_cwd_missing(root, bundle, new_id):
    b = bundle(["true"], lambda s: s["process"].update(cwd="/barerun-no-such-dir"))
    e = create_fails(root, new_id(), b, runtime.ChildError)
    assert "/barerun-no-such-dir" in str(e)
    assert e.errno == errno.ENOENT


def test_sysctl_unknown_key(root, bundle, new_id):
    b = bundle(["true"], lambda s: s["linux"].update(sysctl={"net.barerun.nope": "1"}))
    e = create_fails(root, new_id(), b, runtime.ChildError)
    assert "net.barerun.nope" in str(e)
    assert e.errno == errno.ENOENT


def test_bad_resources_value(root, bundle, new_id):
    b = bundle(["true"], lambda s: s["linux"]["resources"].update(cpu={"cpus": "9999"}))
    e = create_fails(root, new_id(), b, runtime.ContainerError)
    assert "cpus" in str(e) or "linux.resources" in str(e)


def test_failed_create_then_same_id_works(create, root, bundle, new_id):
    cid = new_id()
    create_fails(root, cid, bundle(["barerun-no-such-program"]), runtime.ChildError)
    o = create(["true"], cid=cid)
    o.c.start()
    assert o.c.wait(timeout=10) == 0


def _has_cap(name):
    from lowlevel import caps
    return name in caps.get_caps()["effective"]


@pytest.mark.skipif(_has_cap("CAP_SYS_RESOURCE"), reason="the runtime holds CAP_SYS_RESOURCE")
def test_capability_the_runtime_lacks(root, bundle, new_id):
    def m(s):
        for k in ("bounding", "effective", "permitted"):
            s["process"]["capabilities"][k].append("CAP_SYS_RESOURCE")
    e = create_fails(root, new_id(), bundle(["true"], m), runtime.ChildError)
    assert "CAP_SYS_RESOURCE" in str(e)
    assert "capabilities" in e.step
