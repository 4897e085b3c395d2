"""What podman's specs hold beyond barerun's own defaults, through the
library (tests/integration/test_podman.py drives the same with podman):

- mount option "tmpcopyup" (runc/crun's extension, sent for --tmpfs,
  --read-only, --systemd): the tmpfs starts with a copy of the directory
  it covers;
- podman's resource fields beyond memory, cpu and pids are parsed
  (memory.disableOOMKiller, cpu.realtimeRuntime ...; applied and read back
  in tests/runtime/test_resources_more.py);
- before a CRIU restore the spec's mount points are made in the rootfs,
  as runc does (podman's restore --import gives a fresh rootfs).
"""

import json
import os
import stat

import pytest

from runtime import InvalidSpec
from runtime import rootfs as R
from runtime import spec as S
from tests.bundles import default_spec


def _tmpfs(dest, *options):
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", *options]}


@pytest.fixture
def covered(private_rootfs):
    """/etc/covered in a private rootfs: a file, a sub-directory with an
    odd mode and owner, a symlink pointing out of the rootfs, a fifo."""
    d = os.path.join(private_rootfs, "etc", "covered")
    os.makedirs(os.path.join(d, "sub"))
    with open(os.path.join(d, "file"), "w") as f:
        f.write("from the rootfs\n")
    os.chmod(os.path.join(d, "file"), 0o640)
    os.chown(os.path.join(d, "sub"), 65534, 65534)
    os.chmod(os.path.join(d, "sub"), 0o705)
    with open(os.path.join(d, "sub", "deep"), "w") as f:
        f.write("deep\n")
    os.symlink("/etc/shadow-of-the-host", os.path.join(d, "link"))
    os.mkfifo(os.path.join(d, "fifo"))
    os.chmod(d, 0o750)
    return d


def test_tmpcopyup_copies_the_covered_directory(sh, private_rootfs, covered):
    def m(spec):
        spec["mounts"].append(_tmpfs("/etc/covered", "tmpcopyup", "size=1m"))
    script = ("set -e; cd /etc/covered; grep ' /etc/covered ' /proc/mounts | cut -d' ' -f3; "
              "cat file sub/deep; readlink link; stat -c '%n %a %u' . file sub fifo; "
              "stat -c %F fifo; echo new > added; echo more >> file; ls")
    status, out, err = sh(script, m, rootfs_path=private_rootfs)
    assert status == 0, err
    assert out.splitlines() == [
        "tmpfs", "from the rootfs", "deep", "/etc/shadow-of-the-host",
        ". 750 0", "file 640 0", "sub 705 65534", "fifo 644 0", "fifo",
        "added", "fifo", "file", "link", "sub"]
    # the copy is the tmpfs's: the rootfs is unchanged
    assert sorted(os.listdir(covered)) == ["fifo", "file", "link", "sub"]
    with open(os.path.join(covered, "file")) as f:
        assert f.read() == "from the rootfs\n"


def test_tmpcopyup_read_only_and_mode(sh, private_rootfs, covered):
    def m(spec):
        spec["mounts"].append(_tmpfs("/etc/covered", "tmpcopyup", "ro", "mode=1777"))
    status, out, err = sh("cat /etc/covered/file; stat -c %a /etc/covered; "
                          "touch /etc/covered/x 2>&1; true", m, rootfs_path=private_rootfs)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["from the rootfs", "1777"]
    assert "Read-only file system" in lines[2]


def test_tmpcopyup_of_a_new_directory(sh, private_rootfs):
    def m(spec):
        spec["mounts"].append(_tmpfs("/made/here", "tmpcopyup"))
    status, out, err = sh("ls -A /made/here | wc -l; grep -c ' /made/here tmpfs' /proc/mounts",
                          m, rootfs_path=private_rootfs)
    assert status == 0, err
    assert out.split() == ["0", "1"]


def test_notmpcopyup_is_a_plain_tmpfs(sh, private_rootfs, covered):
    def m(spec):
        spec["mounts"].append(_tmpfs("/etc/covered", "tmpcopyup", "notmpcopyup"))
    status, out, err = sh("ls -A /etc/covered | wc -l", m, rootfs_path=private_rootfs)
    assert status == 0, err
    assert out.split() == ["0"]


# ---------------------------------------------------------------- parsing


@pytest.fixture
def bdir(tmp_path):
    os.mkdir(tmp_path / "rootfs")
    return str(tmp_path)


def parse(bdir, modify):
    spec = default_spec(["sh"])
    modify(spec)
    return S.parse(json.loads(json.dumps(spec)), bdir)


def test_tmpcopyup_parsed(bdir):
    s = parse(bdir, lambda sp: sp["mounts"].append(_tmpfs("/x", "tmpcopyup", "size=1m")))
    m = s.mounts[-1]
    assert m.copyup is True and m.data == "size=1m"


@pytest.mark.parametrize("mount", [
    {"destination": "/x", "type": "bind", "source": "/tmp", "options": ["rbind", "tmpcopyup"]},
    {"destination": "/x", "type": "proc", "source": "proc", "options": ["tmpcopyup"]},
])
def test_tmpcopyup_only_on_tmpfs(bdir, mount):
    with pytest.raises(InvalidSpec) as ei:
        parse(bdir, lambda sp: sp["mounts"].append(mount))
    assert ei.value.field == f"mounts[{len(default_spec()['mounts'])}].options"
    assert "applies to tmpfs mounts only" in str(ei.value)


@pytest.mark.parametrize("where, value, attr, parsed", [
    ("memory", {"disableOOMKiller": True}, "memory_disable_oom_killer", True),
    ("cpu", {"realtimeRuntime": 1000}, "cpu_rt_runtime", 1000),
    ("cpu", {"realtimePeriod": 100000}, "cpu_rt_period", 100000),
    ("blockIO", {"weight": 500}, "blkio_weight", 500),
])
def test_podman_resources_parsed(bdir, where, value, attr, parsed):
    """--oom-kill-disable, --cpu-rt-runtime, --cpu-rt-period, --blkio-weight."""
    def m(sp):
        sp["linux"].setdefault("resources", {})[where] = value
    assert getattr(parse(bdir, m).resources, attr) == parsed


def test_disable_oom_killer_false_accepted(bdir):
    s = parse(bdir, lambda sp: sp["linux"].setdefault("resources", {}).update(
        memory={"disableOOMKiller": False}))
    assert s.resources.memory_disable_oom_killer is None     # the default: unset


# ---------------------------------------------------------------- restore mount points


def test_restore_mountpoints(tmp_path):
    """Mount points on the rootfs and inside a bind mount are made (a file
    for a file source); those inside other mounts are not; symlinks in the
    rootfs stay inside it."""
    bundle = tmp_path / "b"
    rootfs = bundle / "rootfs"
    os.makedirs(rootfs / "etc")
    os.symlink("/etc", rootfs / "link-to-etc")  # absolute: must resolve in the rootfs
    src_dir = tmp_path / "vol"
    os.mkdir(src_dir)
    src_file = tmp_path / "hosts"
    src_file.write_text("127.0.0.1 localhost\n")
    spec = default_spec(["sh"])
    spec["root"]["path"] = "rootfs"
    spec["mounts"] += [
        {"destination": "/etc/hosts", "type": "bind", "source": str(src_file),
         "options": ["bind"]},
        {"destination": "/link-to-etc/hostname", "type": "bind", "source": str(src_file),
         "options": ["bind"]},
        {"destination": "/vol", "type": "bind", "source": str(src_dir), "options": ["rbind"]},
        {"destination": "/vol/inner/dir", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/run/.containerenv", "type": "bind", "source": str(src_file),
         "options": ["bind"]},
    ]
    s = S.parse(json.loads(json.dumps(spec)), str(bundle))
    R.make_restore_mountpoints(s)
    assert stat.S_ISREG(os.lstat(rootfs / "etc" / "hosts").st_mode)
    assert stat.S_ISREG(os.lstat(rootfs / "etc" / "hostname").st_mode)
    assert os.path.isdir(rootfs / "vol")
    assert os.path.isdir(src_dir / "inner" / "dir")  # inside the bind: in its source
    assert os.path.isdir(rootfs / "run")
    assert not os.path.exists(rootfs / "run" / ".containerenv")  # CRIU restores the tmpfs
    assert os.path.isdir(rootfs / "proc") and os.path.isdir(rootfs / "dev")
    assert not os.path.exists(rootfs / "dev" / "pts")  # on the /dev tmpfs: not made
    # running it again changes nothing
    R.make_restore_mountpoints(s)
