"""linux.seccomp, enforced: real busybox containers whose syscalls the
filter answers (EPERM, ENOSYS, SIGSYS), in the init's program and in
exec'd processes, with and without noNewPrivileges; bad profiles are
refused with the JSON field before anything is made."""

import errno
import json
import os
import shutil
import time

import pytest

import runtime
from lowlevel import criu
from lowlevel import seccomp as S
from runtime import Status
from tests.bundles import default_spec
from tests.conftest import criu_needs_unfiltered, new_container_id, seccomp_status

MKDIR_EPERM = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": errno.EPERM}]}

# the architectures a profile for this machine lists (as podman/docker do)
ARCHES = {"x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
          "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}.get(os.uname().machine, [])

# A compact allow list in the shape of podman's/docker's default profile
# (defaultAction SCMP_ACT_ERRNO, ENOSYS for anything not listed): what
# busybox's shell and applets, and the runtime's last steps before execve,
# need.  mkdir and mkdirat are left out on purpose.
ALLOWED = """
access arch_prctl brk capget capset chdir chmod clock_getres clock_gettime
clock_nanosleep clone clone3 close close_range dup dup2 dup3 epoll_create1
epoll_ctl epoll_pwait epoll_wait eventfd2 execve execveat exit exit_group
faccessat faccessat2 fadvise64 fchdir fchmod fchmodat fchown fcntl fdatasync
flock fstat fstatfs fsync ftruncate futex getcwd getdents64 getegid geteuid
getgid getgroups getitimer getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresuid getrlimit getrusage getsid gettid gettimeofday
getuid ioctl kill lseek lstat madvise membarrier mmap mprotect mremap munmap
nanosleep newfstatat open openat openat2 pause pipe pipe2 poll ppoll prctl
pread64 prlimit64 pselect6 pwrite64 read readlink readlinkat readv rename
renameat renameat2 restart_syscall rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
sched_getaffinity sched_yield select sendfile set_robust_list set_tid_address
setgid setgroups setitimer setpgid setresgid setresuid setsid setuid
sigaltstack stat statfs statx symlink symlinkat sysinfo tgkill time times
tkill truncate umask uname unlink unlinkat utimensat vfork wait4 waitid write
writev
""".split()

DEFAULT_LIKE = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS,
                "architectures": ARCHES,
                "syscalls": [{"names": ALLOWED, "action": "SCMP_ACT_ALLOW"},
                             {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                              "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]}


def with_seccomp(profile, nnp=True, user=None, tmpfs=True):
    """A spec change: linux.seccomp = profile, process.noNewPrivileges =
    nnp, a writable tmpfs on /tmp (the rootfs is read-only)."""
    def modify(spec):
        if profile is not None:
            spec["linux"]["seccomp"] = json.loads(json.dumps(profile))
        spec["process"]["noNewPrivileges"] = nnp
        if user is not None:
            spec["process"]["user"] = {"uid": user, "gid": user}
        if tmpfs:
            spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                   "options": ["nosuid", "nodev", "mode=1777"]})
    return modify


def status_fields(text):
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k] = v.strip()
    return out


def run_exec(c, args, tmp_path, name, nnp=True, timeout=10):
    """exec ``args`` in ``c`` (the default process spec); (status, out, err)."""
    proc = default_spec(list(args))["process"]
    proc["noNewPrivileges"] = nnp
    out, err = str(tmp_path / f"{name}.out"), str(tmp_path / f"{name}.err")
    p = c.exec(runtime.ExecOpts(json.dumps(proc).encode(), runtime.IO(stdout=out, stderr=err)))
    status = p.wait(timeout=timeout)
    with open(out) as f, open(err) as g:
        return status, f.read(), g.read()


MKDIR = "mkdir /tmp/x; echo mkdir=$?; grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' " \
        "/proc/self/status; echo still here"


def inherited():
    """(Seccomp, Seccomp_filters) as this test process has them (a
    launcher such as tests/enosys.py may have loaded a filter): what a
    container's processes inherit before the runtime adds its own."""
    mode, count = seccomp_status()
    return str(mode), str(count)


def with_one_more_filter():
    """What a process under the container's filter shows: filter mode,
    and exactly one filter more than this test process has."""
    return "2", str(seccomp_status()[1] + 1)


# ---------------------------------------------------------------- enforcement


def test_errno_rule_makes_mkdir_fail_and_the_rest_works(sh):
    # without a profile the same mkdir works: the EPERM below is seccomp's
    # (and the runtime adds no filter of its own)
    status, out, err = sh(MKDIR, with_seccomp(None))
    assert (status, err) == (0, "")
    fields = status_fields(out)
    assert "mkdir=0" in out
    assert (fields["Seccomp"], fields["Seccomp_filters"]) == inherited()
    status, out, err = sh(MKDIR, with_seccomp(MKDIR_EPERM))
    assert status == 0
    assert "can't create directory '/tmp/x': Operation not permitted" in err
    fields = status_fields(out)
    assert out.splitlines()[0] == "mkdir=1"
    # filter mode, loaded once on top of what this process has
    assert (fields["Seccomp"], fields["Seccomp_filters"]) == with_one_more_filter()
    assert out.rstrip().endswith("still here")


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_default_deny_profile_runs_busybox(sh, nnp):
    script = ("echo start; ls / | wc -l; (cd /tmp && echo sub > f && cat f); "
              "for i in 1 2; do echo loop$i; done; sleep 0.01; "
              "touch /tmp/t && rm /tmp/t && echo touched; "
              "mkdir /tmp/d; echo mkdir=$?; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status")
    status, out, err = sh(script, with_seccomp(DEFAULT_LIKE, nnp=nnp))
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "start" and int(lines[1]) > 5
    assert lines[2:6] == ["sub", "loop1", "loop2", "touched"]
    # mkdir is not in the allow list: the default action answers ENOSYS
    assert "mkdir=1" in lines
    assert "Function not implemented" in err
    fields = status_fields(out)
    assert fields["Seccomp"] == "2"
    assert fields["NoNewPrivs"] == ("1" if nnp else "0")


def test_kill_process_action(sh):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    status, out, err = sh("echo before; sync; echo after=$?", with_seccomp(profile))
    assert status == 0
    assert out.splitlines() == ["before", f"after={128 + 31}"]  # SIGSYS


def test_argument_rules(sh):
    # chmod to 0600 or 0640 (two comparisons of one argument: either
    # matches, as with runc) is refused, other modes are not
    rules = []
    for names, index in ((["chmod"], 1), (["fchmodat"], 2)):
        rules.append({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
                      "args": [{"index": index, "value": 0o600, "op": "SCMP_CMP_EQ"},
                               {"index": index, "value": 0o640, "op": "SCMP_CMP_EQ"}]})
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
    script = ("touch /tmp/f; for m in 600 640 644 700; do chmod $m /tmp/f; echo $m=$?; done; "
              "stat -c %a /tmp/f")
    status, out, err = sh(script, with_seccomp(profile))
    assert status == 0
    assert out.split() == ["600=1", "640=1", "644=0", "700=0", "700"]
    assert err.count("Permission denied") == 2


def test_unknown_syscalls_and_redundant_rules_are_skipped(sh):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [
                   # a syscall of a kernel libseccomp does not know yet
                   {"names": ["barerun_future_syscall", "mkdir", "mkdirat"],
                    "action": "SCMP_ACT_ERRNO"},  # no errnoRet: EPERM
                   # the default action again (libseccomp would refuse it)
                   {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}
    status, out, err = sh("mkdir /tmp/x; echo mkdir=$?", with_seccomp(profile))
    assert status == 0
    assert out.strip() == "mkdir=1" and "Operation not permitted" in err


def test_no_new_privileges_false_as_another_user(sh):
    # loading needs CAP_SYS_ADMIN without no_new_privs: the filter goes in
    # before the switch to uid 1000 and the capability drop
    status, out, err = sh(MKDIR + "; id -u", with_seccomp(MKDIR_EPERM, nnp=False, user=1000))
    assert status == 0, err
    fields = status_fields(out)
    assert (fields["Seccomp"], fields["NoNewPrivs"]) == ("2", "0")
    assert "mkdir=1" in out and "Operation not permitted" in err
    assert out.split()[-1] == "1000"


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_exec_processes_get_the_containers_filter(create, root, tmp_path, nnp):
    o = create(["sleep", "30"], with_seccomp(MKDIR_EPERM))
    c = o.container
    c.start()
    assert c.state().status == Status.RUNNING
    status, out, err = run_exec(c, ["sh", "-c", MKDIR], tmp_path, "exec", nnp=nnp)
    assert status == 0
    assert "Operation not permitted" in err
    fields = status_fields(out)
    assert (fields["Seccomp"], fields["Seccomp_filters"]) == with_one_more_filter()
    assert fields["NoNewPrivs"] == ("1" if nnp else "0")
    # the same from another process's handle: the filter comes from the state
    again = runtime.load(c.id, root=root)
    status, out, err = run_exec(again, ["sh", "-c", MKDIR], tmp_path, "exec2")
    assert "mkdir=1" in out and "Operation not permitted" in err
    c.kill(9)
    c.wait(timeout=10)
    c.delete()


def test_exec_into_a_container_without_seccomp_is_unfiltered(create, tmp_path):
    o = create(["sleep", "30"], with_seccomp(None))
    c = o.container
    c.start()
    status, out, err = run_exec(c, ["sh", "-c", MKDIR], tmp_path, "exec")
    assert (status, err) == (0, "")
    assert "mkdir=0" in out
    fields = status_fields(out)
    assert (fields["Seccomp"], fields["Seccomp_filters"]) == inherited()
    c.kill(9)
    c.wait(timeout=10)
    c.delete()


def _have_criu():
    try:
        return criu.find_criu() is not None
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not _have_criu(), reason="no CRIU >= "
                    f"{'.'.join(map(str, criu.MIN_VERSION))} found")
@criu_needs_unfiltered
def test_filter_survives_checkpoint_and_restore(create, root, tmp_path):
    o = create(["sh", "-c", "while :; do sleep 0.05; done"], with_seccomp(MKDIR_EPERM))
    c = o.container
    c.start()
    ck = str(tmp_path / "ck")
    try:
        c.checkpoint(runtime.CheckpointOpts(exit=True, path=ck))
        c.delete()
        r = root.track(runtime.create(new_container_id(), c.bundle, root=root, checkpoint=ck,
                                      io=runtime.IO(stdout=str(tmp_path / "r.out"),
                                                    stderr=str(tmp_path / "r.err"))))
        r.start()
        # CRIU restored the init's filter; exec'd processes get it from the state
        deadline = time.monotonic() + 5
        while r.state().status != Status.RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        assert S.mode(r.pid) == 2
        status, out, err = run_exec(r, ["sh", "-c", MKDIR], tmp_path, "exec")
        assert "mkdir=1" in out and "Operation not permitted" in err
        r.kill(9)
        r.wait(timeout=10)
        r.delete()
    finally:
        shutil.rmtree(ck, ignore_errors=True)


# ---------------------------------------------------------------- bad profiles


def _rule(**kw):
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
                         {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", **kw}]}


BAD = [
    ({"defaultAction": "SCMP_ACT_BOGUS"}, "linux.seccomp.defaultAction", "unknown seccomp action"),
    ({"syscalls": []}, "linux.seccomp.defaultAction", "missing"),
    (_rule(action="SCMP_ACT_MAYBE"), "linux.seccomp.syscalls[1].action",
     "unknown seccomp action 'SCMP_ACT_MAYBE'"),
    (_rule(action="SCMP_ACT_NOTIFY"), "linux.seccomp.syscalls[1].action",
     "not supported by barerun"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "linux.seccomp.defaultAction",
     "not supported by barerun"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/listener.sock"},
     "linux.seccomp.listenerPath", "not supported by barerun"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]},
     "linux.seccomp.architectures[1]", "unknown architecture 'SCMP_ARCH_Z80'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]},
     "linux.seccomp.flags[0]", "unknown seccomp flag"),
    (_rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]),
     "linux.seccomp.syscalls[1].args[0].op", "unknown seccomp comparison 'SCMP_CMP_LIKE'"),
    (_rule(args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]),
     "linux.seccomp.syscalls[1].args[0].index", "0..5"),
    (_rule(args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]),
     "linux.seccomp.syscalls[1].args[0].value", "64-bit unsigned"),
    (_rule(errnoRet=70000), "linux.seccomp.syscalls[1].errnoRet", "0..65535"),
    (_rule(names=[]), "linux.seccomp.syscalls[1].names", "at least one syscall"),
    (_rule(names=[42]), "linux.seccomp.syscalls[1].names[0]", "must be a string"),
    ("all", "linux.seccomp", "must be an object"),
]


@pytest.mark.parametrize("profile, field, text", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_profiles_are_invalid_spec_naming_the_field(create, root, profile, field, text):
    with pytest.raises(runtime.InvalidSpec) as ei:
        create(["true"], with_seccomp(profile))
    assert ei.value.field == field
    assert text in str(ei.value)
    assert os.listdir(root) == []  # nothing made


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_a_filter_denying_getcwd_does_not_stop_the_runtime(sh, nnp):
    """The runtime checks the cwd (getcwd) before the spec's filter is
    loaded: a filter that denies getcwd (the OCI suite's linux_seccomp)
    still runs the container, and the program meets the denial."""
    deny = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}

    def m(spec):
        spec["linux"]["seccomp"] = deny
        spec["process"]["noNewPrivileges"] = nnp
    status, out, err = sh("echo ran; /bin/pwd -P", m)
    assert out.startswith("ran\n"), (status, out, err)
    assert status != 0 and "Operation not permitted" in err, (status, out, err)
