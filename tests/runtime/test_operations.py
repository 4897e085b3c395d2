"""Operations on a running container: pause/resume (cgroup v1 freezer and,
in a private mount namespace, pure cgroup v2), kill (one, all, paused),
exec, terminals (pty resize), close_stdin, and the CLI commands for them.

Real containers (busybox), run as root.  Every container is tracked by the
``root`` fixture, which force-deletes it at teardown even when a test
fails; the pure-v2 test cleans up inside its child and checks from here.
"""

import errno
import json
import logging
import os
import select
import signal
import sys
import subprocess
import time

import pytest

import runtime
from lowlevel import cgroups
from runtime import ConsoleSize, Status
from tests.bundles import default_spec
from tests.conftest import leftover_cgroups, pid_alive, wait_for

BARERUN = os.path.join(os.path.dirname(sys.executable), "barerun")

# A busy counter on the container's tmpfs (/dev/shm: the rootfs is
# read-only).  Each value is written to a new file then renamed, so a
# reader (or a freeze) never sees a half-written file.
COUNTER = ("i=0; while :; do i=$((i+1)); echo $i > /dev/shm/c.new; "
           "mv -f /dev/shm/c.new /dev/shm/c; done")


# ------------------------------------------------------------------ helpers



def read_counter(pid):
    """The counter the container wrote, read through the host's view of its
    root (/proc/<pid>/root): no exec needed, so it works while paused."""
    try:
        with open(f"/proc/{pid}/root/dev/shm/c") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text else 0


def process_json(args, terminal=False, size=None, env=None):
    """An exec process spec (bytes): the default spec's process with ``args``."""
    proc = default_spec(list(args))["process"]
    proc["terminal"] = terminal
    if size is not None:
        proc["consoleSize"] = {"height": size[0], "width": size[1]}
    if env:
        proc["env"] = proc["env"] + list(env)
    return json.dumps(proc).encode()


def read_file(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def cli(root, *args, timeout=30, **kwargs):
    """Run the barerun CLI; stdout/stderr captured (never the container's:
    commands that start a process pass it files, see test_cli_operations)."""
    return subprocess.run([BARERUN, "--root", root, *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def run_exec(c, args, tmp_path, name, timeout=10, **kwargs):
    """exec ``args`` in ``c``, wait; returns (exit status, stdout, stderr)."""
    out, err = str(tmp_path / f"{name}.out"), str(tmp_path / f"{name}.err")
    p = c.exec(runtime.ExecOpts(process_json(args, **kwargs),
                                runtime.IO(stdout=out, stderr=err)))
    status = p.wait(timeout=timeout)
    return status, read_file(out), read_file(err)


def freezer_state(c):
    return cgroups.Cgroup(f"barerun/{c.id}").state()


@pytest.fixture
def counter(create):
    """A started container running the busy counter, counting already."""
    o = create(["sh", "-c", COUNTER])
    c = o.c
    c.start()
    wait_for(lambda: read_counter(c.pid) > 0, what="the counter to start")
    return c


def needs_v1_freezer():
    layout = cgroups.detect()
    if "freezer" not in layout.v1:
        pytest.skip(f"no v1 freezer on this host (cgroups {layout.mode})")


# ------------------------------------------------------------------ pause/resume (v1)


def test_pause_stops_counter_and_resume_goes_on(counter, root):
    needs_v1_freezer()
    c = counter
    c.pause()
    assert c.state() == runtime.State(Status.PAUSED, c.pid)
    assert freezer_state(c) == "FROZEN"
    # the same status from another handle and from another process
    assert runtime.load(c.id, root=root).state().status == Status.PAUSED
    r = cli(root, "state", c.id)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "paused"
    assert json.loads(r.stdout)["pid"] == c.pid
    # list shows it paused too
    assert [(x.id, x.status) for x in runtime.list_containers(root=root)] == \
        [(c.id, Status.PAUSED)]

    before = read_counter(c.pid)
    assert before > 0
    time.sleep(0.3)
    assert read_counter(c.pid) == before, "the counter moved while paused"

    # pausing twice is refused (already paused), resume works once
    with pytest.raises(runtime.InvalidState):
        c.pause()
    c.resume()
    assert c.state().status == Status.RUNNING
    assert freezer_state(c) == "THAWED"
    wait_for(lambda: read_counter(c.pid) > before + 10, what="the counter to go on")
    with pytest.raises(runtime.InvalidState):
        c.resume()

    c.kill(signal.SIGKILL)
    assert c.wait(timeout=10) == 137


def test_pause_resume_from_another_handle(counter, root):
    needs_v1_freezer()
    c = counter
    other = runtime.load(c.id, root=root)
    other.pause()
    assert c.state().status == Status.PAUSED
    before = read_counter(c.pid)
    time.sleep(0.3)
    assert read_counter(c.pid) == before
    other.resume()
    assert c.state().status == Status.RUNNING
    wait_for(lambda: read_counter(c.pid) > before, what="the counter to go on")


def test_kill_paused_container(counter, root):
    c = counter
    pid = c.pid
    c.pause()
    assert c.state().status == Status.PAUSED
    c.kill(signal.SIGKILL)
    assert c.wait(timeout=10) == 137
    assert not pid_alive(pid)
    assert c.state() == runtime.State(Status.STOPPED, 0)
    c.delete()
    assert leftover_cgroups(f"barerun/{c.id}") == []
    assert not os.path.exists(os.path.join(root, c.id))


def test_force_delete_paused_container_leaves_nothing(create, root):
    # the init and a background child, both frozen
    c = create(["sh", "-c", "sleep 1000 & " + COUNTER]).c
    c.start()
    wait_for(lambda: read_counter(c.pid) > 0, what="the counter to start")
    wait_for(lambda: len(c.processes()) >= 2, what="the background sleep")
    pids = c.processes()
    c.pause()
    assert c.state().status == Status.PAUSED
    with pytest.raises(runtime.InvalidState):
        c.delete()  # without force: refused while paused
    c.delete(force=True)
    assert not os.path.exists(os.path.join(root, c.id))
    assert leftover_cgroups(f"barerun/{c.id}") == []
    for pid in pids:
        wait_for(lambda: not pid_alive(pid), timeout=5, what=f"pid {pid} to be gone")
    with pytest.raises(runtime.NotFound):
        runtime.load(c.id, root=root)


# ------------------------------------------------------------------ pause/resume (pure v2)


def _v2_child(wfd, root, bundle_dir, cid):
    """In the forked child: a private mount namespace with cgroup2 on
    /sys/fs/cgroup (a pure v2 host), a container run through pause,
    resume, kill --all and delete.  Writes a JSON report to ``wfd``."""
    res = {"steps": []}
    c = None
    try:
        from lowlevel._ffi import ffi, lib
        if lib.unshare(lib.CLONE_NEWNS) != 0:
            raise OSError(ffi.errno, "unshare(CLONE_NEWNS)")
        if lib.mount(b"none", b"/", ffi.NULL, lib.MS_REC | lib.MS_PRIVATE, ffi.NULL) != 0:
            raise OSError(ffi.errno, "make / private")
        if lib.mount(b"cgroup2", b"/sys/fs/cgroup", b"cgroup2", 0, ffi.NULL) != 0:
            raise OSError(ffi.errno, "mount cgroup2 on /sys/fs/cgroup")
        res["mode"] = cgroups.detect(refresh=True).mode
        # record every cgroup file write (cgroup.kill must be one)
        writes = []

        class Grab(logging.Handler):
            def emit(self, record):
                writes.append(record.getMessage())

        tlog = logging.getLogger("barerun.trace")
        tlog.setLevel(logging.DEBUG)
        tlog.addHandler(Grab())

        out = os.path.join(os.path.dirname(bundle_dir), "v2.out")
        err = os.path.join(os.path.dirname(bundle_dir), "v2.err")
        c = runtime.create(cid, bundle_dir, root=root,
                           io=runtime.IO(stdout=out, stderr=err))
        cg_dir = f"/sys/fs/cgroup/barerun/{cid}"
        res["cgroup_dir_exists"] = os.path.isdir(cg_dir)
        c.start()
        wait_for(lambda: read_counter(c.pid) > 0, what="the counter to start")
        res["steps"].append("started")

        # the container sees cgroup v2 and its own cgroup as its root
        st, o, e = run_exec(c, ["cat", "/proc/self/cgroup"], _Tmp(os.path.dirname(bundle_dir)),
                            "v2-exec")
        res["exec"] = [st, o, e]
        st, o, e = run_exec(c, ["grep", " /sys/fs/cgroup ", "/proc/self/mountinfo"],
                            _Tmp(os.path.dirname(bundle_dir)), "v2-mounts")
        res["exec_mounts"] = [st, o, e]

        c.pause()
        res["paused_status"] = int(c.state().status)
        with open(os.path.join(cg_dir, "cgroup.events")) as f:
            res["events_paused"] = f.read()
        a = read_counter(c.pid)
        time.sleep(0.3)
        b = read_counter(c.pid)
        res["paused_counter"] = [a, b]
        try:
            c.exec(runtime.ExecOpts(process_json(["true"]), None))
            res["exec_while_paused"] = "allowed"
        except runtime.InvalidState:
            res["exec_while_paused"] = "InvalidState"

        c.resume()
        res["resumed_status"] = int(c.state().status)
        with open(os.path.join(cg_dir, "cgroup.events")) as f:
            res["events_resumed"] = f.read()
        wait_for(lambda: read_counter(c.pid) > b + 10, what="the counter to go on")
        res["resumed_counter"] = read_counter(c.pid)

        del writes[:]
        c.kill(signal.SIGKILL, all=True)
        res["kill_writes"] = [w for w in writes if "cgroup.kill" in w]
        res["wait"] = c.wait(timeout=10)
        c.delete()
        c = None
        res["cgroup_dir_after"] = os.path.exists(cg_dir)
        res["state_dir_after"] = os.path.exists(os.path.join(root, cid))
        res["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
        import traceback
        res["error"] = "".join(traceback.format_exception(exc))
    finally:
        if c is not None:
            try:
                c.delete(force=True)
            except BaseException as exc:  # noqa: BLE001
                res["cleanup_error"] = repr(exc)
        try:
            data = json.dumps(res).encode()
            while data:
                data = data[os.write(wfd, data):]
        finally:
            os._exit(0)


class _Tmp:
    """Enough of pytest's tmp_path for run_exec (``tmp / name``)."""

    def __init__(self, d):
        self.d = d

    def __truediv__(self, name):
        return os.path.join(self.d, name)


def test_pause_resume_pure_cgroup_v2(root, bundle, new_id, tmp_path):
    cid = new_id()
    # the default spec, cgroup mount included: on a v2 host it is cgroup2
    b = bundle(["sh", "-c", COUNTER])
    host_dir = os.path.join(cgroups.detect().unified or "/nonexistent", "barerun", cid)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _v2_child(w, root, b, cid)
        os._exit(1)  # not reached
    os.close(w)
    data = b""
    try:
        deadline = time.monotonic() + 60
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the v2 child did not report in 60 s"
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                continue
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        if not data:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
        # whatever happened in the child, nothing may be left
        if os.path.isdir(host_dir):
            try:
                with open(os.path.join(host_dir, "cgroup.kill"), "w") as f:
                    f.write("1")
            except OSError:
                pass
            cgroups.Cgroup(f"barerun/{cid}").remove()
            pytest.fail(f"the v2 child left its cgroup {host_dir}")
    res = json.loads(data)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "error" not in res, res["error"]
    assert "cleanup_error" not in res, res["cleanup_error"]
    assert res["mode"] == "v2"
    assert res["cgroup_dir_exists"]
    st, out, err = res["exec"]
    # (the kernel still lists the v1 hierarchies the mount namespace hides)
    assert st == 0 and "0::/" in out.splitlines(), (st, out, err)
    st, out, err = res["exec_mounts"]
    assert st == 0 and " - cgroup2 " in out, (st, out, err)
    assert res["paused_status"] == Status.PAUSED
    assert "frozen 1" in res["events_paused"].splitlines()
    a, b2 = res["paused_counter"]
    assert a > 0 and a == b2, f"the counter moved while paused: {a} -> {b2}"
    assert res["exec_while_paused"] == "InvalidState"
    assert res["resumed_status"] == Status.RUNNING
    assert "frozen 0" in res["events_resumed"].splitlines()
    assert res["resumed_counter"] > b2
    assert res["kill_writes"], "kill --all SIGKILL on v2 did not write cgroup.kill"
    assert res["wait"] == 137
    assert res["cgroup_dir_after"] is False
    assert res["state_dir_after"] is False
    assert not os.path.exists(os.path.join(root, cid))
    assert leftover_cgroups(f"barerun/{cid}") == []


# ------------------------------------------------------------------ exec


@pytest.fixture
def sleeper(create):
    """A started container: init `sleep 1000` with hostname ops-host."""

    def modify(spec):
        spec["hostname"] = "ops-host"

    c = create(["sleep", "1000"], modify).c
    c.start()
    assert c.state().status == Status.RUNNING
    return c


def test_exec_sees_hostname_pidns_and_cgroup(sleeper, tmp_path):
    c = sleeper
    assert run_exec(c, ["hostname"], tmp_path, "host")[:2] == (0, "ops-host\n")
    st, out, err = run_exec(c, ["cat", "/proc/1/cmdline"], tmp_path, "cmdline")
    assert st == 0, err
    assert out == "sleep\x001000\x00"
    # the same pid namespace: pid 1 is the init, the exec'd shell is not 1
    st, out, _ = run_exec(c, ["sh", "-c", "echo $$"], tmp_path, "pid")
    assert st == 0 and int(out) > 1
    st, out, err = run_exec(c, ["sh", "-c", "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup"],
                            tmp_path, "cgroup")
    assert st == 0, err
    mine, init = out.split("--\n")
    assert mine == init
    assert mine.strip()


def test_exec_exit_code(sleeper, tmp_path):
    assert run_exec(sleeper, ["sh", "-c", "exit 7"], tmp_path, "exit7")[0] == 7
    assert run_exec(sleeper, ["true"], tmp_path, "true")[0] == 0


@pytest.mark.parametrize("prog", ["/etc", "/etc/passwd"], ids=["directory", "not-executable"])
def test_exec_of_a_program_that_cannot_run_is_an_error(sleeper, prog):
    """Refused at exec time, naming the file and errno (runc: `exec:
    "/etc": permission denied`), not a silent 127."""
    with pytest.raises(runtime.ChildError) as ei:
        sleeper.exec(runtime.ExecOpts(process_json([prog]), runtime.IO()))
    assert prog in str(ei.value) and "Permission denied" in str(ei.value)
    assert ei.value.errno == errno.EACCES


def test_a_failed_execve_in_exec_reaches_the_caller(create, private_rootfs):
    """An executable file the kernel cannot run (ENOEXEC) passes every
    check before execve: the execve error itself must come back."""
    bad = os.path.join(private_rootfs, "bin", "garbage")
    with open(bad, "wb") as f:
        f.write(b"\x7fELF-not-really")
    os.chmod(bad, 0o755)
    c = create(["sleep", "1000"], rootfs_path=private_rootfs).c
    c.start()
    with pytest.raises(runtime.ChildError) as ei:
        c.exec(runtime.ExecOpts(process_json(["/bin/garbage"]), runtime.IO()))
    assert "/bin/garbage" in str(ei.value) and ei.value.errno == errno.ENOEXEC
    assert c.state().status == Status.RUNNING
    c.delete(force=True)


def test_exec_pid_in_processes_and_kill(sleeper):
    c = sleeper
    p = c.exec(runtime.ExecOpts(process_json(["sleep", "1000"]), runtime.IO()))
    try:
        assert p.pid in c.processes()
        assert c.pid in c.processes()
        # the host's view: the same cgroup as the init in every hierarchy
        assert cgroups.own_cgroup(p.pid) == cgroups.own_cgroup(c.pid)
        assert f"/barerun/{c.id}" in cgroups.own_cgroup(p.pid).values()
        assert p.state() == runtime.State(Status.RUNNING, p.pid)
        with pytest.raises(TimeoutError):
            p.wait(timeout=0.05)
        c.kill(signal.SIGKILL, pid=p.pid)
        assert p.wait(timeout=10) == 137
        assert p.state().status == Status.STOPPED
        wait_for(lambda: p.pid not in c.processes(), what="the exec'd pid to leave")
        assert c.state().status == Status.RUNNING  # the init is untouched
    finally:
        if p.state().status != Status.STOPPED:
            p.kill(signal.SIGKILL)
            p.wait(timeout=10)


def test_wait_and_delete_with_unwaited_exec(create):
    # an exec'd process is our child inside the container's pid namespace:
    # the init cannot finish exiting until it is reaped, so wait() must
    # reap it (it hung forever before)
    c = create(["sleep", "1000"]).c
    c.start()
    p = c.exec(runtime.ExecOpts(process_json(["sleep", "1000"]), runtime.IO()))
    c.kill(signal.SIGKILL)
    assert c.wait(timeout=10) == 137
    assert p.state().status == Status.STOPPED
    assert p.wait(timeout=1) == 137
    c.delete()


def test_force_delete_with_unwaited_exec(create, root):
    c = create(["sleep", "1000"]).c
    c.start()
    p = c.exec(runtime.ExecOpts(process_json(["sleep", "1000"]), runtime.IO()))
    c.delete(force=True)
    assert not pid_alive(p.pid)
    assert leftover_cgroups(f"barerun/{c.id}") == []
    assert not os.path.exists(os.path.join(root, c.id))


def test_exec_into_paused_container_is_refused(sleeper):
    c = sleeper
    c.pause()
    try:
        with pytest.raises(runtime.InvalidState):
            c.exec(runtime.ExecOpts(process_json(["true"]), runtime.IO()))
    finally:
        c.resume()
    assert c.state().status == Status.RUNNING
    # and allowed again once resumed
    p = c.exec(runtime.ExecOpts(process_json(["true"]), runtime.IO()))
    assert p.wait(timeout=10) == 0


# ------------------------------------------------------------------ kill --all


def test_kill_all_reaps_every_process(create):
    c = create(["sh", "-c", "sleep 1000 & sleep 1000 & sleep 1000 & wait"]).c
    c.start()
    pids = wait_for(lambda: (lambda p: p if len(p) == 4 else None)(c.processes()),
                    what="init + 3 background sleeps")
    assert c.pid in pids
    c.kill(signal.SIGKILL, all=True)
    assert c.wait(timeout=10) == 137
    wait_for(lambda: c.processes() == [], timeout=5, what="every process to be gone")
    for pid in pids:
        assert not pid_alive(pid)
    assert c.state().status == Status.STOPPED


# ------------------------------------------------------------------ terminals


def test_terminal_console_size_and_resize(root, bundle, new_id, tmp_path):
    def modify(spec):
        spec["process"]["terminal"] = True
        spec["process"]["consoleSize"] = {"height": 30, "width": 100}

    b = bundle(["sh", "-c", "stty size; echo tty=$(tty); read x; stty size; echo done"], modify)
    r, w = os.pipe()
    out = str(tmp_path / "tty.out")
    try:
        c = root.track(runtime.create(new_id(), b, root=root,
                                      io=runtime.IO(stdin=r, stdout=out, terminal=True)))
        os.close(r)
        r = None
        c.start()
        wait_for(lambda: "30 100" in read_file(out), what="stty size 30 100")
        wait_for(lambda: "tty=" in read_file(out), what="the tty name")
        assert "tty=/dev/pts/" in read_file(out)
        c.pty(0, ConsoleSize(width=80, height=24))
        os.write(w, b"go\n")
        assert c.wait(timeout=10) == 0
        text = read_file(out)
        after = text.split("go", 1)[1]  # the terminal echoes what was typed
        assert "24 80" in after, text
        assert "done" in after, text
    finally:
        if r is not None:
            os.close(r)
        os.close(w)


def test_exec_with_terminal(sleeper, tmp_path):
    c = sleeper
    r, w = os.pipe()
    out = str(tmp_path / "exec-tty.out")
    try:
        p = c.exec(runtime.ExecOpts(
            process_json(["sh", "-c", "stty size; read x; stty size; test -t 0 && echo tty0"],
                         terminal=True, size=(40, 120)),
            runtime.IO(stdin=r, stdout=out, terminal=True)))
        os.close(r)
        r = None
        wait_for(lambda: "40 120" in read_file(out), what="stty size 40 120")
        c.pty(p.pid, ConsoleSize(width=90, height=33))
        os.write(w, b"x\n")
        assert p.wait(timeout=10) == 0
        text = read_file(out)
        assert "33 90" in text.split("40 120", 1)[1], text
        assert "tty0" in text
    finally:
        if r is not None:
            os.close(r)
        os.close(w)


def test_pty_without_terminal_is_refused(sleeper):
    with pytest.raises(runtime.NotFound):
        sleeper.pty(0, ConsoleSize(width=80, height=24))


# ------------------------------------------------------------------ close_stdin


def test_close_stdin_of_init(create):
    r, w = os.pipe()
    try:
        o = create(["cat"], stdin=r)
        os.close(r)
        r = None
        c = o.c
        c.start()
        os.write(w, b"hello\n")
        # our own write end stays open: only close_stdin can give cat EOF
        with pytest.raises(TimeoutError):
            c.wait(timeout=0.2)
        c.close_stdin(0)
        assert c.wait(timeout=10) == 0
        assert o.stdout() == "hello\n"
    finally:
        if r is not None:
            os.close(r)
        os.close(w)


def test_close_stdin_of_exec(sleeper, tmp_path):
    c = sleeper
    r, w = os.pipe()
    out = str(tmp_path / "cat.out")
    try:
        p = c.exec(runtime.ExecOpts(process_json(["cat"]), runtime.IO(stdin=r, stdout=out)))
        os.close(r)
        r = None
        os.write(w, b"hello\n")
        with pytest.raises(TimeoutError):
            p.wait(timeout=0.2)
        c.close_stdin(p.pid)
        assert p.wait(timeout=10) == 0
        assert read_file(out) == "hello\n"
        assert c.state().status == Status.RUNNING
    finally:
        if r is not None:
            os.close(r)
        os.close(w)


# ------------------------------------------------------------------ CLI


def test_cli_operations(root, bundle, new_id, tmp_path):
    cid = new_id()
    b = bundle(["sh", "-c", "sleep 1000 & wait"])
    log = open(tmp_path / "container.out", "w")
    try:
        def run_cli(*args, **kw):
            # the container inherits the CLI's fds: never a pipe we wait on
            return subprocess.run([BARERUN, "--root", root, *args], stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=log, timeout=30, **kw)

        assert run_cli("run", "-d", cid, cwd=b).returncode == 0, read_file(tmp_path / "container.out")
        st = json.loads(cli(root, "state", cid).stdout)
        assert st["status"] == "running"
        init = st["pid"]
        assert init > 0

        r = cli(root, "pause", cid)
        assert r.returncode == 0, r.stderr
        assert json.loads(cli(root, "state", cid).stdout)["status"] == "paused"
        r = cli(root, "exec", cid, "true")
        assert r.returncode == 1 and "paused" in r.stderr and "Traceback" not in r.stderr
        r = cli(root, "resume", cid)
        assert r.returncode == 0, r.stderr
        assert json.loads(cli(root, "state", cid).stdout)["status"] == "running"

        r = cli(root, "ps", "--format", "json", cid)
        assert r.returncode == 0, r.stderr
        pids = json.loads(r.stdout)
        assert isinstance(pids, list) and all(isinstance(p, int) for p in pids)
        assert init in pids

        assert run_cli("exec", cid, "sh", "-c", "exit 3").returncode == 3

        pid_file = str(tmp_path / "exec.pid")
        assert run_cli("exec", "--detach", "--pid-file", pid_file, cid,
                       "sleep", "5").returncode == 0
        text = read_file(pid_file)
        assert text.isdigit() and not text.endswith("\n"), repr(text)
        assert int(text) in json.loads(cli(root, "ps", "--format", "json", cid).stdout)

        r = cli(root, "kill", "--all", cid, "9")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: json.loads(cli(root, "state", cid).stdout)["status"] == "stopped",
                 what="the container to stop")
        wait_for(lambda: not pid_alive(init), what="the init to be gone")
        assert not pid_alive(int(text))

        r = cli(root, "delete", cid)
        assert r.returncode == 0, r.stderr
        assert not os.path.exists(os.path.join(root, cid))
        assert leftover_cgroups(f"barerun/{cid}") == []
        r = cli(root, "state", cid)
        assert r.returncode == 1 and "does not exist" in r.stderr
    finally:
        log.close()
