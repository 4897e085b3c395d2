"""exec: a new process inside a running container's namespaces and cgroup.

Parent side: the container's pid namespace is entered for children only
(setns on the init's pidfd with CLONE_NEWPID), so the fork lands in it and
stays this process's child; the parent goes back at once.  Child side:
non-dumpable -> join the cgroup -> setns(pidfd, mnt|uts|ipc|net|cgroup) in
one call (one setns per namespace on older kernels) -> the process spec
(rlimits, [seccomp], user, capabilities, no_new_privs) -> [seccomp with
no_new_privs] -> "ready" -> execve.  The seccomp filter is the container's
(linux.seccomp of its config.json, kept in its state), as with runc.
"""

import json
import os
import signal as _signal
from dataclasses import dataclass

from lowlevel import execstub
from lowlevel import namespaces as N
from lowlevel import pidfd as P

from . import io as _io
from . import seccomp as _seccomp
from .errors import ContainerError, InvalidState
from .spec import parse_process, parse_seccomp
from .status import Status


@dataclass
class ExecOpts:
    spec: bytes
    io: object = None


class Process:
    """A process exec'd into a container (containerd's Process)."""

    def __init__(self, container, pid, pidfd, stdio):
        self.container = container
        self.pid = pid
        self._pidfd = pidfd
        self._stdio = stdio
        self._exit_status = None

    def state(self):
        from .container import State
        if self._exit_status is not None or P.waitid(self._pidfd, os.WEXITED | os.WNOHANG
                                                     | os.WNOWAIT) is not None:
            return State(Status.STOPPED, 0)
        return State(Status.RUNNING, self.pid)

    def kill(self, signal, all=False):
        if self._exit_status is not None:
            raise InvalidState(f"process {self.pid}: container not running", Status.STOPPED)
        P.send_signal(self._pidfd, int(signal), self.pid)

    _console = None

    def _reap(self, block=False):
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

    def wait(self, timeout=None):
        if self._pidfd >= 0:
            if self._exit_status is None:
                if not P.wait_exit(self._pidfd, timeout):
                    raise TimeoutError(f"process {self.pid}: still running after {timeout} s")
                self._reap(block=True)
            if self._stdio is not None:
                self._stdio.join()
            if self._console is not None:
                self._console.join()
            os.close(self._pidfd)
            self._pidfd = -1
        return self._exit_status

    def close_stdin(self):
        if self._console is not None:
            self._console.close_stdin()
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
    if container._st.get("seccomp"):
        sfilter = _seccomp.build(parse_seccomp({"seccomp": container._st["seccomp"]}))
    pidfd = container._init_pidfd()
    stdio = None
    r = w = None
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
        r, w = os.pipe2(os.O_CLOEXEC)
        stub = execstub.stub_fd()
        new_pidns = theirs.get("pid") != own.get("pid")
        cg = container.cgroup
        cgfd = cg.open_unified_fd() if cg is not None and cg.exists() else None
        if new_pidns:
            from .create import own_pidns_fd
            own_pidns_fd()  # opened before leaving our pid namespace for children
            N.setns(pidfd, N.FLAGS["pid"])
        pid = -1
        try:
            # clone3 + CLONE_INTO_CGROUP: born in the container's v2 cgroup
            pid, joined = N.fork(cgfd)
            if pid == 0:
                _child(stdio.child, w, r, pidfd, init_pid, names, cg, proc, preserve_fds, chan,
                       joined, sfilter=sfilter, stub=stub)
        finally:
            if new_pidns and pid != 0:
                from .create import own_pidns_fd
                N.setns(own_pidns_fd(), N.FLAGS["pid"])
            if cgfd is not None and pid != 0:
                os.close(cgfd)
        os.close(w)
        w = None
        stdio.close_child_side()
        if chan is not None:
            chan.after_fork()
        child_fd = P.pidfd_open(pid)
        from .create import read_report
        try:
            read_report(r, pid, until_exec=True, program=proc.args[0])
        except BaseException:
            try:
                os.kill(pid, _signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
            os.close(child_fd)
            raise
        if pid_file:
            from .create import write_pid_file
            write_pid_file(pid_file, pid)
        console = None
        if chan is not None:
            master = chan.receive_master()
            if master is not None:
                from .console import Relay
                console = Relay(master, opts.io)
                console.start()
        stdio.start()
        p = Process(container, pid, child_fd, stdio)
        p._console = console
        return p
    except BaseException:
        if stdio is not None:
            stdio.close_child_side()
            stdio.close_stdin()
        raise
    finally:
        os.close(pidfd)
        for fd in (r, w):
            if fd is not None:
                os.close(fd)


def _child(stdio, w, r, pidfd, init_pid, names, cg, proc, preserve_fds, chan=None,
           joined_unified=False, sfilter=None, stub=-1):
    """In the forked child: never returns."""
    from .init import (Fail, begin_child, child_console, environ, find_executable,
                       prepare_process, report, report_failure)
    try:
        os.close(r)
        _io.set_child_stdio(stdio)
        begin_child("barerun exec", w, {pidfd, stub}, preserve_fds, cg, joined_unified, chan)
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
        report(w, ready=True)
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
