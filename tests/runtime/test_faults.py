"""Fault injection: barerun and CRIU SIGKILLed at every step of a
checkpoint, and barerun at moments of create, run and exec.

What must hold after any kill: the container is not lost (it runs as it
did, paused stays paused, or it is stopped and its image is complete and
restores), it is never left frozen, `barerun checkpoint` never hangs, and
`delete --force` leaves nothing behind (the cli fixture checks state,
cgroups and processes).  The checkpoint's own steps are reached
deterministically (BARERUN_STOP_AT stops barerun there, the test kills
it); CRIU, and barerun between steps, are killed after fixed delays
spread over the dump, each case checking every outcome it may meet."""

import errno
import json
import os
import signal
import subprocess
import time

import pytest

from lowlevel import cgroups
from runtime.checkpoint import read_checkpoint
from runtime.errors import NotFound
from tests.conftest import criu_needs_unfiltered, pid_alive, wait_for
from tests.runtime.test_cli import (  # noqa: F401 - fixtures used by name
    TIMEOUT, cli, cli_rootfs, subreaper)

def _process_state(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return data[data.rindex(b")") + 2:][:1].decode()


def _lease(cli, cid):
    try:
        with open(os.path.join(cli.root, cid, "state.json")) as f:
            return json.load(f).get("checkpoint")
    except (OSError, ValueError):
        return None


def _freezer(cid):
    """The container's freezer as the kernel has it: "FROZEN"/"THAWED"."""
    cg = cgroups.Cgroup(f"barerun/{cid}")
    return cg.state() if cg.exists() else ""


def _running(cli):
    # stdio the container's own /dev/null: the caller's files lie on a host
    # mount CRIU cannot dump
    cid, pid, b = cli.create(["sh", "-c", "exec </dev/null >/dev/null 2>&1; exec sleep 600"])
    cli("start", cid).ok()
    return cid, pid, b


def _settle(cli, cid, lease):
    """Wait until nothing of the killed checkpoint runs any more: the
    CRIU it started (which finishes or undoes its dump on its own)."""
    holder = (lease or {}).get("criu")
    if holder:
        wait_for(lambda: not pid_alive(holder[0]), timeout=TIMEOUT,
                 what=f"the orphaned criu (pid {holder[0]}) to finish")


def _killed_by_sigtrap(pid):
    """The init (re-parented to this subreaper) was killed by SIGTRAP:
    CRIU's parasite code was inside it when CRIU was killed (its last
    instruction traps for the tracer, who is gone), which no runtime can
    undo; read without reaping it."""
    try:
        res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return (res is not None and res.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
            and res.si_status == signal.SIGTRAP)


def _assert_nothing_lost(cli, cid, bundle, image, *, paused=False, init=None,
                         criu_killed=False):
    """After a killed checkpoint: either the container is as it was, and
    the image is complete or says it is incomplete; or it is stopped and
    the image is complete and restores.  ``criu_killed``: CRIU was killed
    outright, and the one loss it can cause itself (its parasite inside
    the init, SIGTRAP) is told apart from barerun losing the container."""
    r = cli("state", cid)  # also undoes a stale lease
    if r.rc != 0 and "does not exist" in r.err:
        # killed in the delete that follows a finished exit-mode checkpoint
        read_checkpoint(image)
        return
    st = json.loads(r.ok().out)
    if st["pid"]:
        cli.pids.add(st["pid"])
    assert _lease(cli, cid) is None, "the killed checkpoint's lease is still there"
    try:
        desc = read_checkpoint(image)
    except NotFound as exc:
        desc = None
        assert "incomplete checkpoint" in str(exc) or "not a barerun checkpoint" in str(exc), \
            str(exc)
    if st["status"] == "stopped":
        if desc is None and criu_killed and init and _killed_by_sigtrap(init):
            return  # CRIU's own limit (see _killed_by_sigtrap), not barerun's
        assert desc is not None, "the container was stopped and its image is not complete"
        new = cli.new_id()
        cli("restore", "-d", "--image-path", image, "--bundle", bundle, new, cwd=bundle).ok()
        assert cli.state(new)["status"] == "running"
        return
    want = "paused" if paused else "running"
    assert st["status"] == want, f"the container is {st['status']}, it was {want}"
    assert _freezer(cid) == ("FROZEN" if paused else "THAWED")
    assert pid_alive(st["pid"])


def _kill_at(cli, cid, image, point, *extra):
    env = dict(os.environ, BARERUN_STOP_AT=point)
    p, _out, err = cli.spawn("checkpoint", "--image-path", image, *extra, cid, env=env)
    wait_for(lambda: _process_state(p.pid) == "T" or p.poll() is not None, timeout=TIMEOUT,
             what=f"barerun checkpoint to stop at {point}")
    assert p.poll() is None, f"checkpoint ended before {point}: {open(err).read()}"
    lease = _lease(cli, cid)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    return lease


POINTS = ["checkpoint-leased", "checkpoint-post-dump", "checkpoint-marked",
          "checkpoint-dumped"]


@criu_needs_unfiltered
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("mode", ["exit", "leave-running"])
def test_barerun_killed_at_a_checkpoint_step_loses_nothing(cli, tmp_path, point, mode):
    cid, _pid, b = _running(cli)
    image = str(tmp_path / "image")
    extra = ("--leave-running",) if mode == "leave-running" else ()
    lease = _kill_at(cli, cid, image, point, *extra)
    assert lease is not None and lease["by"], "no lease while the checkpoint ran"
    _settle(cli, cid, lease)
    _assert_nothing_lost(cli, cid, b, image)
    if point == "checkpoint-leased":
        with pytest.raises(NotFound, match="incomplete checkpoint"):
            read_checkpoint(image)
    if point == "checkpoint-dumped":
        read_checkpoint(image)  # complete


@criu_needs_unfiltered
@pytest.mark.parametrize("point", ["checkpoint-leased", "checkpoint-post-dump"])
def test_a_paused_container_stays_paused_after_a_killed_checkpoint(cli, tmp_path, point):
    cid, _pid, b = _running(cli)
    cli("pause", cid).ok()
    image = str(tmp_path / "image")
    lease = _kill_at(cli, cid, image, point, "--leave-running")
    _settle(cli, cid, lease)
    _assert_nothing_lost(cli, cid, b, image, paused=True)


@criu_needs_unfiltered
def test_a_checkpoint_in_progress_makes_pause_refuse_not_hang(cli, tmp_path):
    cid, _pid, _b = _running(cli)
    image = str(tmp_path / "image")
    env = dict(os.environ, BARERUN_STOP_AT="checkpoint-leased")
    p, _out, _err = cli.spawn("checkpoint", "--image-path", image, "--leave-running", cid,
                              env=env)
    try:
        wait_for(lambda: _process_state(p.pid) == "T", timeout=TIMEOUT,
                 what="barerun checkpoint to stop at checkpoint-leased")
        r = cli("pause", cid)
        assert r.rc == 1 and "checkpoint" in r.err and "in progress" in r.err, r
        assert len(r.err.strip().splitlines()) == 1, r.err
        os.kill(p.pid, signal.SIGCONT)
        assert p.wait(timeout=TIMEOUT) == 0
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    assert cli.state(cid)["status"] == "running"
    read_checkpoint(image)


def _spawn_and_kill_criu(cli, cid, image, delay, *extra):
    p, _out, err = cli.spawn("checkpoint", "--image-path", image, *extra, cid)
    holder = wait_for(lambda: (_lease(cli, cid) or {}).get("criu") or p.poll() is not None,
                      timeout=TIMEOUT, what="checkpoint to start criu")
    assert p.poll() is None, f"checkpoint ended before criu ran: {open(err).read()}"
    time.sleep(delay)
    try:
        os.kill(holder[0], signal.SIGKILL)
    except ProcessLookupError:
        pass
    rc = p.wait(timeout=TIMEOUT)  # never hangs
    return rc, open(err).read()


DELAYS = [0, 0.005, 0.01, 0.02, 0.03, 0.035, 0.04, 0.05, 0.08, 0.12, 0.2]


@criu_needs_unfiltered
@pytest.mark.parametrize("delay", DELAYS)
@pytest.mark.parametrize("mode", ["exit", "leave-running"])
def test_criu_killed_during_a_dump_loses_nothing(cli, tmp_path, delay, mode):
    cid, pid, b = _running(cli)
    image = str(tmp_path / "image")
    extra = ("--leave-running",) if mode == "leave-running" else ()
    rc, err = _spawn_and_kill_criu(cli, cid, image, delay, *extra)
    if rc != 0:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "criu" in err, err
    if rc == 0 and mode == "exit":
        return  # CRIU had finished: checkpointed and deleted as asked
    _assert_nothing_lost(cli, cid, b, image, init=pid, criu_killed=True)


@criu_needs_unfiltered
@pytest.mark.parametrize("delay", DELAYS[1:])
def test_barerun_killed_during_a_dump_loses_nothing(cli, tmp_path, delay):
    cid, _pid, b = _running(cli)
    image = str(tmp_path / "image")
    p, _out, _err = cli.spawn("checkpoint", "--image-path", image, cid)
    wait_for(lambda: (_lease(cli, cid) or {}).get("criu") or p.poll() is not None,
             timeout=TIMEOUT, what="checkpoint to start criu")
    lease = _lease(cli, cid)
    time.sleep(delay)
    p.kill()
    rc = p.wait()
    if rc == 0:
        return  # it had finished: checkpointed and deleted as asked
    _settle(cli, cid, lease)
    _assert_nothing_lost(cli, cid, b, image)


# ---------------------------------------------------------------- create, run, exec


@pytest.mark.parametrize("delay", [0.005, 0.01, 0.02, 0.04, 0.08])
@pytest.mark.parametrize("command", ["create", "run"])
def test_barerun_killed_during_create_leaves_nothing_after_delete(cli, delay, command):
    """Whatever a killed create/run made, delete --force removes it (the
    fixture's cleanup checks state, cgroups and processes)."""
    cid = cli.new_id()
    b = cli.bundle(["sleep", "600"])
    args = [command, "--bundle", b] + (["-d"] if command == "run" else []) + [cid]
    p, _out, _err = cli.spawn(*args, cwd=b)
    time.sleep(delay)
    p.kill()
    p.wait()
    r = cli("state", cid)
    assert "Traceback" not in r.err, r.err
    if r.rc == 0:
        pid = json.loads(r.out).get("pid")
        if pid:
            cli.pids.add(pid)


@pytest.mark.parametrize("delay", [0.005, 0.01, 0.02, 0.04, 0.08])
def test_barerun_killed_during_exec_leaves_the_container_running(cli, delay):
    cid, pid, _b = _running(cli)
    p, _out, _err = cli.spawn("exec", cid, "sleep", "600")
    time.sleep(delay)
    p.kill()
    p.wait()
    st = cli.state(cid)
    assert st["status"] == "running" and st["pid"] == pid
    assert _freezer(cid) == "THAWED"
    r = cli("exec", cid, "true")
    assert r.rc == 0, r


@criu_needs_unfiltered
@pytest.mark.parametrize("paused", [True, False], ids=["paused", "running"])
def test_a_failed_dump_leaves_the_freezer_as_it_was(cli, tmp_path, paused):
    """CRIU refuses this container (its stdout is a file on a host mount it
    cannot dump): a paused container stays paused, a running one runs."""
    cid, pid, _b = cli.create(["sleep", "600"])
    cli("start", cid).ok()
    if paused:
        cli("pause", cid).ok()
    image = str(tmp_path / "image")
    r = cli("checkpoint", "--image-path", image, cid)
    assert r.rc == 1 and "criu dump failed" in r.err, r
    assert len(r.err.strip().splitlines()) == 1, r.err
    st = cli.state(cid)
    assert st["status"] == ("paused" if paused else "running") and st["pid"] == pid
    assert _freezer(cid) == ("FROZEN" if paused else "THAWED")
    assert _lease(cli, cid) is None
    with pytest.raises(NotFound, match="incomplete checkpoint"):
        read_checkpoint(image)


@criu_needs_unfiltered
@pytest.mark.parametrize("mode", ["exit", "leave-running"])
def test_a_full_image_filesystem_after_the_dump_names_the_file(cli, tmp_path, mode):
    """The image filesystem fills up once CRIU has written every image,
    before barerun marks it complete: the error names barerun.json and
    the space it lacked, the container runs on, the image says incomplete."""
    cid, pid, b = _running(cli)
    image = str(tmp_path / "image")
    os.mkdir(image)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", image], check=True)
    try:
        env = dict(os.environ, BARERUN_STOP_AT="checkpoint-post-dump")
        extra = ("--leave-running",) if mode == "leave-running" else ()
        p, _out, err = cli.spawn("checkpoint", "--image-path", image, *extra, cid, env=env)
        wait_for(lambda: _process_state(p.pid) == "T" or p.poll() is not None,
                 timeout=TIMEOUT, what="barerun checkpoint to stop at checkpoint-post-dump")
        assert p.poll() is None, open(err).read()
        with open(os.path.join(image, "filler"), "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        os.kill(p.pid, signal.SIGCONT)
        assert p.wait(timeout=TIMEOUT) == 1
        text = open(err).read()
        assert len(text.strip().splitlines()) == 1, text
        assert f"{image}/barerun.json" in text and "No space left on device" in text, text
        st = cli.state(cid)
        assert st["status"] == "running" and st["pid"] == pid
        assert _freezer(cid) == "THAWED"
        with pytest.raises(NotFound, match="incomplete checkpoint"):
            read_checkpoint(image)
    finally:
        subprocess.run(["umount", "-l", image], check=False)
