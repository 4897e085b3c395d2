"""checkpoint and restore: CRIU does the work, barerun drives its RPC.

checkpoint(CheckpointOpts) maps the options onto criu_opts, lets CRIU
freeze the container through its freezer cgroup, dump it into the images
directory, and (unless ``exit``) thaw it again.  The directory is
self-describing: the CRIU images, ``config.json`` (the spec the container
ran with), ``barerun.json`` (id, bundle, versions, options, what fds 0-2
were, and whether the dump completed) and ``dump.log``.  Its steps, as a
transaction (see ``checkpoint``): lock -> checks, barerun.json
"complete": false, config.json, lease in state.json -> unlock ->
[checkpoint-leased] -> CRIU (freeze, dump every image) -> post-dump
notify: [checkpoint-post-dump] barerun.json "complete": true
[checkpoint-marked] -> CRIU stops the tasks (exit) or thaws them ->
[checkpoint-dumped] -> lock -> lease gone (freezer as before on failure),
exit status recorded.  [name]: a BARERUN_STOP_AT point.

Restore is ``runtime.create(new_id, bundle, checkpoint=dir)`` (CREATED,
nothing runs yet) then ``start()``: the rootfs is bound on a mount point
CRIU can use as root, a new cgroup is made for the new id, the new stdio
pipes replace the dumped ones (inherit_fd), a terminal master comes back
with the orphan-pts-master notify, and the restored init's pid with
post-restore.  The images stay intact, so one checkpoint restores again.

External unix sockets (``allow_unix_sockets``): a connected socket whose
peer is outside the container is dumped as external (CRIU's ``external
unix[ino]``); the descriptor names those whose peer has no name to
reconnect to, and a restore must be given a new socket in their place:
``restore_options={"preserve_fds": N}`` hands the caller's fds 3..3+N-1
to CRIU (inherit-fd) for what the init held at those numbers.  A failed
restore changes neither the images nor the state: the container stays
CREATED and start() may try again.
"""

import json
import os
import re
import signal as _signal
import time
import weakref
from dataclasses import asdict, dataclass, field

from lowlevel import cgroups
from lowlevel import criu as _criu
from lowlevel import mounts as M
from lowlevel import namespaces as N
from lowlevel import pidfd as P

from . import io as _io
from . import launch, resources
from .errors import CheckpointError, ContainerError, NotFound, os_message
from .rootfs import cgroup_binds
from .spec import load_bundle
from .status import Status, require
from .store import rfc3339_now, write_file

DESCRIPTOR = "barerun.json"
CG_MODES = {"soft": "SOFT", "full": "FULL", "strict": "STRICT", "ignore": "IGNORE",
            "props": "PROPS"}


@dataclass
class CheckpointOpts:
    exit: bool = False
    allow_tcp: bool = False
    allow_unix_sockets: bool = False
    allow_terminal: bool = False
    file_locks: bool = False
    empty_namespaces: list = field(default_factory=list)
    path: str = ""
    work_path: str | None = None       # CRIU's logs (default: path)
    manage_cgroups_mode: str | None = None


def _common_opts(o, spec, opts, rpc):
    o.log_level = 4
    o.tcp_established = bool(opts.get("allow_tcp"))
    o.ext_unix_sk = bool(opts.get("allow_unix_sockets"))
    o.shell_job = bool(opts.get("allow_terminal"))
    o.file_locks = bool(opts.get("file_locks"))
    o.manage_cgroups = True
    mode = (opts.get("manage_cgroups_mode") or "soft").lower()
    if mode not in CG_MODES:
        raise ContainerError(f"manage cgroups mode {mode!r}: want one of {', '.join(CG_MODES)}")
    o.manage_cgroups_mode = getattr(rpc, CG_MODES[mode])
    o.network_lock = rpc.NFTABLES
    empty = 0
    for name in opts.get("empty_namespaces") or []:
        try:
            flag = N.flags_for([name])
        except ValueError:
            raise ContainerError(f"empty namespace {name!r}: not a namespace type") from None
        if flag != N.FLAGS["net"]:
            raise ContainerError(f"empty namespace {name!r}: only \"network\" can be "
                                 "restored empty")
        empty |= flag
    if empty:
        o.empty_ns = empty
    if spec.process.terminal:
        o.orphan_pts_master = True


def _fd_links(pid):
    out = []
    for i in range(3):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{i}"))
        except OSError:
            out.append("")
    return out


def _extra_fd_links(pid):
    """{fd: link} of the init's fds from 3 on: what a restore with
    ``preserve_fds`` hands new fds for (a socket or pipe to the outside)."""
    out: dict[str, str] = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        if int(name) < 3:
            continue
        try:
            out[name] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            pass
    return out


def _unix_socket_inodes(pids):
    """The inodes of the unix sockets the processes ``pids`` hold open.

    CRIU dumps a connected unix socket whose peer is outside the dump only
    when it is told that socket is external (``external unix[ino]``); its
    legacy ``ext_unix_sk`` alone covers named datagram peers only ("Can't
    dump half of stream unix connection")."""
    inodes = set()
    for pid in pids:
        held = set()
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if link.startswith("socket:["):
                held.add(int(link[8:-1]))
        if not held:
            continue
        try:  # the unix sockets of the process's network namespace
            with open(f"/proc/{pid}/net/unix") as f:
                next(f, None)
                unix = {int(line.split()[6]) for line in f if len(line.split()) > 6}
        except (OSError, ValueError):
            continue
        inodes |= held & unix
    return inodes


def checkpoint(container, opts):
    """Dump ``container`` into opts.path; see the module docstring.

    A transaction: the image directory describes itself before CRIU runs
    (config.json and a barerun.json saying "complete": false) and is
    marked complete (barerun.json replaced atomically) from CRIU's
    post-dump notify, when every image is written and the tasks are still
    frozen; only then does CRIU stop them (exit mode).  So an interrupted
    checkpoint leaves a restorable image, or one ``restore`` names as
    incomplete with the container still running.

    The container lock is held for the checks and the bookkeeping, never
    across CRIU's dump: state.json carries a lease ("checkpoint": this
    process, CRIU's pid, the freezer state before) while CRIU runs, which
    makes pause/resume/exec/update/checkpoint refuse, and which any later
    barerun undoes (freezer put back) once its holders are gone."""
    with container.locked():
        job = _begin(container, opts)
    launch.stop_point("checkpoint-leased")
    failed = True
    try:
        _dump(container, opts, job)
        failed = False
    finally:
        with container.locked():
            _finish(container, opts, job, failed)


class _Job:
    """One checkpoint in progress: what _begin found and made."""

    def __init__(self, path, work, spec, paused, options):
        self.path = path
        self.work = work
        self.spec = spec
        self.paused = paused
        self.options = options
        self.desc: dict = {}
        self.started = time.time()
        self.complete = False


def _begin(container, opts):
    """Under the lock: the checks, the images directory made to describe
    itself (incomplete), the lease written."""
    status = container.status()
    require(status, "checkpoint", container.id)
    container.refuse_during_checkpoint("checkpoint")
    if not opts.path:
        raise ContainerError("checkpoint: CheckpointOpts.path (the images directory) is empty")
    spec = load_bundle(container.bundle)
    path = os.path.abspath(opts.path)
    work = os.path.abspath(opts.work_path or path)
    for d in (path, work):
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise ContainerError(f"checkpoint: cannot make {d}: {exc.strerror}") from None
    job = _Job(path, work, spec, status == Status.PAUSED, asdict(opts))
    pid = container.pid
    job.desc = {
        "id": container.id, "bundle": container.bundle, "complete": False,
        "created": container.record.get("created", ""),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.started)),
        "barerun_version": _version(), "criu_version": _criu_version(container.criu_path),
        "options": {k: v for k, v in job.options.items() if k not in ("path", "work_path")},
        "descriptors": _fd_links(pid), "fds": _extra_fd_links(pid),
        "terminal": spec.process.terminal, "external_unix": [],
        "cgroup": container.record.get("cgroup"),
    }
    # the descriptor first: an image directory is never without one, and
    # one that says incomplete until CRIU has written every image
    _write_image_file(container, os.path.join(path, DESCRIPTOR), _desc_bytes(job.desc))
    try:
        with open(os.path.join(container.bundle, "config.json"), "rb") as f:
            config = f.read()
    except OSError as exc:
        raise ContainerError(f"checkpoint {container.id}: read the bundle's config.json: "
                             f"{os_message(exc)}") from None
    _write_image_file(container, os.path.join(path, "config.json"), config)
    container.start_checkpoint_lease(path, job.paused)
    return job


def _desc_bytes(desc):
    return json.dumps(desc, indent=1).encode()


def _write_image_file(container, path, data):
    """A file of the images directory, written atomically; an I/O error
    (ENOSPC ...) names the file."""
    try:
        write_file(path, data)
    except OSError as exc:
        raise CheckpointError(f"container {container.id}: checkpoint: write {path}: "
                              f"{os_message(exc)}") from None


def _dump(container, opts, job):
    """CRIU's dump, without the lock; the image is marked complete from
    its post-dump notify."""
    rpc = _criu.rpc()
    spec = job.spec
    pid = container.pid
    cg = container.cgroup
    imgfd = os.open(job.path, os.O_DIRECTORY | os.O_RDONLY)
    workfd = os.open(job.work, os.O_DIRECTORY | os.O_RDONLY)
    log_path = os.path.join(job.work, "dump.log")
    o = _criu.new_opts()
    o.images_dir_fd = imgfd
    o.work_dir_fd = workfd
    o.log_file = "dump.log"
    o.pid = pid
    o.leave_running = not opts.exit
    o.notify_scripts = True  # post-dump marks the image complete
    _common_opts(o, spec, job.options, rpc)
    if cg is not None:
        layout = cg.layout
        o.freeze_cgroup = cg.paths["freezer"] if "freezer" in layout.v1 else cg.paths["unified"]
    for m in spec.mounts:
        if m.bind:
            o.ext_mnt.add(key=m.destination, val=m.destination)
    # the container's own cgroup directories bound in (no cgroup namespace)
    for dest, _src in cgroup_binds(spec, container.record.get("cgroup")):
        o.ext_mnt.add(key=dest, val=dest)
    if opts.allow_unix_sockets:
        procs = cg.procs() if cg is not None and cg.exists() else [pid]
        for ino in sorted(_unix_socket_inodes(procs)):
            o.external.append(f"unix[{ino}]")

    def on_notify(script, _pid, _fds):
        if script != "post-dump":
            return
        # every image is written, the tasks are still frozen: mark the
        # image complete (CRIU stops the tasks, exit mode, only after this
        # answer; a failure here makes it resume them)
        launch.stop_point("checkpoint-post-dump")
        if opts.allow_unix_sockets:
            job.desc["external_unix"] = _external_unix(job.path)
        job.desc["complete"] = True
        job.desc["checkpointed"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _write_image_file(container, os.path.join(job.path, DESCRIPTOR), _desc_bytes(job.desc))
        job.complete = True
        launch.stop_point("checkpoint-marked")

    try:
        _criu.swrk(rpc.DUMP, o, criu_path=container.criu_path, pass_fds=(imgfd, workfd),
                   on_notify=on_notify, on_start=container.checkpoint_lease_criu)
    except _criu.SwrkError as exc:
        fresh = _fresh(log_path, job.started)
        raise CheckpointError(_failure(container.id, "dump", exc, log_path, job.started),
                              log_path if fresh else None,
                              _criu.log_tail(log_path) if fresh else "") from None
    finally:
        os.close(imgfd)
        os.close(workfd)
    launch.stop_point("checkpoint-dumped")
    if not job.complete:
        raise CheckpointError(f"container {container.id}: criu dump succeeded without a "
                              "post-dump notify: the image is not marked complete",
                              log_path, _criu.log_tail(log_path))


def _finish(container, opts, job, failed):
    """Under the lock again: the lease gone; after a failure the freezer
    as it was before; after an exit-mode dump the init's exit recorded."""
    try:
        container.end_checkpoint_lease(restore_freezer=failed or not opts.exit)
    except NotFound:
        return  # deleted meanwhile (delete --force)
    if failed or not opts.exit:
        return
    container.reap_init()
    container.record_exit(container.exit_status if container.exit_status is not None
                          else 128 + _signal.SIGKILL)


def _external_unix(path):
    """The keys ("socket:[ino]") of the dumped unix sockets whose peer was
    outside the container and has no name to reconnect to: a restore must
    be handed a socket for each (CRIU's inherit-fd), or CRIU fails on them
    (4.2.1 even crashes).  Read from CRIU's files.img."""
    try:
        from pycriu import images
        with open(os.path.join(path, "files.img"), "rb") as f:
            entries = images.load(f)["entries"]
    except Exception:  # noqa: BLE001 - an unreadable image: nothing known
        return []
    usks = [e["usk"] for e in entries if e.get("type") == "UNIXSK" and "usk" in e]
    outside = {u["ino"] for u in usks if u.get("uflags", 0) & 1 and not u.get("name")}
    return sorted(f"socket:[{u['ino']}]" for u in usks
                  if not u.get("uflags", 0) & 1 and u.get("peer") in outside)


def _fresh(log_path, since):
    """True when CRIU wrote ``log_path`` in this attempt (not a stale log
    of an earlier dump/restore in the same work directory)."""
    try:
        return os.stat(log_path).st_mtime >= since - 0.05  # the fs clock is coarse
    except OSError:
        return False


# CRIU logs these as errors and goes on: not the cause of a failure
_NOISE = re.compile(r"rlimit: Can't setup|execvp\(\"ip6?tables|ip6?tables(-legacy)?-(restore|save)"
                    r" -V failed")


def _failure(cid, what, exc, log_path, since=None):
    """The message of a failed dump/restore: CRIU's own words for the cause.

    cr_errmsg is CRIU's *first* error, often a harmless one (it cannot raise
    its own RLIMIT_NOFILE without CAP_SYS_RESOURCE; it probes for
    iptables-restore); the cause is the last errors before the final
    "Dumping/Restoring FAILED" (what follows it is CRIU cleaning up)."""
    fresh = since is None or _fresh(log_path, since)
    errors = _criu.log_errors(log_path) if fresh else []
    for n, e in enumerate(errors):
        if "FAILED" in e:
            errors = errors[:n] or errors[n + 1:]
            break
    cause = [e for e in errors if "FAILED" not in e and not _NOISE.search(e)]
    text = "; ".join(cause[-3:]) if cause else (exc.errmsg or str(exc))
    return f"container {cid}: criu {what} failed: {text}"


def _version():
    from .version import VERSION
    return VERSION


def _criu_version(path):
    try:
        v = _criu.version(path or _criu.find_criu())
    except OSError:
        v = None
    return ".".join(map(str, v)) if v else ""


def read_checkpoint(path):
    """The descriptor of a checkpoint directory; NotFound when it is not one."""
    path = os.path.abspath(path)
    try:
        with open(os.path.join(path, DESCRIPTOR)) as f:
            desc = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"{path} is not a barerun checkpoint (no {DESCRIPTOR})") from None
    except OSError as exc:
        raise NotFound(f"{path}/{DESCRIPTOR} is unreadable: {os_message(exc)}") from None
    except ValueError as exc:
        raise NotFound(f"{path}/{DESCRIPTOR} is unreadable: {exc}") from None
    if desc.get("complete") is False:
        raise NotFound(f"{path} is an incomplete checkpoint: the dump of container "
                       f"{desc.get('id', '?')} started at {desc.get('started', '?')} did not "
                       f"finish (see {DESCRIPTOR} and dump.log there)")
    if not os.path.exists(os.path.join(path, "inventory.img")):
        raise NotFound(f"{path} has no CRIU images (inventory.img is missing)")
    return desc


class RestorePlan:
    """What start() restores with, held from create(checkpoint=...) on: as
    a plain create consumes the caller's fds at create time, so does this
    one: the IO's fds (``io``) and fds 3..3+preserve_fds-1 (``fds``: the
    fd number in the container -> our dup) are dup'd then (the caller may
    close its own), used by start(), closed once restored or when the plan
    goes (``held``: every dup still open)."""

    def __init__(self):
        self.io = None
        self.fds = {}
        self.held: list[int] = []
        weakref.finalize(self, _close_all, self.held)


def prepare_restore(store, spec, checkpoint_path, *, io=None, pid_file=None,
                    console_socket=None, options=None):
    """create(..., checkpoint=...): the state of a CREATED container that
    restores on start, and its RestorePlan."""
    path = os.path.abspath(checkpoint_path)
    desc = read_checkpoint(path)
    store.create()
    try:
        state = {
            "id": store.id, "status": "created", "pid": 0, "start_time": 0,
            "bundle": spec.bundle, "rootfs": spec.rootfs,
            "cgroup": resources.cgroup_path(spec, store.id),
            "created": rfc3339_now(),
            "annotations": spec.annotations, "owner": "",
            "restore": {"path": path, "pid_file": pid_file, "console_socket": console_socket,
                        "work_path": (options or {}).get("work_path"),
                        "inherit_io": getattr(io, "stdin", None) == "inherit",
                        "options": {**desc.get("options", {}),
                                    **{k: v for k, v in (options or {}).items()
                                       if k != "work_path"}}},
        }
        if spec.seccomp is not None:
            # CRIU restores the init's filter; exec'd processes get it from here
            state["seccomp"] = spec.raw["linux"]["seccomp"]
        with store:
            store.write(state)
    except BaseException:
        store.remove()
        raise
    plan = RestorePlan()
    n = int((options or {}).get("preserve_fds") or 0)
    fd = None
    try:
        plan.io = _dup_io(io, plan.held)
        for fd in range(3, 3 + n):
            plan.fds[fd] = os.dup(fd)
            plan.held.append(plan.fds[fd])
    except OSError as exc:
        _close_all(plan.held)
        store.remove()
        what = f"preserve fd {fd}" if fd is not None else "dup the IO fds"
        raise ContainerError(f"create {store.id}: {what}: {exc.strerror}") from None
    return state, plan


def _dup_io(io, held):
    """``io`` with its int fds replaced by dups (recorded in ``held``)."""
    if io is None:
        return None
    kw = {}
    for name in ("stdin", "stdout", "stderr"):
        v = getattr(io, name)
        if isinstance(v, int) and not isinstance(v, bool):
            v = os.dup(v)
            held.append(v)
        kw[name] = v
    return _io.IO(terminal=io.terminal, **kw)


def _close_all(fds):
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


def restore(container):
    """start() of a container made from a checkpoint: CRIU restores it."""
    rpc = _criu.rpc()
    st = container.record
    plan = container.restore_plan
    info = st["restore"]
    path = info["path"]
    desc = read_checkpoint(path)
    spec = load_bundle(container.bundle)
    opts = info.get("options") or {}
    io = plan.io if plan is not None else None
    if io is None:
        io = _io.IO.inherit() if info.get("inherit_io") else None
    work = info.get("work_path") or path
    cg = cgroups.Cgroup(st["cgroup"])
    stdio = None
    criu_root = os.path.join(container.state_dir, "criu-root")
    mounted = False
    imgfd = workfd = None
    log_path = os.path.join(work, "restore.log")
    result = {}
    try:
        cg.create()
        resources.apply(cg, spec.resources)
        # as runc: the mount points a create would have made (a fresh rootfs,
        # as podman's restore --import gives, lacks /etc/hosts ...)
        from .rootfs import StepError, make_restore_mountpoints
        try:
            make_restore_mountpoints(spec)
        except StepError as exc:
            raise ContainerError(f"restore {container.id}: {exc}") from None
        os.makedirs(criu_root, exist_ok=True)
        M.mount(spec.rootfs, criu_root, None, M.MS["MS_BIND"] | M.MS["MS_REC"])
        mounted = True
        # a slave, not private: CRIU copies the dumped root mount's sharing
        # from it (mount-v2: a private one gives EINVAL when the rootfs is a
        # shared mount of its own, as Docker's overlay), and nothing CRIU
        # mounts below propagates back out
        M.mount(None, criu_root, None, M.MS["MS_SLAVE"] | M.MS["MS_REC"])
        try:
            imgfd = os.open(path, os.O_DIRECTORY | os.O_RDONLY)
            os.makedirs(work, exist_ok=True)  # as runc: the work path is made
            workfd = os.open(work, os.O_DIRECTORY | os.O_RDONLY)
        except OSError as exc:
            raise ContainerError(f"restore {container.id}: {exc.filename}: "
                                 f"{exc.strerror}") from None
        o = _criu.new_opts()
        o.images_dir_fd = imgfd
        o.work_dir_fd = workfd
        o.log_file = "restore.log"
        o.root = criu_root
        o.rst_sibling = True
        o.notify_scripts = True
        _common_opts(o, spec, opts, rpc)
        o.cg_root.add(path="/" + st["cgroup"])
        for m in spec.mounts:
            if m.bind:
                src = m.source if os.path.isabs(m.source) else os.path.join(spec.bundle, m.source)
                o.ext_mnt.add(key=m.destination, val=src)
        for dest, src in cgroup_binds(spec, st["cgroup"]):
            o.ext_mnt.add(key=dest, val=src)
        terminal = desc.get("terminal")
        stdio = _io.open_stdio(None if terminal else io)
        pass_fds = [imgfd, workfd]
        for i, link in enumerate(desc.get("descriptors", [])):
            if link.startswith("pipe:") and stdio.child[i] is not None:
                o.inherit_fd.add(key=link, fd=stdio.child[i])
                pass_fds.append(stdio.child[i])
        # preserve_fds: the new fds 3.. take the place of what the init held
        # there when it was dumped (an external unix socket or pipe)
        dumped = desc.get("fds") or {}
        preserved = plan.fds if plan is not None else None
        if preserved is None:  # start() in another process: its own fds
            n = int(opts.get("preserve_fds") or 0)
            preserved = {fd: fd for fd in range(3, 3 + n)}
        for fd, have in sorted(preserved.items()):
            link = dumped.get(str(fd), "")
            if link.startswith(("socket:[", "pipe:[")):
                o.inherit_fd.add(key=link, fd=have)
                pass_fds.append(have)
        given = {i.key for i in o.inherit_fd}
        missing = [k for k in desc.get("external_unix") or [] if k not in given]
        if missing:
            at = {link: fd for fd, link in dumped.items()}
            where = ", ".join(f"{k} (fd {at[k]} of the init)" if k in at else k
                              for k in missing)
            raise CheckpointError(
                f"container {container.id}: the checkpoint holds a unix socket connected "
                f"to a peer outside the container: {where}; restore needs a new socket "
                "in its place (preserve_fds)")

        def on_notify(script, pid, fds):
            if script == "post-restore":
                result["pid"] = pid
            elif script == "orphan-pts-master" and fds:
                master = os.dup(fds[0])
                sock_path = info.get("console_socket")
                if sock_path:
                    from lowlevel import tty
                    s = tty.connect_console_socket(sock_path)
                    try:
                        tty.send_fd(s, master, b"/dev/ptmx")
                    finally:
                        s.close()
                        os.close(master)
                else:
                    result["master"] = master  # relayed once the restore succeeded

        started = time.time()  # a restore.log older than this is stale
        _criu.swrk(rpc.RESTORE, o, criu_path=container.criu_path, pass_fds=pass_fds,
                   on_notify=on_notify)
    except _criu.SwrkError as exc:
        _undo_restore(cg, stdio, result)
        fresh = _fresh(log_path, started)
        raise CheckpointError(_failure(container.id, "restore", exc, log_path, started),
                              log_path if fresh else None,
                              _criu.log_tail(log_path) if fresh else "") from None
    except BaseException:
        _undo_restore(cg, stdio, result)
        raise
    finally:
        for fd in (imgfd, workfd):
            if fd is not None:
                os.close(fd)
        if mounted:
            try:
                M.umount(criu_root, M.MNT_DETACH)
            except OSError:
                pass
        try:
            os.rmdir(criu_root)
        except OSError:
            pass
    pid = result.get("pid")
    if not pid:
        _undo_restore(cg, stdio, result)
        raise CheckpointError(f"container {container.id}: CRIU restored but sent no "
                              "post-restore pid", log_path, _criu.log_tail(log_path))
    stdio.close_child_side()
    if result.get("master") is not None:
        from .console import Relay
        result["console"] = Relay(result.pop("master"), io)
    held = plan.held if plan is not None else None
    if held:
        # the dups of the caller's fds: the relays and CRIU have their own
        # now, except a console's stdin, which its thread dups when it runs
        # (a read end: harmless to keep until the container object goes)
        keep = io.stdin if result.get("console") is not None and io is not None else None
        _close_all([fd for fd in held if fd != keep])
        held[:] = [fd for fd in held if fd == keep]
    st.update(pid=pid, start_time=P.start_time(pid), status="running")
    st.pop("restore", None)
    container.save_record(st)
    if info.get("pid_file"):
        launch.write_pid_file(info["pid_file"], pid)
    stdio.start()
    console = result.get("console")
    if console is not None:
        console.start()
    container.attach_init(pid, stdio, console)


def _undo_restore(cg, stdio, result):
    """A failed restore leaves the checkpoint and the state store as they
    were (and the container CREATED: start() may try again)."""
    if stdio is not None:
        stdio.discard()
    if result.get("master") is not None:
        _io.close_fd(result.pop("master"))
    launch.discard_cgroup(cg)
