"""The launcher's sync channel, with real forked children."""

import os

import pytest

from runtime import launch
from runtime.errors import ChildError


def _run(child_body, **serve):
    sync = launch.Channel()

    def child(_joined):
        for fd in sync.parent_ends():
            os.close(fd)
        child_body(sync)

    pid, _ = launch.fork(child)
    sync.close_child_end()
    try:
        sync.serve(pid, **serve)
    finally:
        sync.close()
        launch.kill_and_reap(pid)


def test_a_step_is_answered_before_the_child_goes_on():
    seen = []

    def body(sync):
        fd = sync.child
        answer = launch.request(fd, sync.child_in, "maps", uid=1000)
        launch.send(fd, ready=True, got=answer["done"])
        os._exit(0)

    def maps(msg):
        seen.append(msg["uid"])
        return {"done": msg["uid"] + 1}

    _run(body, on={"maps": maps})
    assert seen == [1000]


def test_a_step_the_parent_does_not_know_fails_naming_it():
    def body(sync):
        fd = sync.child
        launch.request(fd, sync.child_in, "no-such-step")
        os._exit(0)

    with pytest.raises(ChildError) as ei:
        _run(body)
    assert "no-such-step" in str(ei.value)


def test_the_childs_error_record_reaches_the_caller_unchanged():
    def body(sync):
        fd = sync.child
        launch.send(fd, error={"step": "mount proc (mounts[0])", "message": "No such device",
                               "errno": 19, "path": "/proc"})
        os._exit(1)

    with pytest.raises(ChildError) as ei:
        _run(body)
    e = ei.value
    assert (e.step, e.errno, e.path) == ("mount proc (mounts[0])", 19, "/proc")
    assert "/proc: No such device" in str(e)


def test_a_child_that_dies_silently_is_reported_with_its_status():
    def body(sync):
        os._exit(3)

    with pytest.raises(ChildError) as ei:
        _run(body)
    assert "exit status 3" in str(ei.value)


def test_a_pid_record_in_the_same_read_as_an_error_is_not_lost():
    """The exec helper's {"pid": N} can arrive in the same read as the
    exec'd process's error: drain must still find it, or that process
    stays an unreaped zombie and its container's init never dies."""
    sync = launch.Channel()

    def child(_joined):
        for fd in sync.parent_ends():
            os.close(fd)
        # one write: both records reach the parent in one read
        os.write(sync.child, b'{"error": {"step": "chdir", "message": "Not a directory"}}\n'
                             b'{"pid": 4242}\n')
        os._exit(0)

    pid, _ = launch.fork(child)
    sync.close_child_end()
    seen: dict = {}
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # both records are in the pipe
        with pytest.raises(ChildError, match="Not a directory"):
            sync.serve(pid, until_exec=True, seen=seen)
        sync.drain(seen)
    finally:
        sync.close()
        launch.kill_and_reap(pid)
    assert seen == {"pid": 4242}
