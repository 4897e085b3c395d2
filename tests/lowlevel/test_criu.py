"""lowlevel.criu on this machine: a CRIU >= 4.2.1 built into /usr/local/sbin
(scripts/build-criu.sh), `criu check`, pycriu's RPC messages, and the
search order and error message of find_criu."""

import os

import pytest

from lowlevel import criu
from .helpers import no_leaks, tmp  # noqa: F401


def fake_criu(directory, name, version):
    """An executable that answers --version like criu would."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\necho 'Version: {version}'\necho 'GitID: v{version}'\n")
    os.chmod(path, 0o755)
    return path


def test_find_criu_finds_a_recent_one():
    path = criu.find_criu()
    v = criu.version(path)
    assert v is not None and v >= (4,) and v >= criu.MIN_VERSION
    assert os.access(path, os.X_OK)


def test_criu_check_looks_good():
    ok, out = criu.check()
    assert ok, out
    assert "Looks good" in out


def test_pycriu_is_importable_with_rpc_messages():
    pycriu = pytest.importorskip("pycriu")
    req = pycriu.rpc_pb2.criu_req()
    req.type = pycriu.rpc_pb2.DUMP
    req.opts.tcp_established = True
    req.opts.shell_job = False
    req.opts.images_dir_fd = 3  # required by the protocol
    data = req.SerializeToString()
    back = pycriu.rpc_pb2.criu_req()
    back.ParseFromString(data)
    assert back.type == pycriu.rpc_pb2.DUMP and back.opts.tcp_established
    assert back.opts.images_dir_fd == 3


def test_an_explicit_path_that_does_not_exist_falls_back():
    assert criu.find_criu("/nonexistent/criu") == criu.find_criu()


def test_explicit_and_env_come_first(tmp, monkeypatch):
    real = criu.find_criu()
    wrapper = os.path.join(tmp, "criu-wrapper")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec {real} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    monkeypatch.setenv("BARERUN_CRIU", wrapper)
    assert criu.find_criu() == wrapper
    assert criu.find_criu(real) == real
    ok, out = criu.check(wrapper)
    assert ok, out


def test_version_parsing(tmp):
    assert criu.version(fake_criu(tmp, "c1", "4.2.1")) == (4, 2, 1)
    assert criu.version(fake_criu(tmp, "c2", "3.17")) == (3, 17)
    assert criu.version(fake_criu(tmp, "c3", "4.")) == (4,)
    assert criu.version("/nonexistent/criu") is None
    notcriu = os.path.join(tmp, "true")
    os.symlink("/bin/true", notcriu)
    assert criu.version(notcriu) is None


def test_nothing_usable_names_everything_tried(tmp, monkeypatch):
    bogus = os.path.join(tmp, "bogus")
    with open(bogus, "w") as f:
        f.write("not a program\n")
    old = fake_criu(tmp, "criu", "3.17")  # Debian 12's, broken on this kernel
    monkeypatch.setattr(criu, "CANDIDATES", (old,))
    monkeypatch.setenv("BARERUN_CRIU", bogus)
    monkeypatch.setenv("PATH", "")  # an empty PATH searches nothing
    with pytest.raises(FileNotFoundError) as ei:
        criu.find_criu("/nonexistent/criu")
    msg = str(ei.value)
    assert msg.startswith(f"no CRIU >= {'.'.join(map(str, criu.MIN_VERSION))} found")
    assert "/nonexistent/criu (No such file or directory)" in msg
    assert f"{bogus} (Permission denied)" in msg
    assert f"{old} (version 3.17 is too old)" in msg
    assert "scripts/build-criu.sh" in msg
    # with PATH pointing at a directory holding only the old one
    monkeypatch.setenv("PATH", tmp)
    monkeypatch.setattr(criu, "CANDIDATES", ())
    monkeypatch.delenv("BARERUN_CRIU")
    with pytest.raises(FileNotFoundError, match="3.17 is too old"):
        criu.find_criu()


def test_check_of_something_that_is_not_criu(tmp):
    ok, out = criu.check("/bin/false")
    assert not ok
    ok, out = criu.check(os.path.join(tmp, "missing"))
    assert not ok and "missing" in out
