"""exec: a new process inside a running container's namespaces and cgroup.

Two children.  The first is forked into the container's cgroup (clone3
CLONE_INTO_CGROUP) but stays in the host's pid namespace, where no
container process can see it: non-dumpable -> close every inherited fd ->
join the cgroup (v1 hierarchies) -> connect the console socket ->
setns(pidfd, mnt|uts|ipc|net|cgroup|pid) in one call (one setns per
namespace on older kernels; pid applies to its children) -> fork the
second with CLONE_PARENT, so that it is this process's own child ->
report its pid -> exit.  The second is born in the container's pid
namespace with the container's root and cwd and no host fd: its session
and console -> the process spec (rlimits, [seccomp], user, capabilities,
no_new_privs) -> [seccomp with no_new_privs] -> "ready" -> execve through
the sealed stub.  The seccomp filter is the container's (linux.seccomp of
its config.json, kept in its state), as with runc.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from lowlevel import execstub
from lowlevel import namespaces as N
from lowlevel import pidfd as P

from . import io as _io
from . import launch
from . import seccomp as _seccomp
from .errors import ContainerError, InvalidState
from .spec import parse_process, parse_seccomp
from .status import State, Status

TYPE_CHECKING = False  # typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from .console import Relay
    from .container import Container
    from .io import IO, Stdio


@dataclass
class ExecOpts:
    spec: bytes
    io: IO | None = None


class Process:
    """A process exec'd into a container (containerd's Process).

    For the container that made it: ``pidfd``, ``exit_status``, ``reap``
    and ``console`` (the relay of its terminal, or None)."""

    def __init__(self, container: Container, pid: int, pidfd: int, stdio: Stdio | None,
                 console: Relay | None = None) -> None:
        self.container = container
        self.pid = pid
        self._pidfd = pidfd
        self._stdio = stdio
        self._exit_status: int | None = None
        self.console = console

    @property
    def pidfd(self) -> int:
        """Its pidfd while this object holds one, else -1."""
        return self._pidfd

    @property
    def exit_status(self) -> int | None:
        """Its exit status once collected (reap/wait), else None."""
        return self._exit_status

    def state(self) -> State:
        if self._exit_status is not None or P.waitid(self._pidfd, os.WEXITED | os.WNOHANG
                                                     | os.WNOWAIT) is not None:
            return State(Status.STOPPED, 0)
        return State(Status.RUNNING, self.pid)

    def kill(self, signal: int, all: bool = False) -> None:
        if self._exit_status is not None:
            raise InvalidState(f"process {self.pid}: container not running", Status.STOPPED)
        P.send_signal(self._pidfd, int(signal), self.pid)

    def reap(self, block: bool = False) -> int | None:
        """Collect the exit status once the process exited (WNOHANG unless
        ``block``); returns it or None.  Container.wait/delete call this:
        the container's init cannot finish exiting while this process,
        our child in its pid namespace, is an unreaped zombie."""
        if self._exit_status is None and self._pidfd >= 0:
            try:
                status = P.waitid(self._pidfd, os.WEXITED | (0 if block else os.WNOHANG))
            except ChildProcessError:
                status = -1  # reaped elsewhere: the status is lost
            if status is not None:
                self._exit_status = status
        return self._exit_status

    def wait(self, timeout: float | None = None) -> int | None:
        if self._pidfd >= 0:
            if self._exit_status is None:
                if not P.wait_exit(self._pidfd, timeout):
                    raise TimeoutError(f"process {self.pid}: still running after {timeout} s")
                self.reap(block=True)
            if self._stdio is not None:
                self._stdio.join()
            if self.console is not None:
                self.console.join()
            os.close(self._pidfd)
            self._pidfd = -1
        return self._exit_status

    def close_stdin(self) -> None:
        if self.console is not None:
            self.console.close_stdin()
        if self._stdio is not None:
            self._stdio.close_stdin()

    def __del__(self):
        if getattr(self, "_pidfd", -1) >= 0:
            try:
                os.close(self._pidfd)
            except OSError:
                pass


JOINABLE = ("cgroup", "ipc", "uts", "net", "mnt")


def exec_process(container, opts, *, pid_file=None, preserve_fds=0, console_socket=None):
    """Run the OCI process in ``opts.spec`` inside ``container``."""
    try:
        raw = json.loads(opts.spec)
    except (ValueError, TypeError) as exc:
        raise ContainerError(f"exec: the process spec is not valid JSON: {exc}") from None
    proc = parse_process(raw, "process")
    sfilter = None
    if container.record.get("seccomp"):
        sfilter = _seccomp.build(parse_seccomp({"seccomp": container.record["seccomp"]}))
    pidfd = container.init_pidfd()
    stdio = None
    sync = None
    try:
        init_pid = container.pid
        own = N.namespaces_of("self")
        theirs = N.namespaces_of(init_pid)
        names = [n for n in JOINABLE if n in theirs and theirs[n] != own.get(n)]
        chan = None
        if proc.terminal:
            from .console import Channel
            if console_socket is None and (opts.io is None or opts.io.stdin == "inherit"):
                raise ContainerError("exec: process.terminal needs a --console-socket "
                                     "(or, in the library, an IO to relay it to)")
            chan = Channel(console_socket)
            stdio = _io.open_stdio(None)
        else:
            stdio = _io.open_stdio(opts.io)
        sync = launch.Channel()
        stub = execstub.stub_fd()
        if theirs.get("pid") != own.get("pid"):
            names.append("pid")
        cg = container.cgroup
        if cg is not None and not cg.exists():
            cg = None

        def child(joined):
            _child(stdio.child, sync, pidfd, init_pid, names, cg, proc, preserve_fds, chan,
                   joined, sfilter=sfilter, stub=stub)

        # born in the container's v2 cgroup (clone3 CLONE_INTO_CGROUP)
        helper, _ = launch.fork(child, cgroup=cg)
        sync.close_child_end()
        stdio.close_child_side()
        if chan is not None:
            chan.after_fork()
        seen: dict = {}
        try:
            sync.serve(helper, until_exec=True, program=proc.args[0], seen=seen)
        except BaseException:
            # the helper sends the pid right after its fork and exits, the
            # process exits after its error (or closes the channel at
            # execve): read to EOF for the pid, which may come after the
            # process's own error record
            sync.drain(seen)
            launch.kill_and_reap(seen.get("pid"))
            launch.kill_and_reap(helper)
            raise
        launch.kill_and_reap(helper)  # it has exited: collect it
        if "pid" not in seen:
            raise ContainerError("exec: the helper process died before it reported "
                                 "the exec'd process's pid")
        pid = seen["pid"]
        child_fd = P.pidfd_open(pid)
        try:
            if pid_file:
                launch.write_pid_file(pid_file, pid)
            console = launch.start_console(chan, opts.io)
        except BaseException:
            # a failed exec leaves no process running that nobody tracks
            launch.kill_and_reap(pid)
            os.close(child_fd)
            raise
        stdio.start()
        return Process(container, pid, child_fd, stdio, console)
    except BaseException:
        if stdio is not None:
            stdio.close_child_side()
            stdio.close_stdin()
        raise
    finally:
        os.close(pidfd)
        if sync is not None:
            sync.close()


def _child(stdio, sync, pidfd, init_pid, names, cg, proc, preserve_fds, chan=None,
           joined_unified=False, sfilter=None, stub=-1):
    """In the forked child, still in the host's pid namespace, where no
    container process can see it: join the cgroup and every namespace
    (the pid namespace for its child), close each host fd, then fork the
    process that will exec as the parent's own child (CLONE_PARENT), and
    report that child's pid.  Never returns.

    So the first instant anything of this exec exists in the container's
    pid namespace, it already has the container's root and cwd and holds
    no host directory fd: a container process with CAP_SYS_PTRACE that
    attaches to it, or reads its /proc/<pid>/root and fd/, finds nothing
    of the host (the ptrace variant of the CVE-2024-21626 class)."""
    from .init import Fail, begin_child, report_failure
    w = sync.child
    try:
        for fd in sync.parent_ends():
            os.close(fd)
        _io.set_child_stdio(stdio)
        begin_child("barerun exec", w, {pidfd, stub, sync.child_in}, preserve_fds, cg,
                    joined_unified, chan)
        sock = None
        if chan is not None:
            try:
                sock = chan.connect_in_child()
            except OSError as exc:
                raise Fail("connect to the console socket", exc, chan.path) from None
        if names:
            try:
                N.setns_pidfd(pidfd, init_pid, names)
            except OSError as exc:
                raise Fail("setns", exc, f"/proc/{init_pid}/ns") from None
        os.close(pidfd)
        pid, _ = N.fork(sibling=True)
        if pid == 0:
            _grandchild(w, proc, sock, sfilter, stub)
        launch.send(w, pid=pid)
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - report anything, never a traceback
        report_failure(w, e, "exec")
    os._exit(127)


def _grandchild(w, proc, sock, sfilter, stub):
    """The exec'd process, born in the container's pid namespace: its
    session and console, the process spec, then execve.  Never returns."""
    from .init import (
        Fail,
        child_console,
        environ,
        find_executable,
        prepare_process,
        report_failure,
    )
    try:
        launch.stop_point("exec-in-pidns")
        os.setsid()
        console_fd = child_console(sock, proc.console_size)
        _io.reopen_null()
        prepare_process(proc, console_fd, sfilter)
        exe = find_executable(proc)
        env = environ(proc)
        if sfilter is not None and proc.no_new_privileges:
            # late, as in the init; before "ready", so a failure is reported
            try:
                _seccomp.load(sfilter)
            except OSError as exc:
                raise Fail("seccomp", exc, "linux.seccomp") from None
        launch.send(w, ready=True)
        # through the sealed stub (CVE-2019-5736 class); w becomes
        # close-on-exec there: the parent reads EOF once execve succeeded,
        # or the stub's {"exec_errno": N}
        try:
            execstub.execve(stub, exe, proc.args, env, report_fd=w)
        except OSError as exc:
            raise Fail("exec", exc, proc.args[0],
                       message=f"{proc.args[0]!r}: {exc.strerror}") from None
    except BaseException as e:  # noqa: BLE001 - report anything, never a traceback
        report_failure(w, e, "exec")
    os._exit(127)
