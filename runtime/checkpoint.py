"""checkpoint and restore: CRIU does the work, barerun drives its RPC.

checkpoint(CheckpointOpts) maps the options onto criu_opts, lets CRIU
freeze the container through its freezer cgroup, dump it into the images
directory, and (unless ``exit``) thaw it again.  The directory is
self-describing: the CRIU images, ``config.json`` (the spec the container
ran with), ``barerun.json`` (id, bundle, versions, options, what fds 0-2
were) and ``dump.log``.

Restore is ``runtime.create(new_id, bundle, checkpoint=dir)`` (CREATED,
nothing runs yet) then ``start()``: the rootfs is bound on a mount point
CRIU can use as root, a new cgroup is made for the new id, the new stdio
pipes replace the dumped ones (inherit_fd), a terminal master comes back
with the orphan-pts-master notify, and the restored init's pid with
post-restore.  The images stay intact, so one checkpoint restores again.
"""

import json
import os
import shutil
import signal as _signal
import time
from dataclasses import asdict, dataclass, field

from lowlevel import cgroups
from lowlevel import criu as _criu
from lowlevel import mounts as M
from lowlevel import namespaces as N
from lowlevel import pidfd as P

from . import io as _io
from .errors import CheckpointError, ContainerError, NotFound
from .spec import load_bundle
from .status import Status, require

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


def checkpoint(container, opts):
    """Dump ``container`` into opts.path; see the module docstring."""
    rpc = _criu._rpc()
    status = container.status()
    require(status, "checkpoint", container.id)
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
    pid = container.pid
    cg = container.cgroup
    imgfd = os.open(path, os.O_DIRECTORY | os.O_RDONLY)
    workfd = os.open(work, os.O_DIRECTORY | os.O_RDONLY)
    log_path = os.path.join(work, "dump.log")
    o = _criu.new_opts()
    o.images_dir_fd = imgfd
    o.work_dir_fd = workfd
    o.log_file = "dump.log"
    o.pid = pid
    o.leave_running = not opts.exit
    options = asdict(opts)
    _common_opts(o, spec, options, rpc)
    if cg is not None:
        layout = cg.layout
        o.freeze_cgroup = cg.paths["freezer"] if "freezer" in layout.v1 else cg.paths["unified"]
    for m in spec.mounts:
        if m.bind:
            o.ext_mnt.add(key=m.destination, val=m.destination)
    descriptors = _fd_links(pid)
    was_paused = status == Status.PAUSED
    try:
        with container._store:
            _criu.swrk(rpc.DUMP, o, criu_path=container.criu_path, pass_fds=(imgfd, workfd))
    except _criu.SwrkError as exc:
        if cg is not None and not was_paused:
            try:
                cg.thaw()  # a failed dump must leave the container running
            except OSError:
                pass
        raise CheckpointError(_failure(container.id, "dump", exc, log_path), log_path,
                              _criu.log_tail(log_path)) from None
    finally:
        os.close(imgfd)
        os.close(workfd)
    desc = {
        "id": container.id, "bundle": container.bundle,
        "created": container._st.get("created", ""),
        "checkpointed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "barerun_version": _version(), "criu_version": _criu_version(container.criu_path),
        "options": {k: v for k, v in options.items() if k not in ("path", "work_path")},
        "descriptors": descriptors, "terminal": spec.process.terminal,
        "cgroup": container._st.get("cgroup"),
    }
    with open(os.path.join(path, DESCRIPTOR), "w") as f:
        json.dump(desc, f, indent=1)
    shutil.copyfile(os.path.join(container.bundle, "config.json"),
                    os.path.join(path, "config.json"))
    if opts.exit:
        container._reap()
        container._record_exit(container._exit_status if container._exit_status is not None
                               else 128 + _signal.SIGKILL)


def _failure(cid, what, exc, log_path):
    """The message of a failed dump/restore: CRIU's own words for the cause.

    cr_errmsg is CRIU's *first* error, often a harmless one (it cannot raise
    its own RLIMIT_NOFILE without CAP_SYS_RESOURCE); the cause is the last
    error before the final "Dumping FAILED"."""
    errors = _criu.log_errors(log_path)
    cause = [e for e in errors if "FAILED" not in e and "rlimit: Can't setup" not in e]
    text = "; ".join(cause[:3]) if cause else (exc.errmsg or str(exc))
    return f"container {cid}: criu {what} failed: {text}"


def _version():
    from . import __version__
    return __version__


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
    except (OSError, ValueError) as exc:
        raise NotFound(f"{path}/{DESCRIPTOR} is unreadable: {exc}") from None
    if not os.path.exists(os.path.join(path, "inventory.img")):
        raise NotFound(f"{path} has no CRIU images (inventory.img is missing)")
    return desc


def prepare_restore(store, spec, checkpoint_path, *, io=None, pid_file=None,
                    console_socket=None, options=None):
    """create(..., checkpoint=...): a CREATED container that restores on start."""
    from .container import Container
    from .create import cgroup_path
    path = os.path.abspath(checkpoint_path)
    desc = read_checkpoint(path)
    store.create()
    try:
        state = {
            "id": store.id, "status": "created", "pid": 0, "start_time": 0,
            "bundle": spec.bundle, "rootfs": spec.rootfs, "cgroup": cgroup_path(spec, store.id),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) +
                       f".{time.time_ns() % 1_000_000_000:09d}Z",
            "annotations": spec.annotations, "owner": "",
            "restore": {"path": path, "pid_file": pid_file, "console_socket": console_socket,
                        "work_path": (options or {}).get("work_path"),
                        "inherit_io": getattr(io, "stdin", None) == "inherit",
                        "options": {**desc.get("options", {}),
                                    **{k: v for k, v in (options or {}).items()
                                       if k != "work_path"}}},
        }
        with store:
            store.write(state)
    except BaseException:
        store.remove()
        raise
    c = Container(store, state, spec=spec)
    c._restore_io = io
    return c


def restore(container):
    """start() of a container made from a checkpoint: CRIU restores it."""
    rpc = _criu._rpc()
    st = container._st
    info = st["restore"]
    path = info["path"]
    desc = read_checkpoint(path)
    spec = load_bundle(container.bundle)
    opts = info.get("options") or {}
    io = getattr(container, "_restore_io", None)
    if io is None:
        io = _io.IO.inherit() if info.get("inherit_io") else None
    work = info.get("work_path") or path
    cg = cgroups.Cgroup(st["cgroup"])
    cg.create()
    from .create import apply_device_rules, device_rules, to_cgroup_resources
    stdio = None
    criu_root = os.path.join(container._store.dir, "criu-root")
    mounted = False
    imgfd = workfd = None
    log_path = os.path.join(work, "restore.log")
    result = {}
    try:
        cg.set_resources(to_cgroup_resources(spec.resources))
        apply_device_rules(cg, device_rules(spec))
        os.makedirs(criu_root, exist_ok=True)
        M.mount(spec.rootfs, criu_root, None, M.MS["MS_BIND"] | M.MS["MS_REC"])
        mounted = True
        M.mount(None, criu_root, None, M.MS["MS_PRIVATE"] | M.MS["MS_REC"])
        imgfd = os.open(path, os.O_DIRECTORY | os.O_RDONLY)
        workfd = os.open(work, os.O_DIRECTORY | os.O_RDONLY)
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
        terminal = desc.get("terminal")
        stdio = _io.open_stdio(None if terminal else io)
        pass_fds = [imgfd, workfd]
        for i, link in enumerate(desc.get("descriptors", [])):
            if link.startswith("pipe:") and stdio.child[i] is not None:
                o.inherit_fd.add(key=link, fd=stdio.child[i])
                pass_fds.append(stdio.child[i])

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
                    from .console import Relay
                    result["console"] = Relay(master, io)

        _criu.swrk(rpc.RESTORE, o, criu_path=container.criu_path, pass_fds=pass_fds,
                   on_notify=on_notify)
    except _criu.SwrkError as exc:
        _undo_restore(cg, stdio)
        raise CheckpointError(_failure(container.id, "restore", exc, log_path), log_path,
                              _criu.log_tail(log_path)) from None
    except BaseException:
        _undo_restore(cg, stdio)
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
        raise CheckpointError(f"container {container.id}: CRIU restored but sent no "
                              "post-restore pid", log_path, _criu.log_tail(log_path))
    stdio.close_child_side()
    st.update(pid=pid, start_time=P.start_time(pid), status="running")
    st.pop("restore", None)
    container._store.write(st)
    if info.get("pid_file"):
        from .create import write_pid_file
        write_pid_file(info["pid_file"], pid)
    container._child_pid = pid
    container._stdio = stdio
    stdio.start()
    if result.get("console") is not None:
        container._console = result["console"]
        container._console.start()


def _undo_restore(cg, stdio):
    """A failed restore leaves the checkpoint and the state store as they were."""
    if stdio is not None:
        stdio.close_child_side()
        stdio.close_stdin()
    try:
        cg.kill_all(_signal.SIGKILL)
    except OSError:
        pass
    try:
        cg.remove()
    except OSError:
        pass
