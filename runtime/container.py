"""A container and the operations on it (containerd's Container interface).

The status always comes from the kernel, not from a cached word: the init
process identity (pid + start time, so a reused pid is never mistaken for
the container), the exec fifo (present until start), the freezer state.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import time
from collections import namedtuple

from lowlevel import cgroups, tracing
from lowlevel import pidfd as P

from .errors import ContainerError, InvalidState, NotFound, os_message
from .status import State, Status, require
from .store import Store, list_ids

TYPE_CHECKING = False  # typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from lowlevel.cgroups import Cgroup

    from .checkpoint import CheckpointOpts
    from .console import Relay
    from .exec import ExecOpts, Process
    from .io import Stdio
    from .spec import Resources


class ContainerInfo(namedtuple("ContainerInfo", "id runtime spec")):
    """What containerd's Info returns: id, runtime name, config.json bytes."""
    __slots__ = ()


class ConsoleSize(namedtuple("ConsoleSize", "width height")):
    """A terminal size in columns (width) and rows (height)."""
    __slots__ = ()


RUNTIME_NAME = "barerun"


def _signum(sig):
    if isinstance(sig, str):
        name = sig.upper()
        if name.isdigit():
            return int(name)
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            return int(_signal.Signals[name])
        except KeyError:
            raise ContainerError(f"unknown signal {sig!r}") from None
    return int(sig)


def _traced(method):
    """Every trace record the operation makes names the container."""
    def op(self, *args, **kwargs):
        with tracing.Container(self.id):
            return method(self, *args, **kwargs)
    op.__name__, op.__qualname__, op.__doc__ = method.__name__, method.__qualname__, method.__doc__
    return op


class Container:
    """One container.  Made by runtime.create() or runtime.load()."""

    def __init__(self, store: Store, state: dict, *, spec: object = None,
                 restore_plan: object = None) -> None:
        self._store = store
        self._st = state
        self._spec = spec
        self._child_pid: int | None = None  # set when this process made the init
        self._stdio: Stdio | None = None
        self._console: Relay | None = None
        self._exit_status = state.get("exit_status")
        self._execs: dict[int, Process] = {}  # those this object made, by pid
        # create(checkpoint=...): what start() restores with (checkpoint.RestorePlan)
        self.restore_plan = restore_plan

    # ------------------------------------------------ for the runtime's modules

    def attach_init(self, pid: int, stdio: Stdio | None, console: Relay | None = None) -> None:
        """The init this process made (create) or restored: its pid (this
        process may reap it), stdio relays and console relay."""
        self._child_pid = pid
        self._stdio = stdio
        self._console = console

    @property
    def record(self) -> dict:
        """state.json as last read (a dict; change it only under
        ``locked()`` and ``save_record`` it)."""
        return self._st

    def save_record(self, state: dict) -> None:
        self._store.write(state)
        self._st = state

    def locked(self) -> Store:
        """The container lock, as a context manager (reentrant)."""
        return self._store

    @property
    def state_dir(self) -> str:
        return self._store.dir

    @property
    def exit_status(self) -> int | None:
        """The init's exit status once this process collected it, else None."""
        return self._exit_status

    # ------------------------------------------------------------ identity

    @property
    def id(self) -> str:
        return self._store.id

    @property
    def pid(self) -> int:
        return self._st.get("pid", 0)

    @property
    def bundle(self) -> str:
        return self._st.get("bundle", "")

    @property
    def cgroup(self) -> Cgroup | None:
        return cgroups.Cgroup(self._st["cgroup"]) if self._st.get("cgroup") else None

    def _reload(self):
        self._st = self._store.read()
        return self._st

    def info(self) -> ContainerInfo:
        """ContainerInfo(id, runtime, spec bytes of config.json as created)."""
        path = os.path.join(self.bundle, "config.json")
        try:
            with open(path, "rb") as f:
                spec = f.read()
        except OSError:
            spec = b""
        return ContainerInfo(self.id, RUNTIME_NAME, spec)

    # ------------------------------------------------------------ status

    def _init_alive(self):
        pid = self._st.get("pid") or 0
        if pid <= 0:
            return False
        return P.ProcessId(pid, self._st.get("start_time", 0)).alive()

    criu_path = None  # a CRIU binary chosen by the caller (CLI --criu)

    def status(self) -> Status:
        st = self._reload()
        if st.get("checkpoint") and not self._lease_live(st["checkpoint"]):
            self._undo_stale_lease()
            st = self._st
        if st.get("restore") and not st.get("pid"):
            return Status.CREATED  # made from a checkpoint: restores on start
        if not self._init_alive():
            return Status.STOPPED
        cg = self.cgroup
        if cg is not None:
            try:
                if cg.state() in ("FROZEN", "FREEZING"):
                    return Status.PAUSED
            except OSError:
                pass
        if os.path.exists(self._store.fifo_path):
            return Status.CREATED
        return Status.RUNNING

    def state(self) -> State:
        status = self.status()
        return State(status, self.pid if status != Status.STOPPED else 0)

    # ------------------------------------------------------------ checkpoint lease

    # While CRIU dumps the container, state.json holds a lease, not the lock:
    # {"checkpoint": {"by": [pid, start], "criu": [pid, start], "path": ...,
    # "paused": the freezer state before}}.  It is live while barerun or
    # CRIU is; a stale one (both killed) is undone by whoever reads the
    # status next: the freezer goes back to what it was.

    @staticmethod
    def _lease_live(lease: dict) -> bool:
        for key in ("by", "criu"):
            holder = lease.get(key)
            if holder and P.ProcessId(holder[0], holder[1]).alive():
                return True
        return False

    def _undo_stale_lease(self) -> None:
        with self._store:
            st = self._reload()
            lease = st.get("checkpoint")
            if not lease or self._lease_live(lease):
                return
            tracing.trace("checkpoint.stale", path=lease.get("path"),
                          by=lease.get("by"), criu=lease.get("criu"))
            self._put_freezer_back(bool(lease.get("paused")))
            st.pop("checkpoint", None)
            self.save_record(st)

    def _put_freezer_back(self, paused: bool) -> None:
        cg = self.cgroup
        if cg is None or not cg.exists():
            return
        try:
            if paused:
                cg.freeze()
            else:
                cg.thaw()
        except OSError:
            pass

    def refuse_during_checkpoint(self, what: str) -> None:
        """InvalidState while a checkpoint of this container runs."""
        lease = self._st.get("checkpoint")
        if lease and self._lease_live(lease):
            by = lease.get("by") or [0]
            raise InvalidState(f"container {self.id}: {what}: a checkpoint into "
                               f"{lease.get('path')} is in progress (barerun pid {by[0]})",
                               self.status())

    def start_checkpoint_lease(self, path: str, paused: bool) -> None:
        """Under the lock: the lease of a checkpoint this process runs."""
        me = os.getpid()
        st = self._reload()
        st["checkpoint"] = {"by": [me, P.start_time(me)], "criu": None, "path": path,
                            "paused": paused}
        self.save_record(st)

    def checkpoint_lease_criu(self, pid: int) -> None:
        """CRIU runs as ``pid``: while it lives the lease does too (an
        orphaned CRIU finishes, or undoes, its dump on its own)."""
        with self._store:
            st = self._reload()
            if st.get("checkpoint"):
                st["checkpoint"]["criu"] = [pid, P.start_time(pid)]
                self.save_record(st)

    def end_checkpoint_lease(self, restore_freezer: bool) -> None:
        """Under the lock: the lease gone, the freezer put back as it was
        before the checkpoint when ``restore_freezer``."""
        st = self._reload()
        lease = st.pop("checkpoint", None)
        if lease is not None and restore_freezer:
            self._put_freezer_back(bool(lease.get("paused")))
        self.save_record(st)

    # ------------------------------------------------------------ start

    @_traced
    def start(self) -> None:
        """Release the init waiting in CREATED: it execs the program."""
        with self._store:
            status = self.status()
            require(status, "start", self.id)
            if self._st.get("restore"):
                from .checkpoint import restore
                restore(self)
                return
            try:
                fd = os.open(self._store.fifo_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    raise InvalidState(f"container {self.id}: the init process is gone",
                                       Status.STOPPED) from None
                raise ContainerError(f"container {self.id}: open {self._store.fifo_path}: "
                                     f"{exc.strerror}") from None
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
            os.unlink(self._store.fifo_path)
            self._st["status"] = "running"
            self._store.write(self._st)
            self._run_hooks("poststart", "running")

    def _run_hooks(self, stage: str, status: str) -> None:
        """poststart/poststop (recorded at create): a failure is a warning."""
        raw = self._st.get("hooks")
        if not raw or not raw.get(stage):
            return
        from . import hooks
        from .spec import parse_hooks
        parsed = parse_hooks({"hooks": {stage: raw[stage]}})
        state = hooks.state_json(self.id, status, self.pid if status != "stopped" else 0,
                                 self.bundle, self._st.get("annotations") or {},
                                 self._st.get("oci_version", ""))
        hooks.run_or_warn(parsed.get(stage, []), state)

    # ------------------------------------------------------------ signals

    def init_pidfd(self) -> int:
        """A pidfd for the init, checked to still be the same process."""
        pid = self.pid
        try:
            fd = P.pidfd_open(pid)
        except OSError:
            raise InvalidState(f"container {self.id}: container not running",
                               Status.STOPPED) from None
        if not self._init_alive():
            os.close(fd)
            raise InvalidState(f"container {self.id}: container not running", Status.STOPPED)
        return fd

    @_traced
    def kill(self, signal: int | str, pid: int = 0, all: bool = False) -> None:
        """Signal the init (pid 0), one process of the container, or all."""
        sig = _signum(signal)
        with self._store:
            self._kill(sig, pid, all)

    def _kill(self, sig, pid, all):
        status = self.status()
        require(status, "kill", self.id)
        if all:
            self._own_cgroup("kill --all").kill_all(sig)
            return
        if pid in (0, self.pid):
            fd = self.init_pidfd()
            try:
                P.send_signal(fd, sig, self.pid)
            finally:
                os.close(fd)
            if status == Status.PAUSED and sig == _signal.SIGKILL:
                # v1 freezer: a frozen task acts on SIGKILL only once
                # thawed (as runc, thaw for SIGKILL only)
                cg = self.cgroup
                try:
                    if cg is not None:
                        cg.thaw()
                except OSError:
                    pass
            return
        proc = self._execs.get(pid)
        if proc is not None:
            proc.kill(sig)
            return
        try:
            fd = P.pidfd_open(pid)
        except OSError:
            raise NotFound(f"container {self.id}: no process {pid}") from None
        try:
            if pid not in self.processes():
                raise NotFound(f"container {self.id}: process {pid} is not in the container")
            P.send_signal(fd, sig, pid)
        finally:
            os.close(fd)

    # ------------------------------------------------------------ wait

    @_traced
    def wait(self, timeout: float | None = None) -> int:
        """The exit status of the init (128+signal for a signal death).

        The exit status can only be read by the init's parent (the process
        that created the container) or a subreaper it was re-parented to.
        From any other process this still waits for the exit, and returns
        the status recorded in state.json when one was, else -1.
        Raises TimeoutError when ``timeout`` seconds pass first.
        """
        if self._exit_status is not None:
            return self._exit_status
        pid = self.pid
        recorded = self._st.get("exit_status")
        fd = None
        if pid > 0 and P.ProcessId(pid, self._st.get("start_time", 0)).same_process():
            try:
                fd = P.pidfd_open(pid)
            except OSError:
                fd = None
        if fd is None:
            self.reap_init()
            if self._exit_status is not None:
                return self._exit_status
            self._reload()
            recorded = self._st.get("exit_status")
            return -1 if recorded is None else recorded
        try:
            if not self._wait_exit(fd, timeout):
                raise TimeoutError(f"container {self.id}: still running after {timeout} s")
            try:
                got = P.waitid(fd)
                status = -1 if got is None else got
            except ChildProcessError:
                status = -1
            except OSError as exc:
                if exc.errno != errno.ECHILD:
                    raise
                status = -1
        finally:
            os.close(fd)
        if self._stdio is not None:
            self._stdio.join()
        if self._console is not None:
            self._console.join()
        if status != -1:
            self._exit_status = status
            self.record_exit(status)
        return status

    def _wait_exit(self, fd, timeout):
        """P.wait_exit on the init's pidfd ``fd`` that meanwhile reaps the
        processes this handle exec'd as they exit.  An exec'd process is
        our child inside the container's pid namespace, and the kernel
        holds the exiting init of a pid namespace (not yet reapable, its
        pidfd not readable) until every process of the namespace is
        reaped: without this, wait() and delete() hang forever once an
        exec'd process dies with the container."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            execs = {p.pidfd: p for p in self._execs.values()
                     if p.exit_status is None and p.pidfd >= 0}
            if not execs:
                return P.wait_exit(fd, left)
            ready = P.wait_any([fd, *execs], left)
            if not ready:
                return False
            if fd in ready:
                return True
            for efd in ready:
                execs[efd].reap()

    def _reap_execs(self):
        for p in list(self._execs.values()):
            try:
                p.reap()
            except OSError:
                pass

    def record_exit(self, status: int) -> None:
        """Write the init's exit status into state.json (status stopped)."""
        try:
            with self._store:
                st = self._store.read()
                st["exit_status"] = status
                st["status"] = "stopped"
                self._store.write(st)
                self._st = st
        except (ContainerError, OSError):
            pass

    # ------------------------------------------------------------ delete

    @_traced
    def delete(self, force: bool = False) -> None:
        """Remove the container: its processes (with force), cgroup, state."""
        with self._store:
            status = self.status()
            if status == Status.CREATED:
                force = True  # like runc: deleting a created container kills its init
            require(status, "delete_force" if force else "delete", self.id)
            cg = self.cgroup
            if status != Status.STOPPED or (cg is not None and cg.exists() and cg.procs()):
                self._kill_everything(cg)
            self.reap_init()
            if cg is not None:
                try:
                    cg.remove()
                except OSError as exc:
                    raise ContainerError(f"container {self.id}: remove cgroup {cg.rel}: "
                                         f"{os_message(exc)}") from None
            if self._stdio is not None:
                self._stdio.close_stdin()
            self._run_hooks("poststop", "stopped")
            self._store.remove()

    def _kill_everything(self, cg):
        if self._init_alive():
            try:
                fd = P.pidfd_open(self.pid)
                try:
                    P.send_signal(fd, _signal.SIGKILL, self.pid)
                finally:
                    os.close(fd)
            except OSError:
                pass
        if cg is not None and cg.exists():
            try:
                cg.kill_all(_signal.SIGKILL)
            except OSError:
                pass
            deadline = time.monotonic() + 5
            while cg.procs() and time.monotonic() < deadline:
                self.reap_init(block=False)
                self._reap_execs()
                time.sleep(0.001)

    def reap_init(self, block: bool = True) -> None:
        """Collect the init's exit status if this process is its parent."""
        if self._child_pid is None or self._exit_status is not None:
            return
        if block:
            # first until the init can be reaped, reaping exec'd processes
            try:
                fd = P.pidfd_open(self._child_pid)
            except OSError:
                fd = None
            if fd is not None:
                try:
                    self._wait_exit(fd, None)
                finally:
                    os.close(fd)
        try:
            pid, status = os.waitpid(self._child_pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self._child_pid = None
            return
        if pid:
            self._exit_status = os.waitstatus_to_exitcode(status)
            if self._exit_status < 0:
                self._exit_status = 128 - self._exit_status
            self._child_pid = None

    # ------------------------------------------------------------ freezer

    @_traced
    def pause(self) -> None:
        """Freeze every process of the container (cgroup freezer: v1
        freezer.state, v2 cgroup.freeze); returns once they are stopped."""
        with self._store:
            require(self.status(), "pause", self.id)
            self.refuse_during_checkpoint("pause")
            try:
                self._own_cgroup("pause").freeze()
            except OSError as exc:
                raise ContainerError(f"container {self.id}: pause: {os_message(exc)}") from None

    @_traced
    def resume(self) -> None:
        """Thaw a paused container."""
        with self._store:
            require(self.status(), "resume", self.id)
            self.refuse_during_checkpoint("resume")
            try:
                self._own_cgroup("resume").thaw()
            except OSError as exc:
                raise ContainerError(f"container {self.id}: resume: {os_message(exc)}") from None

    # ------------------------------------------------------------ cgroup

    @_traced
    def update(self, res: dict | Resources) -> None:
        """Change the container's limits: ``res`` is a LinuxResources
        object (dict, as containerd's Update sends) or a parsed
        spec.Resources.  Settings left out stay as they are; device rules,
        when given, replace the container's (deny-all + them + the OCI
        defaults; on v2 the new program is attached before the old one is
        detached, so access never widens in between)."""
        from . import resources
        if isinstance(res, dict):
            from .spec import parse_resources
            parsed = parse_resources(res, "resources")
        else:
            parsed = res
        with self._store:
            require(self.status(), "update", self.id)
            self.refuse_during_checkpoint("update")
            cg = self._own_cgroup("update")
            try:
                resources.apply(cg, parsed, "resources", devices=bool(parsed.devices))
            except ContainerError as exc:
                raise ContainerError(f"container {self.id}: update: {exc}") from None

    def stats(self) -> dict:
        """The cgroup's counters: {"cpu": {...}, "memory": {...}, "pids":
        {...}} (see lowlevel.cgroups.Cgroup.stats)."""
        require(self.status(), "stats", self.id)
        cg = self._own_cgroup("stats")
        try:
            return cg.stats()
        except OSError as exc:
            raise ContainerError(f"container {self.id}: stats: {os_message(exc)}") from None

    def _own_cgroup(self, what: str) -> Cgroup:
        cg = self.cgroup
        if cg is None or not cg.exists():
            raise ContainerError(f"container {self.id}: {what}: the container has no cgroup")
        return cg

    # ------------------------------------------------------------ exec

    @_traced
    def exec(self, opts: ExecOpts, **kwargs: object) -> Process:
        """Run another process (an OCI process spec in ``opts.spec``) in
        the container; returns a Process.  Refused unless RUNNING/CREATED."""
        from .exec import exec_process
        with self._store:
            require(self.status(), "exec", self.id)
            self.refuse_during_checkpoint("exec")
            p = exec_process(self, opts, **kwargs)
            self._execs[p.pid] = p
        return p

    def pty(self, pid: int, size: ConsoleSize) -> None:
        """Resize the terminal of the init (pid 0) or of an exec'd process:
        TIOCSWINSZ on the pty master barerun holds; the process gets SIGWINCH."""
        if pid in (0, self.pid):
            relay = self._console
        else:
            p = self._execs.get(pid)
            relay = p.console if p is not None else None
        if relay is None:
            raise NotFound(f"container {self.id}: process {pid or self.pid} has no terminal "
                           "held by this process")
        try:
            relay.resize(size.width, size.height)
        except OSError as exc:
            raise ContainerError(f"container {self.id}: resize terminal: "
                                 f"{os_message(exc)}") from None

    @_traced
    def checkpoint(self, opts: CheckpointOpts) -> None:
        """Dump the container with CRIU into opts.path (see checkpoint.py)."""
        from .checkpoint import checkpoint
        checkpoint(self, opts)

    def close_stdin(self, pid: int = 0) -> None:
        """EOF on the stdin of the init (pid 0) or of an exec'd process."""
        if pid in (0, self.pid):
            if self._console is not None:
                self._console.close_stdin()
            if self._stdio is not None:
                self._stdio.close_stdin()
            return
        p = self._execs.get(pid)
        if p is None:
            raise NotFound(f"container {self.id}: no exec'd process {pid} owned by this process")
        p.close_stdin()

    # ------------------------------------------------------------ processes

    def processes(self) -> list[int]:
        """Every host pid in the container's cgroup."""
        cg = self.cgroup
        if cg is None or not cg.exists():
            return []
        return cg.procs()

    def __repr__(self):
        return f"<Container {self.id} pid={self.pid}>"


def load(cid: str, *, root: str | None = None) -> Container:
    """The container ``cid`` as recorded under ``root``."""
    store = Store(root, cid)
    if not store.exists():
        raise NotFound(f"container {cid} does not exist")
    return Container(store, store.read())


def list_containers(*, root: str | None = None) -> list[ContainerRecord]:
    """A record per container: id, pid, status, bundle, created."""
    out = []
    for cid in list_ids(root):
        try:
            c = load(cid, root=root)
            st = c.state()
        except ContainerError:
            continue
        out.append(ContainerRecord(cid, st.pid, st.status, c.bundle, c.record.get("created", "")))
    return out


class ContainerRecord(namedtuple("ContainerRecord", "id pid status bundle created")):
    """One line of list_containers()."""
    __slots__ = ()
