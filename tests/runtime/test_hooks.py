"""OCI hooks, all six stages, with real containers: the order, where each
runs (namespaces, which root its path resolves in), the state on stdin,
env/args/timeout, and what a failure does at each stage."""

import json
import os
import sys

import pytest

import runtime

PY = sys.executable  # a host program: prestart/createRuntime/createContainer/poststart/poststop

# a hook that appends what it was given and where it ran to a log file
RECORD = r"""
import json, os, sys
state = json.load(sys.stdin)
rec = {"stage": sys.argv[1], "status": state["status"], "pid": state["pid"],
       "id": state["id"], "bundle": state["bundle"],
       "env": {k: v for k, v in os.environ.items() if k != "LC_CTYPE"},  # set by Python itself
       "argv0": sys.argv[0], "uts": os.readlink("/proc/self/ns/uts"),
       "mnt": os.readlink("/proc/self/ns/mnt"), "annotations": state.get("annotations")}
with open(sys.argv[2], "a") as f:
    f.write(json.dumps(rec) + "\n")
"""


def _hook(stage, log, **extra):
    return {"path": PY, "args": [PY, "-c", RECORD, stage, log], "env": ["HOOK=yes"], **extra}


def _log(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def test_every_stage_runs_in_order_where_the_spec_says(create, tmp_path):
    log = str(tmp_path / "hooks.log")

    def m(spec):
        spec["annotations"] = {"org.example": "yes"}
        spec["hooks"] = {stage: [_hook(stage, log)] for stage in
                         ("prestart", "createRuntime", "createContainer", "poststart",
                          "poststop")}
        # startContainer resolves in the container: busybox sh, its state
        # kept in the container's /dev/shm for the program to print
        spec["hooks"]["startContainer"] = [
            {"path": "/bin/sh", "args": ["sh", "-c", "cat > /dev/shm/start-state"]}]
    o = create(["cat", "/dev/shm/start-state"], m)
    c = o.c
    got = _log(log)
    assert [r["stage"] for r in got] == ["prestart", "createRuntime", "createContainer"]
    host_uts = os.readlink("/proc/self/ns/uts")
    container_uts = os.readlink(f"/proc/{c.pid}/ns/uts")
    for r in got:
        assert r["status"] == "creating" and r["pid"] == c.pid and r["id"] == c.id
        assert r["env"] == {"HOOK": "yes"} and r["argv0"] == "-c"
        assert r["annotations"] == {"org.example": "yes"}
        assert os.path.samefile(r["bundle"], c.bundle)
    # prestart and createRuntime in the runtime's namespaces, createContainer
    # in the container's
    assert got[0]["uts"] == got[1]["uts"] == host_uts
    assert got[2]["uts"] == container_uts != host_uts
    assert got[2]["mnt"] == os.readlink(f"/proc/{c.pid}/ns/mnt")
    c.start()
    assert c.wait(timeout=10) == 0
    started = json.loads(o.stdout())
    assert started["status"] == "created" and started["id"] == c.id
    got = _log(log)
    assert got[3]["stage"] == "poststart" and got[3]["status"] == "running"
    c.delete()
    got = _log(log)
    assert [r["stage"] for r in got][4:] == ["poststop"]
    assert got[4]["status"] == "stopped"


@pytest.mark.parametrize("stage", ["prestart", "createRuntime", "createContainer"])
def test_a_failing_hook_of_create_fails_it_naming_the_hook(create, tmp_path, stage):
    """The create fails with the hook's field, its status and its last
    words on stderr; nothing is left (the root fixture checks)."""
    def m(spec):
        spec["hooks"] = {stage: [
            {"path": "/bin/sh", "args": ["sh", "-c", "echo first >&2; echo no way >&2; exit 3"]}]}
    with pytest.raises(runtime.ContainerError) as ei:
        create(["true"], m)
    text = str(ei.value)
    assert f"hooks.{stage}[0]" in text and "exit status 3" in text and "no way" in text, text
    assert "\n" not in text


def test_a_hook_past_its_timeout_is_killed_and_fails_create(create):
    def m(spec):
        spec["hooks"] = {"createRuntime": [
            {"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}
    with pytest.raises(runtime.ContainerError) as ei:
        create(["true"], m)
    assert "hooks.createRuntime[0]" in str(ei.value) and "timeout of 1 s" in str(ei.value)


def test_a_hook_that_cannot_run_is_named(create):
    def m(spec):
        spec["hooks"] = {"prestart": [{"path": "/nonexistent/hook"}]}
    with pytest.raises(runtime.ContainerError) as ei:
        create(["true"], m)
    assert "hooks.prestart[0]" in str(ei.value) and "/nonexistent/hook" in str(ei.value)


def test_a_failing_poststart_or_poststop_hook_is_a_warning(create, capfd):
    def m(spec):
        fail = {"path": "/bin/false"}
        spec["hooks"] = {"poststart": [fail], "poststop": [fail]}
    o = create(["true"], m)
    c = o.c
    c.start()
    assert c.wait(timeout=10) == 0
    c.delete()
    err = capfd.readouterr().err
    assert "warning: hooks.poststart[0]" in err and "warning: hooks.poststop[0]" in err, err


def test_a_failing_start_container_hook_ends_the_init(create):
    def m(spec):
        spec["hooks"] = {"startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", "echo refused >&2; exit 4"]}]}
    o = create(["echo", "the program ran"], m)
    o.c.start()
    assert o.c.wait(timeout=10) == 1
    assert "the program ran" not in o.stdout()
    assert "hooks.startContainer[0]" in o.stderr() and "refused" in o.stderr()


@pytest.mark.parametrize("hooks, field", [
    ({"prestart": [{"path": "relative"}]}, "hooks.prestart[0].path"),
    ({"nosuch": []}, "hooks.nosuch"),
    ({"poststop": [{"path": "/bin/true", "timeout": 0}]}, "hooks.poststop[0].timeout"),
    ({"poststop": [{"path": "/bin/true", "args": [1]}]}, "hooks.poststop[0].args[0]"),
    ({"poststop": {"path": "/bin/true"}}, "hooks.poststop"),
])
def test_a_bad_hook_is_refused_naming_its_field(create, hooks, field):
    def m(spec):
        spec["hooks"] = hooks
    with pytest.raises(runtime.InvalidSpec) as ei:
        create(["true"], m)
    assert field in str(ei.value), str(ei.value)
