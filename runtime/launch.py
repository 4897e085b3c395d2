"""Launching a container process: the parent's side, shared by create, exec
and restore, and the sync channel both sides speak.

The channel is two pipes (child -> parent, parent -> child; no socket
module to import on every CLI call), one JSON object per line.  The child
sends named records:

    {"log": ...}          a trace/log record (never on the container's stdio)
    {"step": NAME, ...}   a step the parent must do before the child goes
                          on; the parent answers {"step": NAME, ...}
    {"pid": N}            the exec helper's child, the process itself
    {"ready": true}       the child is about to execve (exec) or waits
                          for start (init)
    {"error": {step, message, errno, path}}   a failed child step
    {"exec_errno": N}     the exec stub's failed execve

The child's end is close-on-exec, so for an exec'd process EOF after
"ready" means execve succeeded.  ``Channel.serve`` reads until "ready"
(init) or EOF (exec), answers steps from ``on`` and raises ChildError
with the child's own record (step, message, errno, path) for a failure.

``fork`` makes the child: the pid namespace switch for children (a new
one, or one joined by path), clone3 straight into the cgroup, the child
running ``target`` (which never returns).  ``kill_and_reap`` undoes it.
"""

from __future__ import annotations

import json
import os
import signal

from lowlevel import namespaces as N

from .errors import ChildError, ContainerError, InvalidSpec, os_message
from .store import write_file

TYPE_CHECKING = False  # typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

_own_pidns: int | None = None


def own_pidns_fd() -> int:
    """This process's own pid namespace (opened once, before the first
    switch away from it)."""
    global _own_pidns
    if _own_pidns is None:
        _own_pidns = N.open_ns("self", "pid")
    return _own_pidns


# ---------------------------------------------------------------- channel


def send(fd: int, **msg: Any) -> None:
    """Child side: one record to the parent."""
    os.write(fd, (json.dumps(msg) + "\n").encode())


def request(fd: int, fd_in: int, step: str, **data: Any) -> dict:
    """Child side: ask the parent to do ``step`` (on ``fd``) and wait for
    its answer (on ``fd_in``)."""
    send(fd, step=step, **data)
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = os.read(fd_in, 65536)
        if not chunk:
            raise OSError(f"the parent went away during step {step}")
        buf += chunk
    answer = json.loads(buf)
    if answer.get("step") != step:
        raise OSError(f"the parent answered {answer.get('step')!r} to step {step!r}")
    return answer


class Channel:
    """The sync channel's fds, all close-on-exec: ``child`` (the child
    writes its records there) and ``child_in`` (it reads answers there);
    the parent reads ``parent`` and answers on ``parent_out``."""

    def __init__(self) -> None:
        self.parent: int | None
        self.child: int | None
        self.child_in: int | None
        self.parent_out: int | None
        self.parent, self.child = os.pipe2(os.O_CLOEXEC)
        self.child_in, self.parent_out = os.pipe2(os.O_CLOEXEC)
        self._unread = b""

    def parent_ends(self) -> tuple[int, ...]:
        """What a forked child closes first."""
        return tuple(fd for fd in (self.parent, self.parent_out) if fd is not None)

    def child_ends(self) -> tuple[int, ...]:
        return tuple(fd for fd in (self.child, self.child_in) if fd is not None)

    def close_child_end(self) -> None:
        """In the parent, once the child is forked: EOF then means every
        copy in the child is closed (or exec'd)."""
        for fd in self.child_ends():
            os.close(fd)
        self.child = self.child_in = None

    def close(self) -> None:
        self.close_child_end()
        for fd in self.parent_ends():
            os.close(fd)
        self.parent = self.parent_out = None

    def records(self) -> Iterator[dict]:
        """The child's records in order, until EOF (every copy of the
        child's end closed or exec'd).  The unread rest of the last read
        stays here, so a reader that stopped at one record (serve at an
        error) and one that goes on (drain) together see every record."""
        fd = self.parent
        assert fd is not None
        while True:
            while b"\n" in self._unread:
                line, self._unread = self._unread.split(b"\n", 1)
                try:
                    yield json.loads(line)
                except ValueError:
                    raise ChildError("init", "the child sent a record that is not "
                                     f"JSON: {line[:80]!r}") from None
            try:
                chunk = os.read(fd, 65536)
            except InterruptedError:  # pragma: no cover
                continue
            if not chunk:
                return
            self._unread += chunk

    def serve(self, pid: int, *, until_exec: bool = False, program: str | None = None,
              seen: dict | None = None,
              on: dict[str, Callable[[dict], dict | None]] | None = None) -> None:
        """Read the child's records until it is ready (or, ``until_exec``,
        until EOF after ready); see the module docstring.  A {"pid": N}
        record goes into ``seen``."""
        ready = False
        for msg in self.records():
            if "log" in msg:
                _child_log(pid, msg)
            elif "step" in msg:
                name = msg["step"]
                handler = (on or {}).get(name)
                if handler is None:
                    raise ChildError(name, f"the child asked for step {name!r}, "
                                     "which this launcher does not do")
                assert self.parent_out is not None
                send(self.parent_out, step=name, **(handler(msg) or {}))
            elif "pid" in msg:
                if seen is not None:
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
        # EOF without a word: the child died.  Its status is read without
        # reaping it (WNOWAIT): the caller's kill_and_reap collects it, and
        # never signals a pid that another process may have by then
        pid = (seen or {}).get("pid", pid)
        try:
            res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            if res is None:  # pragma: no cover - only with WNOHANG
                how = "unknown status"
            elif res.si_code == os.CLD_EXITED:
                how = f"exit status {res.si_status}"
            else:
                how = f"killed by signal {res.si_status}"
        except ChildProcessError:
            how = "unknown status"
        what = "the exec'd process" if until_exec else "the init process"
        raise ChildError("init", f"{what} (pid {pid}) died before it was ready ({how})")

    def drain(self, seen: dict) -> None:
        """After a failure: go on reading from where ``serve`` stopped
        until EOF for the {"pid": N} record, which the exec helper may
        send after (even in the same read as) the error of the process it
        forked; without it that process, our child, would stay an
        unreaped zombie in the container's pid namespace (whose init then
        never finishes dying)."""
        if self.parent is None:
            return
        try:
            for msg in self.records():
                if "pid" in msg and "pid" not in seen:
                    seen["pid"] = msg["pid"]
        except (OSError, ChildError):
            return


def _child_log(pid: int, msg: dict) -> None:
    """A log record the child sent, handled by this process's loggers as
    the child's own (its pid, its logger name)."""
    import logging
    level = msg.get("level", logging.DEBUG)
    record = logging.makeLogRecord({
        "name": msg.get("logger", "barerun"), "levelno": level,
        "levelname": logging.getLevelName(level), "msg": msg["log"], "process": pid,
        "container": msg.get("container", "")})
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(level):
        logger.handle(record)


def stop_point(name: str) -> None:
    """Stop this process here (SIGSTOP to itself) when BARERUN_STOP_AT
    names this point, so that it can be looked at as it is (its
    /proc/<pid> from the host or from inside the container) or killed
    there; SIGCONT goes on.  Points: "exec-in-pidns" (the exec'd
    process's first step in the container's pid namespace); in
    checkpoint, "checkpoint-leased" (the image directory describes itself,
    CRIU not started yet), "checkpoint-post-dump" (CRIU has written every
    image, the tasks are frozen, the image not yet marked complete),
    "checkpoint-marked" (marked complete, CRIU not yet answered) and
    "checkpoint-dumped" (CRIU has finished, the lease not yet gone)."""
    if os.environ.get("BARERUN_STOP_AT") == name:
        signal.raise_signal(signal.SIGSTOP)


# ---------------------------------------------------------------- fork


def fork(target: Callable[[bool], None], *, cgroup: Any = None,
         pidns: str | None = None) -> tuple[int, bool]:
    """Fork a child that runs ``target(joined_unified)`` and never returns.

    ``cgroup`` (a lowlevel Cgroup): the child is born in its v2 directory
    (clone3 CLONE_INTO_CGROUP; ``joined_unified`` tells the child whether
    that worked).  ``pidns``: "" for a new pid namespace (the child is its
    pid 1), a path to join one; this process enters it for its children
    only and goes back to its own at once, so the child stays its own
    child (wait() can reap it).  Returns (pid, joined_unified)."""
    switched = False
    if pidns is not None:
        own_pidns_fd()
        if pidns:
            try:
                fd = os.open(pidns, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise InvalidSpec("linux.namespaces", f"pid namespace {pidns}: "
                                  f"{exc.strerror}") from None
            try:
                N.setns(fd, N.FLAGS["pid"])
            except OSError as exc:
                raise InvalidSpec("linux.namespaces",
                                  f"join pid namespace {pidns}: {os_message(exc)}") from None
            finally:
                os.close(fd)
        else:
            N.unshare(N.FLAGS["pid"])
        switched = True
    cgfd = None
    pid = -1
    try:
        if cgroup is not None:
            cgfd = cgroup.open_unified_fd()
        pid, joined = N.fork(cgfd)
        if pid == 0:
            try:
                target(joined)
            finally:
                os._exit(127)
    finally:
        if pid != 0:
            if switched:
                N.setns(own_pidns_fd(), N.FLAGS["pid"])
            if cgfd is not None:
                os.close(cgfd)
    return pid, joined


def kill_and_reap(pid: int | None) -> None:
    """SIGKILL a child this process forked and collect it (best effort)."""
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def discard_cgroup(cg: Any) -> None:
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


def write_pid_file(path: str, pid: int) -> None:
    """The pid, no newline (containerd reads it with Atoi), written
    atomically and never through a planted symlink: barerun runs as root
    and the pid file's directory may be one a container can write."""
    try:
        write_file(path, str(pid).encode())
    except OSError as exc:
        raise ContainerError(f"pid file {path}: {exc.strerror or exc}") from None


def start_console(chan: Any, io: Any) -> Any:
    """The pty master the child sent over the console channel, relayed to
    ``io`` (None when it went to a --console-socket)."""
    if chan is None:
        return None
    master = chan.receive_master()
    if master is None:
        return None
    from .console import Relay
    relay = Relay(master, io)
    relay.start()
    return relay
