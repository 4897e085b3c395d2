"""A container's life: create -> start -> wait -> delete, and the
operations each status refuses.  Real containers (busybox), run as root."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import runtime
from runtime import Status
from tests.conftest import leftover_cgroups, pid_alive


def assert_gone(root, cid, pid=None, cgroup=None):
    """Nothing of container ``cid`` is left: state dir, cgroup, process."""
    assert not os.path.exists(os.path.join(root, cid)), "state dir left"
    assert leftover_cgroups(cgroup or f"barerun/{cid}") == []
    if pid:
        assert not pid_alive(pid), f"init pid {pid} still alive"
    with pytest.raises(runtime.NotFound):
        runtime.load(cid, root=root)


def test_create_start_wait_delete(create, root):
    o = create(["sh", "-c", "read x; echo out-$x; echo err >&2; exit 3"], stdin=None)
    c = o.c
    st = c.state()
    assert st.status == Status.CREATED
    assert st.pid > 0
    # the init is waiting (not yet exec'd): the program has not run
    assert pid_alive(st.pid)
    assert os.path.exists(os.path.join(root, c.id, "exec.fifo"))
    assert o.stdout() == ""
    c.start()
    assert c.state().status in (Status.RUNNING, Status.STOPPED)
    assert c.wait(timeout=10) == 3
    assert c.state() == runtime.State(Status.STOPPED, 0)
    assert o.stdout() == "out-\n"  # stdin None is /dev/null: `read` gets EOF
    assert o.stderr() == "err\n"
    pid = st.pid
    c.delete()
    assert_gone(root, c.id, pid)


def test_running_then_sigkill(create, root):
    c = create(["sleep", "60"]).c
    c.start()
    assert c.state().status == Status.RUNNING
    c.kill(signal.SIGKILL)
    assert c.wait(timeout=10) == 128 + 9
    assert c.state().status == Status.STOPPED
    c.delete()
    assert_gone(root, c.id)


def test_kill_by_signal_name_and_sigterm(create):
    # pid 1 of a pid namespace ignores signals it has no handler for, unless
    # SIGKILL/SIGSTOP: the shell traps TERM to exit with a code of its own
    o = create(["sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.01; done"])
    c = o.c
    c.start()
    deadline = time.monotonic() + 5
    while "ready" not in o.stdout() and time.monotonic() < deadline:
        time.sleep(0.005)  # the trap is set once "ready" is written
    c.kill("TERM")
    assert c.wait(timeout=10) == 42


def test_wait_timeout(create):
    c = create(["sleep", "60"]).c
    c.start()
    with pytest.raises(TimeoutError):
        c.wait(timeout=0.05)
    c.kill(9)
    assert c.wait(timeout=10) == 137


def test_load_and_list_see_the_same_container(create, root):
    c = create(["sleep", "60"]).c
    other = runtime.load(c.id, root=root)
    assert other.state() == c.state()
    assert other.state().status == Status.CREATED
    recs = {r.id: r for r in runtime.list_containers(root=root)}
    assert recs[c.id].status == Status.CREATED
    assert recs[c.id].pid == c.state().pid
    assert recs[c.id].bundle == c.bundle
    c.start()
    assert runtime.load(c.id, root=root).state().status == Status.RUNNING
    assert {r.id: r.status for r in runtime.list_containers(root=root)}[c.id] == Status.RUNNING
    c.kill(9)
    c.wait(timeout=10)
    assert runtime.load(c.id, root=root).state().status == Status.STOPPED
    c.delete()
    assert c.id not in {r.id for r in runtime.list_containers(root=root)}


def test_delete_running_without_force_names_status(create, root):
    c = create(["sleep", "60"]).c
    c.start()
    with pytest.raises(runtime.InvalidState) as ei:
        c.delete()
    assert "running" in str(ei.value)
    assert ei.value.status == Status.RUNNING
    assert c.state().status == Status.RUNNING  # untouched
    pid = c.state().pid
    c.delete(force=True)
    assert_gone(root, c.id, pid)


def test_start_twice(create):
    c = create(["sleep", "60"]).c
    c.start()
    with pytest.raises(runtime.InvalidState) as ei:
        c.start()
    assert "running" in str(ei.value)
    c.kill(9)
    c.wait(timeout=10)
    with pytest.raises(runtime.InvalidState) as ei:
        c.start()
    assert "stopped" in str(ei.value)


def test_kill_stopped_container(create):
    c = create(["true"]).c
    c.start()
    assert c.wait(timeout=10) == 0
    with pytest.raises(runtime.ContainerError) as ei:
        c.kill(signal.SIGTERM)
    assert "container not running" in str(ei.value)


def test_duplicate_id(create, bundle, root):
    c = create(["sleep", "60"]).c
    with pytest.raises(runtime.AlreadyExists) as ei:
        runtime.create(c.id, bundle(["true"]), root=root)
    assert c.id in str(ei.value)
    # the first container is untouched
    assert c.state().status == Status.CREATED
    assert os.path.exists(os.path.join(root, c.id, "state.json"))


def test_delete_created_container_leaves_nothing(create, root):
    c = create(["sleep", "60"]).c
    pid = c.state().pid
    c.delete(force=True)
    assert_gone(root, c.id, pid)
    # and a new container may take the id again
    c2 = create(["true"], cid=c.id).c
    c2.start()
    assert c2.wait(timeout=10) == 0
    c2.delete()
    assert_gone(root, c.id)


def test_delete_created_container_from_another_handle(create, root):
    c = create(["sleep", "60"]).c
    pid = c.state().pid
    runtime.load(c.id, root=root).delete(force=True)
    assert_gone(root, c.id, pid)


def test_info_spec_is_config_json(create, bundle):
    b = bundle(["true"], lambda s: s.update(annotations={"org.example/key": "v"}))
    c = create(b).c
    with open(os.path.join(b, "config.json"), "rb") as f:
        raw = f.read()
    info = c.info()
    assert info.id == c.id
    assert info.runtime == "barerun"
    assert info.spec == raw


def test_processes_lists_the_init(create):
    c = create(["sleep", "60"]).c
    c.start()
    assert c.processes() == [c.state().pid]


def test_many_containers_one_root(create, root):
    cs = [create(["sh", "-c", f"exit {i}"]).c for i in range(5)]
    assert {r.id for r in runtime.list_containers(root=root)} == {c.id for c in cs}
    for c in cs:
        c.start()
    assert [c.wait(timeout=10) for c in cs] == list(range(5))
    for c in cs:
        c.delete()
    assert runtime.list_containers(root=root) == []


def test_kill_created_container(create, root):
    c = create(["sleep", "60"]).c
    c.kill(signal.SIGKILL)
    assert c.wait(timeout=10) == 137
    assert c.state().status == Status.STOPPED
    with pytest.raises(runtime.InvalidState):
        c.start()
    c.delete()
    assert_gone(root, c.id)


def test_kill_all_and_unknown_pid(create):
    o = create(["sh", "-c", "sleep 60 & sleep 61 & echo started; wait"])
    c = o.c
    c.start()
    deadline = time.monotonic() + 5
    while len(c.processes()) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    procs = c.processes()
    assert len(procs) == 3
    with pytest.raises(runtime.NotFound):
        c.kill(signal.SIGTERM, pid=os.getpid())  # not one of the container's
    c.kill(signal.SIGKILL, all=True)
    assert c.wait(timeout=10) == 137
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not any(pid_alive(p) for p in procs)


def test_delete_kills_processes_left_without_pid_namespace(create, root):
    """Without its own pid namespace, the init's children outlive it: the
    container is STOPPED but its cgroup is not empty; delete kills them."""
    def m(spec):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] != "pid"]
    c = create(["sh", "-c", "sleep 60 >/dev/null 2>&1 & exit 0"], m).c
    c.start()
    assert c.wait(timeout=10) == 0
    assert c.state().status == Status.STOPPED
    left = c.processes()
    assert len(left) == 1 and pid_alive(left[0])
    c.delete()
    assert_gone(root, c.id)
    deadline = time.monotonic() + 5
    while pid_alive(left[0]) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not pid_alive(left[0])


def test_wait_through_a_loaded_handle(create, root):
    c = create(["sh", "-c", "exit 7"]).c
    c.start()
    other = runtime.load(c.id, root=root)
    assert other.wait(timeout=10) == 7
    assert c.wait(timeout=10) == 7  # the status is recorded in state.json
    assert runtime.load(c.id, root=root).wait(timeout=1) == 7
    c.delete()


# ---------------------------------------------------------------- killed runtime

KILLED_CREATE = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {repo!r})
    import runtime
    C = sys.modules["runtime.create"]
    step = {step!r}

    def die(*a, **k):
        os.kill(os.getpid(), 9)

    if step == "before-state":      # the state dir exists, no state.json yet
        C.Store.write = die
    elif step == "after-cgroup":    # the cgroup exists, no process yet
        C._io.open_stdio = die
    elif step == "after-fork":      # the init was forked, not ready yet
        C.launch.Channel.serve = die
    elif step == "after-ready":     # the init waits for start; no state names it
        C.P.start_time = die
    c = runtime.create({cid!r}, {bundle!r}, root={root!r})
    if step == "after-create":      # CREATED, recorded, init waiting
        die()
""")


@pytest.mark.parametrize("step", ["before-state", "after-cgroup", "after-fork", "after-ready",
                                  "after-create"])
def test_runtime_killed_mid_create_is_cleaned_by_force_delete(step, bundle, root, new_id):
    cid = new_id()
    b = bundle(["sleep", "60"])
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = KILLED_CREATE.format(repo=repo, step=step, cid=cid, bundle=b, root=str(root))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert p.returncode == -9, p.stderr.decode()
    # something was left behind (that is the point) ...
    assert os.path.isdir(os.path.join(root, cid))
    if step != "before-state":
        assert leftover_cgroups(f"barerun/{cid}")
    assert cid in [r.id for r in runtime.list_containers(root=root)]
    c = runtime.load(cid, root=root)
    procs = c.processes()
    if step in ("after-ready", "after-create"):
        assert procs, "the init should still be there"
    # ... and delete --force removes all of it
    c.delete(force=True)
    assert_gone(root, cid)
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(pid_alive(p) for p in procs), f"processes left: {procs}"
