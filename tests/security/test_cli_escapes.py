"""Escapes through the `barerun` command, where the fd numbers are those a
client's call gives (CVE-2024-21626 class: the cgroup directory opened for
CLONE_INTO_CGROUP was fd 7 in `run`'s init and fd 6 in `exec`'s child)."""

import os

import pytest

from tests.runtime.test_cli import cli, cli_rootfs, subreaper  # noqa: F401 - fixtures

ESCAPE = "cd ../../../../../../../../..; stat -c '%d %i' ."


def _host_root():
    st = os.stat("/")
    return f"{st.st_dev} {st.st_ino}"


@pytest.mark.parametrize("n", range(3, 12))
def test_run_cwd_through_a_leaked_fd(cli, n):
    def m(spec):
        spec["process"]["cwd"] = f"/proc/self/fd/{n}"
    cid = cli.new_id()
    b = cli.bundle(["sh", "-c", ESCAPE], m)
    r = cli("run", "--bundle", b, cid)
    assert r.out.strip() != _host_root(), f"cwd /proc/self/fd/{n} reached the host's /"
    if r.rc != 0:
        assert "process.cwd" in r.err or f"/proc/self/fd/{n}" in r.err, r.err


@pytest.mark.parametrize("n", range(3, 12))
def test_exec_cwd_through_a_leaked_fd(cli, n):
    cid, _pid, _b = cli.create(["sleep", "60"])
    cli("start", cid).ok()
    r = cli("exec", "--cwd", f"/proc/self/fd/{n}", cid, "sh", "-c", ESCAPE)
    assert r.out.strip() != _host_root(), f"exec --cwd /proc/self/fd/{n} reached the host's /"
    if r.rc != 0:
        assert "process.cwd" in r.err or f"/proc/self/fd/{n}" in r.err, r.err
