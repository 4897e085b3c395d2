"""create: from an OCI bundle to an init process waiting before execve.

Parent side, in order (each step traced through the lowlevel calls):

1. check the id, read and check config.json (nothing made yet);
2. make <root>/<id>/ and lock it; write a first state.json naming the
   cgroup, so `delete --force` can clean up after a runtime killed here;
3. make the cgroup in every hierarchy and write the resource limits;
4. make the exec fifo the init will wait on;
5. fork the init: for a new pid namespace the parent itself unshares
   CLONE_NEWPID, so its next child becomes pid 1 of that namespace and
   stays the parent's own child (wait() can reap it), then goes back to
   its own pid namespace; the child does the rest (init.py);
6. read the child's report: "ready", or the failed step with errno/path;
7. record pid + start time in state.json: status CREATED.

Any failure undoes everything made so far: nothing is left behind.
"""

import os
import signal

from lowlevel import cgroups
from lowlevel import execstub
from lowlevel import namespaces as N
from lowlevel import pidfd as P
from lowlevel._record import Record

from . import io as _io
from . import resources
from . import seccomp as _seccomp
from .errors import ChildError, ContainerError, InvalidSpec
from .init import run_init
from .spec import load_bundle, sysctl_namespace
from .store import Store, rfc3339_now, write_file

_own_pidns = None


def own_pidns_fd():
    global _own_pidns
    if _own_pidns is None:
        _own_pidns = N.open_ns("self", "pid")
    return _own_pidns


class InitPlan(Record):
    """What the forked init needs: everything decided before the fork.

    spec, process, report_fd (the child's end of the report pipe),
    fifo_path (start waits on it), cgroup, stdio (fds for 0, 1, 2);
    preserve_fds, console (console.Channel when
    process.terminal), close_fds (parent-only fds to close first: the state
    lock), joined_unified (forked straight into the v2 cgroup), seccomp (a
    built lowlevel seccomp.Filter; the init loads it), stub_fd (the sealed
    exec stub the init execs its program through).
    """
    _fields = ("spec", "process", "report_fd", "fifo_path", "cgroup", "stdio",
               "preserve_fds", "console", "close_fds", "joined_unified", "seccomp", "stub_fd")
    _defaults = {"preserve_fds": 0, "console": None, "close_fds": (),
                 "joined_unified": False, "seccomp": None}
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
    """Fork the container's init; returns its host pid.

    The new pid namespace (or the one named by path) is entered by the
    parent for its children only (pid_for_children), so the fork lands in
    it; the parent then returns to its own.
    """
    ns = plan.spec.namespaces
    switched = False
    if "pid" in ns:
        if ns["pid"]:
            fd = os.open(ns["pid"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                own_pidns_fd()
                N.setns(fd, N.FLAGS["pid"])
            except OSError as exc:
                raise InvalidSpec("linux.namespaces", f"join pid namespace {ns['pid']}: {exc}") from None
            finally:
                os.close(fd)
        else:
            own_pidns_fd()
            N.unshare(N.FLAGS["pid"])
        switched = True
    cgfd = None
    pid = -1
    if plan.cgroup is not None:
        cgfd = plan.cgroup.open_unified_fd()
    try:
        # clone3 with CLONE_INTO_CGROUP: the child starts in its v2 cgroup
        pid, plan.joined_unified = N.fork(cgfd)
        if pid == 0:
            for fd in plan.close_fds:
                os.close(fd)  # a held flock would outlive the parent
            _io.set_child_stdio(plan.stdio)
            run_init(plan)  # never returns
            os._exit(1)
    finally:
        if switched and pid != 0:
            N.setns(own_pidns_fd(), N.FLAGS["pid"])
        if cgfd is not None and pid != 0:
            os.close(cgfd)
    return pid


def read_report(fd, pid, until_exec=False, program=None, seen=None):
    """Read the child's report: returns when it is ready, raises ChildError.

    The report pipe carries JSON lines: {"log": ...} (the child's trace,
    re-emitted here under the child's pid, never on the container's
    stdio), then {"ready": true} or {"error": {...}}.  With ``until_exec``
    (exec'd processes) "ready" is not the end: the pipe is close-on-exec,
    so EOF after "ready" means execve succeeded, and {"exec_errno": N}
    after it is the failed execve (from the exec stub).  A {"pid": N}
    record (the exec helper's child) goes into ``seen``."""
    import json
    buf = b""
    ready = False
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:  # pragma: no cover
            continue
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            msg = json.loads(line)
            if "log" in msg:
                _child_log(pid, msg)
            elif "pid" in msg and seen is not None:
                seen["pid"] = msg["pid"]
            elif msg.get("ready"):
                ready = True
                if not until_exec:
                    return
            elif "exec_errno" in msg:
                err = msg["exec_errno"]
                raise ChildError("exec", f"{program!r}: {os.strerror(err)}", err, program)
            elif "error" in msg:
                e = msg["error"]
                text = e["message"]
                if e.get("path") and e["path"] not in text:
                    text = f"{e['path']}: {text}"
                raise ChildError(e["step"], text, e.get("errno"), e.get("path"))
    if ready:
        return
    # EOF without a word: the child died
    pid = (seen or {}).get("pid", pid)
    try:
        _, status = os.waitpid(pid, 0)
        how = (f"exit status {os.waitstatus_to_exitcode(status)}")
    except ChildProcessError:
        how = "unknown status"
    what = "the exec'd process" if until_exec else "the init process"
    raise ChildError("init", f"{what} (pid {pid}) died before it was ready ({how})")


def _child_log(pid, msg):
    """A log record the child sent over the report pipe, handled by this
    process's loggers as the child's own (its pid, its logger name)."""
    import logging
    level = msg.get("level", logging.DEBUG)
    record = logging.makeLogRecord({
        "name": msg.get("logger", "barerun"), "levelno": level,
        "levelname": logging.getLevelName(level), "msg": msg["log"], "process": pid})
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(level):
        logger.handle(record)


def create(cid, bundle, *, root=None, io=None, checkpoint=None, pid_file=None,
           preserve_fds=0, console_socket=None, restore_options=None):
    """Create container ``cid`` from ``bundle``; see runtime.create."""
    from .container import Container
    store = Store(root, cid)
    spec = load_bundle(bundle)
    if checkpoint is not None:
        from .checkpoint import prepare_restore
        opts = dict(restore_options or {})
        if preserve_fds and "preserve_fds" not in opts:
            opts["preserve_fds"] = preserve_fds
        return prepare_restore(store, spec, checkpoint, io=io, pid_file=pid_file,
                               console_socket=console_socket, options=opts)
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
    r = w = None
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
        r, w = os.pipe2(os.O_CLOEXEC)
        plan = InitPlan(console=chan, spec=spec, process=spec.process, report_fd=w,
                        fifo_path=store.fifo_path, cgroup=cg, stdio=stdio.child,
                        preserve_fds=preserve_fds, close_fds=(store.lock_fd, r),
                        seccomp=sfilter, stub_fd=execstub.stub_fd())
        pid = fork_init(plan)
        os.close(w)
        w = None
        stdio.close_child_side()
        if chan is not None:
            chan.after_fork()
        read_report(r, pid)
        console = None
        if chan is not None:
            master = chan.receive_master()
            if master is not None:
                from .console import Relay
                console = Relay(master, io)
                console.start()
        state.update(status="created", pid=pid, start_time=P.start_time(pid))
        store.write(state)
        if pid_file:
            write_pid_file(pid_file, pid)
        stdio.start()
        c = Container(store, state, spec=spec, child_pid=pid, stdio=stdio)
        c._console = console
        store.unlock()
        return c
    except BaseException as exc:
        _undo(store, cg, pid, stdio)
        if isinstance(exc, OSError) and not isinstance(exc, ContainerError):
            raise ContainerError(f"create {cid}: {exc}") from None
        raise
    finally:
        for fd in (r, w):
            if fd is not None:
                os.close(fd)
        if sfilter is not None:
            sfilter.release()  # the init has its own copy


def _undo(store, cg, pid, stdio):
    """A failed create leaves nothing: process, cgroup, state dir."""
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    if stdio is not None:
        stdio.discard()
    if cg is not None:
        discard_cgroup(cg)
    store.remove()


def discard_cgroup(cg):
    """Kill whatever is in a cgroup made for a failed create/restore and
    remove it; best effort, the caller is already reporting an error."""
    try:
        cg.kill_all(signal.SIGKILL)
    except OSError:
        pass
    try:
        cg.remove()
    except OSError:
        pass


def write_pid_file(path, pid):
    """The pid, no newline (containerd reads it with Atoi), written
    atomically and never through a planted symlink: barerun runs as root
    and the pid file's directory may be one a container can write."""
    write_file(path, str(pid).encode())
