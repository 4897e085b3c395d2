"""lowlevel.caps against the real kernel: the bounding set, capset, the
ambient set across setuid + execve, and the prctl process controls.
Every change happens in a forked child."""

import errno
import os
import signal
import socket
import subprocess

import pytest

from lowlevel import caps
from .helpers import capture, dead_pid, no_leaks, run_in_child, tmp  # noqa: F401


def status_caps(text):
    """{"CapEff": int, ...} from a /proc/<pid>/status text."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k.startswith("Cap"):
            out[k] = int(v.strip(), 16)
    return out


def bit(name):
    return 1 << caps.number(name)


# --- names -------------------------------------------------------------

def test_names_and_numbers():
    assert caps.number("CAP_CHOWN") == 0
    assert caps.number("CAP_SYS_ADMIN") == 21
    assert caps.number("CAP_CHECKPOINT_RESTORE") == 40
    assert caps.NUMBERS[13] == "CAP_NET_RAW"
    assert "CAP_LAST_CAP" not in caps.NAMES
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert caps.last_cap() == int(f.read())
    # every capability the kernel knows has a name
    assert all(n in caps.NUMBERS for n in range(caps.last_cap() + 1))
    with pytest.raises(ValueError, match="CAP_BOGUS"):
        caps.number("CAP_BOGUS")


def test_get_caps_reads_proc_status():
    mine = caps.get_caps()
    assert set(mine) == {"inheritable", "permitted", "effective", "bounding", "ambient"}
    with open("/proc/self/status") as f:
        raw = status_caps(f.read())
    assert sum(bit(n) for n in mine["effective"]) == raw["CapEff"]
    assert sum(bit(n) for n in mine["bounding"]) == raw["CapBnd"]
    assert caps.get_caps(os.getpid())["permitted"] == mine["permitted"]
    assert "CAP_SYS_ADMIN" in mine["effective"]


def test_get_caps_of_a_dead_pid_is_esrch():
    pid = dead_pid()
    with pytest.raises(ProcessLookupError) as ei:
        caps.get_caps(pid)
    assert str(pid) in str(ei.value)


# --- bounding set --------------------------------------------------------

def test_bounding_drop_keeps_only_the_named_caps():
    keep = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHECKPOINT_RESTORE"]

    def body():
        before = caps.bounding_has("CAP_SYS_ADMIN")
        caps.bounding_drop(keep)
        now = caps.get_caps()
        return {"before": before, "bounding": sorted(now["bounding"]),
                "has": {n: caps.bounding_has(n) for n in ("CAP_SYS_ADMIN", "CAP_KILL")},
                "effective_kept": "CAP_SYS_ADMIN" in now["effective"]}

    res = run_in_child(body)
    assert res["before"] is True
    assert res["bounding"] == sorted(keep)
    assert res["has"] == {"CAP_SYS_ADMIN": False, "CAP_KILL": True}
    # the bounding set limits what can be gained; it does not drop the
    # effective set
    assert res["effective_kept"] is True
    assert caps.bounding_has("CAP_SYS_ADMIN")  # the parent keeps it


def test_bounding_drop_without_setpcap_is_eperm_naming_the_cap():
    def body():
        mine = caps.get_caps()
        eff = mine["effective"] - {"CAP_SETPCAP"}
        caps.set_caps(effective=eff, permitted=mine["permitted"], inheritable=[])
        return capture(caps.bounding_drop, [])
    res = run_in_child(body)
    assert res["error"]["errno"] == errno.EPERM
    assert "PR_CAPBSET_DROP CAP_CHOWN" in res["error"]["message"]


def test_bounding_unknown_cap_is_value_error():
    with pytest.raises(ValueError):
        caps.bounding_has("CAP_BOGUS")
    with pytest.raises(ValueError):
        caps.bounding_drop(["CAP_BOGUS"])


# --- capset ------------------------------------------------------------

def test_set_caps_without_chown_and_net_raw(tmp):
    path = os.path.join(tmp, "file")
    open(path, "w").close()

    def body():
        def chown():
            os.chown(path, 1000, 1000)
            os.chown(path, 0, 0)
            return True

        def raw_socket():
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            s.close()
            return True

        out = {"before": [capture(chown), capture(raw_socket)]}
        mine = caps.get_caps()
        keep = mine["permitted"] - {"CAP_CHOWN", "CAP_NET_RAW"}
        caps.set_caps(effective=keep, permitted=keep, inheritable=["CAP_KILL"])
        now = caps.get_caps()
        out["after"] = [capture(chown), capture(raw_socket)]
        out["sets"] = {k: sorted(v) for k, v in now.items()}
        # dropped from permitted: it can never come back
        out["regain"] = capture(caps.set_caps, effective=mine["permitted"],
                                permitted=mine["permitted"], inheritable=[])
        return out

    res = run_in_child(body)
    assert res["before"] == [{"value": True}, {"value": True}]
    assert res["after"][0]["error"]["errno"] == errno.EPERM
    assert res["after"][1]["error"]["errno"] == errno.EPERM
    for k in ("effective", "permitted"):
        assert "CAP_CHOWN" not in res["sets"][k]
        assert "CAP_NET_RAW" not in res["sets"][k]
        assert "CAP_SYS_ADMIN" in res["sets"][k]
    assert res["sets"]["inheritable"] == ["CAP_KILL"]
    assert "CAP_CHOWN" in res["sets"]["bounding"]  # capset leaves it alone
    err = res["regain"]["error"]
    assert err["errno"] == errno.EPERM
    assert "capset" in err["message"] and "CAP_CHOWN" in err["message"]
    assert os.stat(path).st_uid == 0


def test_set_caps_empty_then_root_is_powerless(tmp):
    locked = os.path.join(tmp, "locked")
    with open(locked, "w") as f:
        f.write("x")
    os.chmod(locked, 0)

    def body():
        before = capture(lambda: open(locked).read())
        caps.set_caps(effective=[], permitted=[], inheritable=[])
        now = caps.get_caps()
        return {"sets": {k: sorted(v) for k, v in now.items() if k != "bounding"},
                "before": before, "after": capture(lambda: open(locked).read())}
    res = run_in_child(body)
    assert res["sets"] == {"inheritable": [], "permitted": [], "effective": [], "ambient": []}
    assert res["before"] == {"value": "x"}  # CAP_DAC_OVERRIDE
    assert res["after"]["error"]["errno"] == errno.EACCES  # uid 0 without it


def test_set_caps_unknown_name_is_value_error():
    with pytest.raises(ValueError, match="CAP_BOGUS"):
        caps.set_caps(effective=["CAP_BOGUS"], permitted=[], inheritable=[])


# --- ambient ---------------------------------------------------------

def test_ambient_caps_survive_setuid_and_exec():
    def body():
        caps.set_keepcaps(True)
        os.setgid(1000)
        os.setuid(1000)
        after_setuid = sorted(caps.get_caps()["effective"])
        want = ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]
        caps.set_caps(effective=want, permitted=want, inheritable=want)
        caps.ambient_raise(want)
        out = subprocess.run(["cat", "/proc/self/status"], capture_output=True,
                             text=True, check=True).stdout
        uid = [line.split()[1:] for line in out.splitlines() if line.startswith("Uid:")][0]
        return {"after_setuid": after_setuid, "status": status_caps(out), "uid": uid}

    res = run_in_child(body)
    assert res["after_setuid"] == []  # keepcaps keeps permitted, not effective
    want = bit("CAP_NET_BIND_SERVICE") | bit("CAP_NET_RAW")
    st = res["status"]
    assert res["uid"] == ["1000"] * 4
    assert st["CapAmb"] == want
    assert st["CapEff"] == want  # exec as non-root: ambient becomes effective
    assert st["CapPrm"] == want
    assert st["CapInh"] == want


def test_setuid_clears_the_ambient_set():
    # why ambient_raise must come after the switch to the container user
    def body():
        caps.set_caps(effective=caps.get_caps()["permitted"],
                      permitted=caps.get_caps()["permitted"],
                      inheritable=["CAP_NET_BIND_SERVICE"])
        caps.ambient_raise(["CAP_NET_BIND_SERVICE"])
        before = sorted(caps.get_caps()["ambient"])
        caps.set_keepcaps(True)
        os.setuid(1000)
        return {"before": before, "after": sorted(caps.get_caps()["ambient"])}
    assert run_in_child(body) == {"before": ["CAP_NET_BIND_SERVICE"], "after": []}


def test_ambient_clear_and_errors():
    def body():
        mine = caps.get_caps()
        out = {"not_inheritable": capture(caps.ambient_raise, ["CAP_NET_ADMIN"])}
        caps.set_caps(effective=mine["effective"], permitted=mine["permitted"],
                      inheritable=["CAP_NET_ADMIN"])
        caps.ambient_raise(["CAP_NET_ADMIN"])
        out["raised"] = sorted(caps.get_caps()["ambient"])
        caps.ambient_clear()
        out["cleared"] = sorted(caps.get_caps()["ambient"])
        return out
    res = run_in_child(body)
    err = res["not_inheritable"]["error"]
    assert err["errno"] == errno.EPERM
    assert "PR_CAP_AMBIENT_RAISE CAP_NET_ADMIN" in err["message"]
    assert res["raised"] == ["CAP_NET_ADMIN"]
    assert res["cleared"] == []


# --- process controls ----------------------------------------------------

def test_process_controls_set_and_read_back():
    def body():
        out = {"initial": {
            "nnp": caps.get_no_new_privs(), "keepcaps": caps.get_keepcaps(),
            "pdeathsig": caps.get_pdeathsig(), "subreaper": caps.get_child_subreaper(),
            "dumpable": caps.get_dumpable()}}
        caps.set_no_new_privs()
        caps.set_keepcaps(True)
        caps.set_pdeathsig(signal.SIGTERM)
        caps.set_child_subreaper(True)
        caps.set_dumpable(False)
        out["set"] = {
            "nnp": caps.get_no_new_privs(), "keepcaps": caps.get_keepcaps(),
            "pdeathsig": caps.get_pdeathsig(), "subreaper": caps.get_child_subreaper(),
            "dumpable": caps.get_dumpable()}
        with open("/proc/self/status") as f:
            out["status_nnp"] = [ln.split()[1] for ln in f if ln.startswith("NoNewPrivs:")][0]
        caps.set_keepcaps(False)
        caps.set_child_subreaper(False)
        caps.set_pdeathsig(0)
        caps.set_dumpable(True)
        out["reset"] = {"keepcaps": caps.get_keepcaps(), "subreaper": caps.get_child_subreaper(),
                        "pdeathsig": caps.get_pdeathsig(), "dumpable": caps.get_dumpable()}
        return out

    res = run_in_child(body)
    assert res["initial"]["nnp"] is False
    assert res["set"] == {"nnp": True, "keepcaps": True, "pdeathsig": signal.SIGTERM,
                          "subreaper": True, "dumpable": False}
    assert res["status_nnp"] == "1"
    assert res["reset"] == {"keepcaps": False, "subreaper": False, "pdeathsig": 0,
                            "dumpable": True}
    assert caps.get_no_new_privs() is False  # the parent is unchanged


def test_pdeathsig_is_delivered_when_the_parent_dies():
    # child A forks B; B sets PDEATHSIG=SIGKILL and reports; A exits; B dies
    def body():
        import time
        r, w = os.pipe()
        b = os.fork()
        if b == 0:  # pragma: no cover
            try:
                os.close(r)
                caps.set_pdeathsig(signal.SIGKILL)
                os.write(w, b"x")
                time.sleep(30)
            finally:
                os._exit(0)
        os.close(w)
        os.read(r, 1)
        os.close(r)
        return b  # A exits when the parent releases it

    from .helpers import child
    with child(body) as (_apid, bpid):
        assert os.path.exists(f"/proc/{bpid}")
    # A is gone: B was killed (and reaped by init)
    import time
    for _ in range(500):
        try:
            with open(f"/proc/{bpid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state in ("Z", "X"):
            break
        time.sleep(0.01)
    else:
        pytest.fail(f"process {bpid} survived its parent despite PDEATHSIG")


def test_non_dumpable_proc_files_belong_to_root():
    def body():
        os.setgid(1000)
        caps.set_keepcaps(True)
        os.setuid(1000)  # a uid change makes the process non-dumpable ...
        owner_after_setuid = os.stat("/proc/self/status").st_uid
        caps.set_dumpable(True)  # ... which is why runtimes set it back
        owner_dumpable = os.stat("/proc/self/status").st_uid
        caps.set_dumpable(False)
        owner_non_dumpable = os.stat(f"/proc/{os.getpid()}/status").st_uid
        return [owner_after_setuid, owner_dumpable, owner_non_dumpable]
    assert run_in_child(body) == [0, 1000, 0]


def test_bad_pdeathsig_is_refused():
    def body():
        return capture(caps.set_pdeathsig, 999)
    res = run_in_child(body)
    assert "error" in res
