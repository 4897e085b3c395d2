"""lowlevel.system against the real kernel: hostname and domainname in a
UTS namespace, rlimits (this machine has no CAP_SYS_RESOURCE: hard limits
can only be lowered), sysctls in a network namespace, oom_score_adj."""

import errno
import os
import resource
import subprocess

import pytest

from lowlevel import namespaces, system
from .helpers import capture, dead_pid, hostname, no_leaks, run_in_child  # noqa: F401

INF = resource.RLIM_INFINITY


def has_cap_sys_resource():
    with open("/proc/self/status") as f:
        eff = [int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:")][0]
    return bool(eff >> 24 & 1)


# --- hostname / domainname ------------------------------------------------

def test_hostname_and_domainname_in_a_uts_namespace():
    host, domain = hostname(), system.getdomainname()

    def body():
        namespaces.unshare(namespaces.FLAGS["uts"])
        system.sethostname("barerun-host")
        system.setdomainname("barerun.test")
        return {"hostname": hostname(), "domain": system.getdomainname(),
                "uname": subprocess.run(["hostname"], capture_output=True,
                                        text=True).stdout.strip()}

    res = run_in_child(body)
    assert res == {"hostname": "barerun-host", "domain": "barerun.test",
                   "uname": "barerun-host"}
    assert (hostname(), system.getdomainname()) == (host, domain)


def test_sethostname_errors_name_the_value():
    def body():
        namespaces.unshare(namespaces.FLAGS["uts"])
        return {"host": capture(system.sethostname, "x" * 65),
                "domain": capture(system.setdomainname, "d" * 65)}
    res = run_in_child(body)
    assert res["host"]["error"]["errno"] == errno.EINVAL
    assert "sethostname 'xxxx" in res["host"]["error"]["message"]
    assert res["domain"]["error"]["errno"] == errno.EINVAL
    assert "setdomainname 'dddd" in res["domain"]["error"]["message"]


# --- rlimits ------------------------------------------------------------

def test_setrlimit_lowering_works():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def body():
        system.setrlimit("RLIMIT_NOFILE", 256, 512)
        after = system.getrlimit("RLIMIT_NOFILE")
        system.setrlimit("RLIMIT_NOFILE", 128, 512)  # soft may move within hard
        system.setrlimit("RLIMIT_CORE", 0, 0)
        return {"after": after, "soft_only": system.getrlimit("RLIMIT_NOFILE"),
                "core": system.getrlimit("RLIMIT_CORE"),
                "soft_back_up": capture(system.setrlimit, "RLIMIT_NOFILE", 512, 512)}

    res = run_in_child(body)
    assert res["after"] == [256, 512]
    assert res["soft_only"] == [128, 512]
    assert res["core"] == [0, 0]
    assert res["soft_back_up"] == {"value": None}
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)


@pytest.mark.skipif(has_cap_sys_resource(), reason="CAP_SYS_RESOURCE may raise hard limits")
def test_raising_the_hard_limit_is_eperm_naming_the_rlimit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard != INF
    with pytest.raises(PermissionError) as ei:
        system.setrlimit("RLIMIT_NOFILE", soft, hard + 1)
    msg = str(ei.value)
    assert ei.value.errno == errno.EPERM
    assert "RLIMIT_NOFILE" in msg and f"hard limit is {hard}" in msg
    assert "CAP_SYS_RESOURCE" in msg
    # "unlimited" is the highest of all
    with pytest.raises(PermissionError) as ei:
        system.setrlimit("RLIMIT_NOFILE", soft, INF)
    assert "hard=unlimited" in str(ei.value) and f"hard limit is {hard}" in str(ei.value)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)


def test_soft_above_hard_is_einval_naming_the_rlimit():
    with pytest.raises(OSError) as ei:
        system.setrlimit("RLIMIT_NOFILE", 100, 50)
    assert ei.value.errno == errno.EINVAL
    assert "RLIMIT_NOFILE" in str(ei.value) and "soft=100 hard=50" in str(ei.value)
    with pytest.raises(OSError) as ei:
        system.setrlimit("RLIMIT_NOFILE", INF, 50)
    assert ei.value.errno == errno.EINVAL


def test_unknown_rlimit_is_value_error():
    with pytest.raises(ValueError, match="RLIMIT_BOGUS"):
        system.setrlimit("RLIMIT_BOGUS", 1, 1)
    with pytest.raises(ValueError, match="nofile"):
        system.getrlimit("nofile")
    assert system.rlimit_number("RLIMIT_NOFILE") == resource.RLIMIT_NOFILE


def test_setrlimit_of_another_process():
    p = subprocess.Popen(["sleep", "30"])
    try:
        system.setrlimit("RLIMIT_NOFILE", 64, 100, pid=p.pid)
        assert system.getrlimit("RLIMIT_NOFILE", pid=p.pid) == (64, 100)
        with open(f"/proc/{p.pid}/limits") as f:
            line = [ln for ln in f if ln.startswith("Max open files")][0]
        assert line.split()[3:5] == ["64", "100"]
    finally:
        p.kill()
        p.wait()


def test_setrlimit_of_a_dead_pid_is_esrch_naming_it():
    pid = dead_pid()
    with pytest.raises(ProcessLookupError) as ei:
        system.setrlimit("RLIMIT_NOFILE", 10, 10, pid=pid)
    assert f"pid {pid}" in str(ei.value) and "RLIMIT_NOFILE" in str(ei.value)
    with pytest.raises(ProcessLookupError) as ei:
        system.getrlimit("RLIMIT_NOFILE", pid=pid)
    assert f"pid {pid}" in str(ei.value)


# --- sysctl ---------------------------------------------------------------

def test_set_sysctl_in_a_network_namespace():
    host_value = system.get_sysctl("net.ipv4.ip_forward")

    def body():
        namespaces.unshare(namespaces.FLAGS["net"])
        before = system.get_sysctl("net.ipv4.ip_forward")
        system.set_sysctl("net.ipv4.ip_forward", 1)
        system.set_sysctl("net/ipv4/conf/lo/forwarding", "1")  # slash form
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            raw = f.read().strip()
        return {"before": before, "after": system.get_sysctl("net.ipv4.ip_forward"),
                "raw": raw, "lo": system.get_sysctl("net.ipv4.conf.lo.forwarding")}

    res = run_in_child(body)
    # a new network namespace starts from the host's ip_forward (devconf
    # inherited from init_net): whatever the host has, not a fixed value
    assert res == {"before": host_value, "after": "1", "raw": "1", "lo": "1"}
    assert system.get_sysctl("net.ipv4.ip_forward") == host_value


def test_sysctl_path_keeps_keys_inside_proc_sys():
    assert system.sysctl_path("net.ipv4.ip_forward") == "/proc/sys/net/ipv4/ip_forward"
    assert system.sysctl_path("net/ipv4/conf/eth0.100/forwarding") == \
        "/proc/sys/net/ipv4/conf/eth0.100/forwarding"
    for bad in ("net/../../etc/passwd", "..", "net..ipv4", "", "a/./b", "net.ipv4."):
        with pytest.raises(ValueError, match="invalid sysctl key"):
            system.sysctl_path(bad)


def test_sysctl_errors_name_the_file():
    with pytest.raises(FileNotFoundError) as ei:
        system.set_sysctl("net.ipv4.barerun_nonexistent", 1)
    assert "/proc/sys/net/ipv4/barerun_nonexistent" in str(ei.value)
    with pytest.raises(FileNotFoundError) as ei:
        system.get_sysctl("kernel.barerun_nonexistent")
    assert "/proc/sys/kernel/barerun_nonexistent" in str(ei.value)

    def body():
        namespaces.unshare(namespaces.FLAGS["net"])
        return capture(system.set_sysctl, "net.ipv4.ip_forward", "bogus")
    res = run_in_child(body)
    assert res["error"]["errno"] == errno.EINVAL
    assert "'bogus' to /proc/sys/net/ipv4/ip_forward" in res["error"]["message"]


def test_write_proc_file_errors():
    with pytest.raises(FileNotFoundError, match="open /proc/barerun-nonexistent"):
        system.write_proc_file("/proc/barerun-nonexistent", 1)


# --- oom_score_adj -------------------------------------------------------

def test_set_oom_score_adj_on_a_child():
    p = subprocess.Popen(["sleep", "30"])
    try:
        system.set_oom_score_adj(500, pid=p.pid)
        with open(f"/proc/{p.pid}/oom_score_adj") as f:
            assert f.read().strip() == "500"
        system.set_oom_score_adj(100, pid=p.pid)  # down to 0 needs nothing
        with open(f"/proc/{p.pid}/oom_score_adj") as f:
            assert f.read().strip() == "100"
        if not has_cap_sys_resource():  # below 0 it does
            with pytest.raises(PermissionError) as ei:
                system.set_oom_score_adj(-100, pid=p.pid)
            assert f"oom_score_adj -100 of pid {p.pid}" in str(ei.value)
        with pytest.raises(OSError) as ei:
            system.set_oom_score_adj(5000, pid=p.pid)
        assert ei.value.errno == errno.EINVAL
        assert f"oom_score_adj 5000 of pid {p.pid}" in str(ei.value)
    finally:
        p.kill()
        p.wait()


def test_set_oom_score_adj_self_in_a_child():
    def body():
        system.set_oom_score_adj(123)
        with open("/proc/self/oom_score_adj") as f:
            return f.read().strip()
    assert run_in_child(body) == "123"


def test_set_oom_score_adj_of_a_dead_pid_is_esrch():
    pid = dead_pid()
    with pytest.raises(ProcessLookupError) as ei:
        system.set_oom_score_adj(100, pid=pid)
    assert f"pid {pid}" in str(ei.value)
