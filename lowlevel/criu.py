"""Finding a CRIU binary that works on this kernel, and its version.

Debian 12's criu 3.17 fails on current kernels, and CRIU 4.1 cannot dump an
established TCP socket on kernel 6.18; 4.2.1 can (see DESIGN.md).  barerun
prefers the one its set-up builds into /usr/local/sbin; BARERUN_CRIU
overrides both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from .tracing import trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterable
    from typing import Any

CANDIDATES: tuple[str, ...] = ("/usr/local/sbin/criu", "/usr/local/bin/criu")
MIN_VERSION: tuple[int, ...] = (4, 2, 1)
# searched when PATH is unset (an empty PATH searches nothing)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _vstr(v: Iterable[int]) -> str:
    return ".".join(map(str, v))


def _probe(path: str) -> tuple[tuple[int, ...] | None, str | None]:
    """(version tuple or None, why not) of a would-be criu binary."""
    try:
        p = subprocess.run([path, "--version"], capture_output=True, text=True,
                           timeout=10)
    except subprocess.TimeoutExpired:
        return None, "`--version` timed out"
    except OSError as exc:
        return None, exc.strerror or str(exc)
    m = re.search(r"Version:\s*(\d+(?:\.\d+)*)", p.stdout)
    if not m:
        return None, "not a criu (no version)"
    return tuple(int(x) for x in m.group(1).split(".")), None


def version(path: str) -> tuple[int, ...] | None:
    """(major, minor[, sub]) of a criu binary, or None."""
    return _probe(path)[0]


def find_criu(explicit: str | None = None) -> str:
    """The path of a CRIU >= MIN_VERSION: ``explicit``, $BARERUN_CRIU,
    barerun's own build, then PATH.  Raises FileNotFoundError naming what
    was tried and why each was refused."""
    tried: list[tuple[str, str]] = []
    env = os.environ.get("BARERUN_CRIU")
    search = os.environ.get("PATH", DEFAULT_PATH)
    path_hit = shutil.which("criu", path=search) if search else None
    for cand in (explicit, env, *CANDIDATES, path_hit):
        if not cand or cand in (t for t, _ in tried):
            continue
        v, why = _probe(cand)
        if v and v >= MIN_VERSION:
            trace("criu.found", path=cand, version=_vstr(v))
            return cand
        # no reason from _probe: it found a version (v), just too old
        tried.append((cand, why or f"version {_vstr(v or ())} is too old"))
    did = "; ".join(f"{c} ({why})" for c, why in tried) or "nothing"
    raise FileNotFoundError(
        f"no CRIU >= {_vstr(MIN_VERSION)} found (tried {did}); "
        "build one with scripts/build-criu.sh")


def check(path: str | None = None) -> tuple[bool, str]:
    """Run `criu check`; returns (ok, output)."""
    path = path or find_criu()
    trace("exec", argv=[path, "check"])
    try:
        p = subprocess.run([path, "check"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False, f"{path} check: timed out after 60 s"
    except OSError as exc:
        return False, f"{path} check: {exc.strerror or exc}"
    out = (p.stdout + p.stderr).strip()
    return p.returncode == 0 and "Looks good" in out, out


# ---------------------------------------------------------------- swrk RPC

class SwrkError(Exception):
    """CRIU answered a request with failure; carries cr_errno/cr_errmsg."""

    def __init__(self, message: str, errno: int = 0, errmsg: str = "") -> None:
        self.errno = errno
        self.errmsg = errmsg
        super().__init__(message)


def rpc() -> Any:
    """pycriu's rpc_pb2 module (protobuf classes, untyped)."""
    from pycriu import rpc_pb2  # imported lazily: only checkpoint/restore need it
    return rpc_pb2


def new_opts() -> Any:
    """An empty criu_opts message (pycriu's rpc_pb2)."""
    return rpc().criu_opts()


def swrk(req_type: int, opts: Any, *, criu_path: str | None = None,
         pass_fds: Iterable[int] = (),
         on_notify: Callable[[str, int, list[int]], object] | None = None,
         setup_child: Callable[[], object] | None = None,
         on_start: Callable[[int], object] | None = None) -> Any:
    """Run one CRIU request over `criu swrk` and its notify loop.

    CRIU is started as ``criu swrk <fd>`` with one end of a SOCK_SEQPACKET
    socketpair; ``pass_fds`` are inherited by CRIU with the same numbers
    (images_dir_fd, work_dir_fd, inherit_fd ...).  For every NOTIFY message
    (a CRIU "action script": post-dump, setup-namespaces, post-restore,
    orphan-pts-master ...) ``on_notify(script, pid, fds)`` is called, where
    ``fds`` are file descriptors CRIU sent with it; then CRIU is told to go
    on.  ``on_start(pid)`` is called once CRIU runs, before the request
    is sent.  Returns the final criu_resp; raises SwrkError when it failed.

    CRIU is supervised: the wait for its answer also watches its pidfd,
    so its death ends the wait at once even when a process it forked
    still holds the socket open; it runs in a process group of its own,
    whose leftovers are killed when the request did not succeed (no
    orphaned CRIU outlives a failure).
    """
    import select
    import signal
    import socket

    from . import pidfd as P

    rpc_pb2 = rpc()
    criu_path = criu_path or find_criu()
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    kind = rpc_pb2.criu_req_type.Name(req_type)
    trace("criu.swrk", request=kind, criu=criu_path)
    proc = None
    watch = -1
    ok = False
    failed: Exception | None = None
    try:
        proc = subprocess.Popen([criu_path, "swrk", str(child.fileno())],
                                pass_fds=(child.fileno(), *pass_fds), close_fds=True,
                                preexec_fn=setup_child, stdin=subprocess.DEVNULL,
                                process_group=0)
        child.close()
        # a real pidfd polls readable when CRIU exits; without one (no
        # pidfd_open), CRIU's status is looked at every 50 ms instead
        watch = P.pidfd_open(proc.pid) if P.works() else -1
        trace("criu.started", pid=proc.pid)
        if on_start is not None:
            on_start(proc.pid)
        req = rpc_pb2.criu_req(type=req_type, opts=opts)
        try:
            parent.send(req.SerializeToString())
        except OSError as exc:  # criu is already gone (not a criu, or crashed)
            raise SwrkError(f"criu {kind}: {criu_path} did not take the request "
                            f"({exc.strerror}; {_ended(proc)})") from None
        poller = select.poll()
        poller.register(parent.fileno(), select.POLLIN)
        if watch >= 0:
            poller.register(watch, select.POLLIN)
        while True:
            ready = {fd for fd, _ev in poller.poll(None if watch >= 0 else 50)}
            if not ready and proc.poll() is None:
                continue
            if parent.fileno() not in ready:
                # CRIU exited: its last answer may still be in the socket
                if not select.select([parent], [], [], 0)[0]:
                    raise SwrkError(f"criu (pid {proc.pid}) exited without an answer "
                                    f"({_ended(proc)})")
            try:
                data, fds = _recv(parent)
            except ConnectionResetError:
                data, fds = b"", []
            if not data:
                raise SwrkError(f"criu (pid {proc.pid}) closed the RPC socket without an "
                                f"answer ({_ended(proc)})")
            resp = rpc_pb2.criu_resp()
            resp.ParseFromString(data)
            if resp.type == rpc_pb2.NOTIFY:
                script = resp.notify.script
                trace("criu.notify", script=script, pid=resp.notify.pid, fds=fds)
                try:
                    if on_notify is not None and failed is None:
                        on_notify(script, resp.notify.pid, fds)
                except Exception as exc:  # noqa: BLE001 - CRIU is told, then it is raised
                    failed = exc
                finally:
                    for fd in fds:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
                # a failed notify is answered too, and CRIU is left to undo
                # its work its own way (post-dump: the tasks are resumed);
                # the handler's error is raised once CRIU has answered
                try:
                    parent.send(rpc_pb2.criu_req(type=rpc_pb2.NOTIFY,
                                                 notify_success=failed is None)
                                .SerializeToString())
                except OSError:
                    pass
                continue
            if failed is not None:
                raise failed
            if not resp.success:
                msg = resp.cr_errmsg or os.strerror(resp.cr_errno or 0)
                raise SwrkError(f"criu {kind.lower()} failed: {msg}", resp.cr_errno,
                                resp.cr_errmsg)
            ok = True
            return resp
    finally:
        parent.close()
        try:
            child.close()
        except OSError:
            pass
        if proc is not None:
            # CRIU sees the closed socket and undoes its work (never killed
            # in the middle of it: a task with CRIU's parasite inside dies);
            # what it forked and left behind is killed once it is gone
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
            if not ok:
                _kill_group(proc.pid, signal.SIGKILL)
        if watch >= 0:
            os.close(watch)


def _kill_group(pgid: int, sig: int) -> None:
    """CRIU's process group (its own, from Popen's process_group=0)."""
    try:
        os.killpg(pgid, sig)
        trace("criu.killed", pgid=pgid)
    except (ProcessLookupError, PermissionError):
        pass


def _ended(proc: subprocess.Popen) -> str:
    """How CRIU ended, in words (it is killed after 30 s still running)."""
    try:
        status = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        import signal
        _kill_group(proc.pid, signal.SIGKILL)
        return "still running after 30 s: killed"
    if status < 0:
        return f"killed by signal {-status}"
    return f"exit status {status}"


def _recv(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One SEQPACKET message and any SCM_RIGHTS fds that came with it."""
    import array
    import socket
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(1 << 20, socket.CMSG_SPACE(16 * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)


def log_tail(path: str, lines: int = 12) -> str:
    """The last lines of a CRIU log (what a CheckpointError shows)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 65536))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    keep = text.splitlines()[-lines:]
    return "\n".join(keep)


def log_errors(path: str) -> list[str]:
    """The "Error (file:line): message" lines of a CRIU log, as messages."""
    import re as _re
    out: list[str] = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = _re.search(r"Error \([^)]*\): (.*)", line)
                if m:
                    out.append(m.group(1).strip())
    except OSError:
        pass
    return out
