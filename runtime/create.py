"""create: from an OCI bundle to an init process waiting before execve.

Parent side, in order (each step traced through the lowlevel calls):

1. check the id, read and check config.json (nothing made yet);
2. make <root>/<id>/ and lock it; write a first state.json naming the
   cgroup, so `delete --force` can clean up after a runtime killed here;
3. make the cgroup in every hierarchy and write the resource limits;
4. make the exec fifo the init will wait on;
5. fork the init (launch.fork): for a new pid namespace the parent itself
   unshares CLONE_NEWPID, so its next child becomes pid 1 of that
   namespace and stays the parent's own child (wait() can reap it), then
   goes back to its own pid namespace; the child does the rest (init.py);
6. serve the sync channel (launch.Channel): the child's trace, the
   "hooks" step (prestart and createRuntime hooks run here, see hooks.py),
   then "ready", or the failed step with errno/path;
7. record pid + start time in state.json: status CREATED.

Any failure undoes everything made so far: nothing is left behind.
"""

import os

from lowlevel import cgroups, execstub, tracing
from lowlevel import namespaces as N
from lowlevel import pidfd as P
from lowlevel.record import Record

from . import io as _io
from . import launch, resources
from . import seccomp as _seccomp
from .container import Container
from .errors import ContainerError, InvalidSpec, os_message
from .init import run_init
from .spec import load_bundle, sysctl_namespace
from .store import Store, rfc3339_now


class InitPlan(Record):
    """What the forked init needs: everything decided before the fork.

    spec, process, report_fd (the child's end of the sync channel),
    fifo_path (start waits on it), cgroup, stdio (fds for 0, 1, 2);
    preserve_fds, console (console.Channel when
    process.terminal), close_fds (parent-only fds to close first: the state
    lock), joined_unified (forked straight into the v2 cgroup), seccomp (a
    built lowlevel seccomp.Filter; the init loads it), stub_fd (the sealed
    exec stub the init execs its program through), sync_in (where the
    parent's answers to the child's steps arrive).
    """
    _fields = ("spec", "process", "report_fd", "fifo_path", "cgroup", "stdio",
               "preserve_fds", "console", "close_fds", "joined_unified", "seccomp", "stub_fd",
               "sync_in")
    _defaults = {"preserve_fds": 0, "console": None, "close_fds": (),
                 "joined_unified": False, "seccomp": None, "sync_in": None}
    __slots__ = _fields


def check_joined_sysctl_namespaces(spec):
    """linux.sysctl with a namespace joined by path: that namespace must
    not be the host's own (the runtime's), or the write would change the
    host's sysctl (as runc refuses it)."""
    for key in spec.sysctl:
        kind = sysctl_namespace(key)
        path = spec.namespaces.get(kind)
        if not path:
            continue
        try:
            theirs = os.stat(path)
        except OSError as exc:
            raise InvalidSpec("linux.namespaces", f"{kind} namespace {path}: "
                              f"{exc.strerror}") from None
        ours = os.stat(f"/proc/self/ns/{N.ns_name(kind)}")
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
            raise InvalidSpec(f"linux.sysctl.{key}", f"the {kind} namespace {path} is "
                              "the host's: the sysctl would change the host")


def fork_init(plan):
    """Fork the container's init (init.run_init in the child); returns its
    host pid.  A new pid namespace, or the one named by path, is entered
    for the child only (launch.fork)."""
    ns = plan.spec.namespaces

    def child(joined):
        plan.joined_unified = joined
        for fd in plan.close_fds:
            os.close(fd)  # a held flock would outlive the parent
        _io.set_child_stdio(plan.stdio)
        run_init(plan)

    pidns = (ns["pid"] or "") if "pid" in ns else None  # "": a new one
    pid, plan.joined_unified = launch.fork(child, cgroup=plan.cgroup, pidns=pidns)
    return pid


def create(cid, bundle, **kwargs):
    """Create container ``cid`` from ``bundle``; see runtime.create.  Every
    trace record made meanwhile names the container."""
    with tracing.Container(cid):
        return _create(cid, bundle, **kwargs)


def _create(cid, bundle, *, root=None, io=None, checkpoint=None, pid_file=None,
            preserve_fds=0, console_socket=None, restore_options=None):
    store = Store(root, cid)
    spec = load_bundle(bundle)
    if checkpoint is not None:
        from .checkpoint import prepare_restore  # not loaded by a plain create
        opts = dict(restore_options or {})
        if preserve_fds and "preserve_fds" not in opts:
            opts["preserve_fds"] = preserve_fds
        state, plan = prepare_restore(store, spec, checkpoint, io=io, pid_file=pid_file,
                                      console_socket=console_socket, options=opts)
        return Container(store, state, spec=spec, restore_plan=plan)
    if spec.process.terminal and console_socket is None and (
            io is None or getattr(io, "stdin", None) == "inherit"):
        raise InvalidSpec("process.terminal", "a terminal needs a --console-socket "
                          "(or, in the library, an IO to relay it to)")
    check_joined_sysctl_namespaces(spec)
    # linux.seccomp: built now, so a rule libseccomp refuses is refused
    # before anything is made; the init inherits it and loads it
    sfilter = _seccomp.build(spec.seccomp) if spec.seccomp is not None else None
    store.create()
    cg = None
    pid = None
    stdio = None
    sync = None
    try:
        store.lock()
        cgpath = resources.cgroup_path(spec, cid)
        state = {
            "id": cid, "status": "creating", "pid": 0, "start_time": 0,
            "bundle": spec.bundle, "rootfs": spec.rootfs, "cgroup": cgpath,
            "created": rfc3339_now(),
            "annotations": spec.annotations, "owner": "",
        }
        if spec.seccomp is not None:
            # exec'd processes get the container's filter (as runc)
            state["seccomp"] = spec.raw["linux"]["seccomp"]
        if spec.hooks:
            # start and delete run poststart/poststop from here
            state["hooks"] = spec.raw["hooks"]
            state["oci_version"] = spec.oci_version
        store.write(state)
        cg = cgroups.Cgroup(cgpath)
        cg.create()
        resources.apply(cg, spec.resources)
        os.mkfifo(store.fifo_path, 0o600)
        chan = None
        if spec.process.terminal:
            from .console import Channel
            chan = Channel(console_socket)
            stdio = _io.open_stdio(None)
        else:
            stdio = _io.open_stdio(io)
        sync = launch.Channel()
        plan = InitPlan(console=chan, spec=spec, process=spec.process, report_fd=sync.child,
                        fifo_path=store.fifo_path, cgroup=cg, stdio=stdio.child,
                        preserve_fds=preserve_fds, close_fds=(store.lock_fd, *sync.parent_ends()),
                        seccomp=sfilter, stub_fd=execstub.stub_fd(), sync_in=sync.child_in)
        pid = fork_init(plan)
        sync.close_child_end()
        stdio.close_child_side()
        if chan is not None:
            chan.after_fork()
        def create_hooks(_msg):
            # the init's namespaces and mounts exist, pivot_root not yet done
            from . import hooks
            st = hooks.state_json(cid, "creating", pid, spec.bundle, spec.annotations,
                                  spec.oci_version)
            for stage in ("prestart", "createRuntime"):
                if spec.hooks.get(stage):
                    hooks.run(spec.hooks[stage], st)
            return {"state": st}

        sync.serve(pid, on={"hooks": create_hooks})
        console = launch.start_console(chan, io)
        state.update(status="created", pid=pid, start_time=P.start_time(pid))
        store.write(state)
        if pid_file:
            launch.write_pid_file(pid_file, pid)
        stdio.start()
        c = Container(store, state, spec=spec)
        c.attach_init(pid, stdio, console)
        store.unlock()
        return c
    except BaseException as exc:
        _undo(store, cg, pid, stdio)
        if isinstance(exc, OSError) and not isinstance(exc, ContainerError):
            raise ContainerError(f"create {cid}: {os_message(exc)}") from None
        raise
    finally:
        if sync is not None:
            sync.close()
        if sfilter is not None:
            sfilter.release()  # the init has its own copy


def _undo(store, cg, pid, stdio):
    """A failed create leaves nothing: process, cgroup, state dir."""
    launch.kill_and_reap(pid)
    if stdio is not None:
        stdio.discard()
    if cg is not None:
        launch.discard_cgroup(cg)
    store.remove()
