"""The container's init process, from fork to execve.

``run_init`` runs in the child that os.fork() made (see create.py): pid 1
of the container's new pid namespace.  Python may run here: this is a real
fork, not a raw clone.  It never returns: it execs the container's program
or reports the failed step to the parent through the sync channel and
_exit()s.  The order of the steps is the order a reader should learn them:

  non-dumpable -> trace to the sync channel -> close every inherited fd ->
  join cgroups -> namespaces -> rootfs (mounts, devices, pivot_root) ->
  hostname -> sysctl / oom_score_adj -> masked and read-only paths ->
  rlimits -> cwd (checked inside the root) -> [seccomp without
  no_new_privs] -> user, groups, capabilities -> no_new_privs -> program
  checked -> "ready" -> wait for start -> [seccomp with no_new_privs] ->
  execve through the sealed exec stub (lowlevel.execstub).
"""

import errno
import json
import os
import signal
import stat
import sys

from lowlevel import caps as C
from lowlevel import execstub
from lowlevel import namespaces as N
from lowlevel import system as S

from . import rootfs
from . import seccomp as _seccomp
from .errors import InvalidSpec, os_message
from .launch import request, send

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Fail(Exception):
    def __init__(self, step, exc=None, path=None, message=None):
        self.step = step
        self.path = path
        self.errno = getattr(exc, "errno", None)
        if message is None and isinstance(exc, OSError):
            message = os_message(exc)
        self.message = message or (str(exc) if exc else step)


def run_init(plan):
    """Child side; ``plan`` is an InitPlan (see create.py).  Never returns."""
    try:
        _init(plan)
    except BaseException as e:  # noqa: BLE001 - report anything, never a traceback
        report_failure(plan.report_fd, e, "init")
    os._exit(1)


def report_failure(fd, exc, where):
    """A forked child's failure as one error record on its sync channel:
    the step, message, errno and path (or spec field) of a Fail, a rootfs
    StepError or an InvalidSpec; anything else under ``where``."""
    if isinstance(exc, Fail):
        rec = (exc.step, exc.message, exc.errno, exc.path)
    elif isinstance(exc, rootfs.StepError):
        # the step names the spec field and the path its destination: a
        # message about the /proc/self/fd/N the call went through says
        # nothing more than the kernel's word
        err = getattr(exc.exc, "errno", None)
        text = getattr(exc.exc, "strerror", None) or str(exc.exc)
        if err and "/proc/self/fd/" in text:
            text = os.strerror(err)
        rec = (exc.step, text, err, exc.path)
    elif isinstance(exc, InvalidSpec):
        rec = ("spec", str(exc), None, exc.field)
    elif isinstance(exc, OSError):
        rec = (where, os_message(exc), exc.errno, exc.filename)
    else:
        rec = (where, f"{type(exc).__name__}: {exc}", None, None)
    step, message, err, path = rec
    try:
        send(fd, error={"step": step, "message": message, "errno": err, "path": path})
    except OSError:
        pass


def _init(plan):
    spec = plan.spec
    proc = plan.process
    # 1-2. a clean, private process in the container's cgroup
    begin_child("barerun init", plan.report_fd, {plan.stub_fd, plan.sync_in} - {None},
                plan.preserve_fds, plan.cgroup, plan.joined_unified, plan.console)
    # 3. namespaces (the pid namespace was chosen by the parent at fork)
    new_flags = 0
    for kind, path in spec.namespaces.items():
        if kind == "pid":
            continue
        if path:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    N.setns(fd, N.FLAGS[N.ns_name(kind)])
                finally:
                    os.close(fd)
            except OSError as exc:
                raise Fail(f"join {kind} namespace", exc, path) from None
        else:
            new_flags |= N.FLAGS[N.ns_name(kind)]
    if new_flags:
        try:
            N.unshare(new_flags)
        except OSError as exc:
            raise Fail("unshare", exc) from None
    if new_flags & N.FLAGS["net"]:
        # a new network namespace has only `lo`, and it is down
        try:
            S.link_up("lo")
        except OSError as exc:
            raise Fail("bring lo up", exc, "lo") from None
    # the start fifo lives in the host's state dir: open it before pivot_root
    fifo_fd = None
    if plan.fifo_path:
        try:
            fifo_fd = os.open(plan.fifo_path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise Fail("open exec fifo", exc, plan.fifo_path) from None
    # sysctls and oom_score_adj through the host's /proc, which already
    # shows this process's new namespaces
    for key, value in spec.sysctl.items():
        try:
            S.set_sysctl(key, value)
        except (OSError, ValueError) as exc:
            raise Fail(f"sysctl {key}", exc, "/proc/sys/" + key.replace(".", "/")) from None
    if proc.oom_score_adj is not None:
        try:
            S.set_oom_score_adj(proc.oom_score_adj)
        except OSError as exc:
            raise Fail("oom_score_adj", exc, "/proc/self/oom_score_adj") from None
    # the console socket is a host path: connect while it is reachable
    console_sock = None
    if plan.console is not None:
        try:
            console_sock = plan.console.connect_in_child()
        except OSError as exc:
            raise Fail("connect to the console socket", exc, plan.console.path) from None
    # the capability count comes from /proc/sys/kernel/cap_last_cap: read
    # it now, a chroot (no mount namespace) has no /proc
    C.last_cap()
    # 4. the root filesystem; the hooks of create just before pivot_root
    hook_state = []

    def create_hooks():
        hook_state.append(_create_hooks(plan))
    if "mount" in spec.namespaces and not spec.namespaces["mount"]:
        rootfs.prepare(spec, plan.cgroup.rel if plan.cgroup is not None else None,
                       before_pivot=create_hooks)
    else:
        create_hooks()
        try:
            os.chroot(spec.rootfs)
            os.chdir("/")
        except OSError as exc:
            raise Fail("chroot", exc, spec.rootfs) from None
    # 5. hostname
    if spec.hostname is not None:
        try:
            S.sethostname(spec.hostname)
        except OSError as exc:
            raise Fail("sethostname", exc, spec.hostname) from None
    if spec.domainname is not None:
        try:
            S.setdomainname(spec.domainname)
        except OSError as exc:
            raise Fail("setdomainname", exc, spec.domainname) from None
    if "mount" in spec.namespaces and not spec.namespaces["mount"]:
        rootfs.finish(spec)
    from .io import reopen_null
    reopen_null()
    console_fd = child_console(console_sock, proc.console_size)
    prepare_process(proc, console_fd, plan.seccomp)
    exe = find_executable(proc)
    send(plan.report_fd, ready=True)
    log_to_report_pipe(None)
    os.close(plan.report_fd)
    if plan.sync_in is not None:
        os.close(plan.sync_in)  # no host fd waits with the init for start
    if fifo_fd is not None:
        # waiting as pid 1 of its pid namespace, the init would ignore every
        # signal it has no handler for (only SIGKILL is forced): make the
        # usual stop signals end a created container, as with runc
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                    signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, _exit_on_signal)
        while True:
            try:
                got = os.read(fifo_fd, 1)
            except InterruptedError:  # pragma: no cover
                continue
            if got:
                break
        os.close(fifo_fd)
    if spec.hooks.get("startContainer") and hook_state[0]:
        _start_hooks(spec, hook_state[0])
    env = environ(proc)
    if plan.seccomp is not None and proc.no_new_privileges:
        # with no_new_privs the filter needs no capability: loaded as late
        # as possible, so the runtime's own syscalls above need not pass it
        # (the sync channel is closed: say it on stderr, as a failed execve)
        try:
            _seccomp.load(plan.seccomp)
        except OSError as exc:
            os.write(2, f"barerun: linux.seccomp: {exc.strerror or exc}\n".encode())
            os._exit(1)
    try:
        # through the sealed stub: /proc/self/exe is never the host's
        # interpreter at the program's execve (CVE-2019-5736 class)
        execstub.execve(plan.stub_fd, exe, proc.args, env)
    except OSError as exc:
        os.write(2, f"barerun: exec {proc.args[0]}: {exc.strerror}\n".encode())
        os._exit(127 if exc.errno == errno.ENOENT else 126)


CREATE_HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer")


def _create_hooks(plan):
    """Every mount made, before pivot_root: the parent runs the prestart
    and createRuntime hooks (a launcher step, in the runtime's
    namespaces), then this process the createContainer ones (in the
    container's namespaces, their paths still resolving in the runtime's
    mount tree).  Returns the state JSON the hooks were given, or None
    when the spec has no hook of create or start."""
    spec = plan.spec
    if not any(spec.hooks.get(stage) for stage in CREATE_HOOKS):
        return None
    from . import hooks
    if spec.hooks.get("startContainer"):
        import subprocess  # noqa: F401 - after pivot_root the host's modules are out of reach
    answer = request(plan.report_fd, plan.sync_in, "hooks")
    state = answer["state"]
    if spec.hooks.get("createContainer"):
        try:
            hooks.run(spec.hooks["createContainer"], state)
        except hooks.HookError as exc:
            raise Fail(exc.fld, message=str(exc)) from None
    return state


def _start_hooks(spec, state):
    """After start, before the program's execve: the startContainer hooks,
    in the container (their paths resolve there).  The sync channel is
    closed by now: a failure is said on stderr and ends the init."""
    from . import hooks
    st = json.loads(state)
    st["status"] = "created"
    try:
        hooks.run(spec.hooks["startContainer"], json.dumps(st))
    except hooks.HookError as exc:
        os.write(2, f"barerun: {exc}\n".encode())
        os._exit(1)


def begin_child(title, report_fd, keep, preserve_fds, cgroup, joined_unified, console=None):
    """The first steps of every forked child, the init's and exec's.

    Python's own signal settings must not reach the container's program (it
    ignores SIGPIPE/SIGXFSZ and handles SIGINT).  While this Python process
    is in the container's namespaces, its /proc/<pid> must not be reachable
    from inside (it maps the host interpreter): non-dumpable, and titled so
    cmdline does not show the runtime's own command line; execve makes the
    new program dumpable again.  A session of its own: the runtime's
    session leader lies outside the container (CRIU refuses to dump a
    session whose leader it cannot see).  Log records go to the parent
    over ``report_fd`` (fd 2 is already the container's stderr).  Every
    inherited fd but stdio, the sync channel, ``keep``, the ``console``
    channel's child end and the fds asked for is closed.  Then the cgroup is
    joined, before a new cgroup namespace takes the current one as root.
    """
    log_to_report_pipe(report_fd)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    C.set_dumpable(False)
    C.set_process_title(title)
    os.setsid()
    keep = {0, 1, 2, report_fd, *keep, *range(3, 3 + preserve_fds)}
    if console is not None:
        keep |= console.child_fds()
    close_stray_fds(keep, preserve_fds)
    if cgroup is not None:
        try:
            cgroup.join(unified=not joined_unified)
        except OSError as exc:
            raise Fail("join cgroup", exc, cgroup.rel) from None


class _ReportHandler:
    """The child's only log handler: each record as one {"log": ...} JSON
    line on the sync channel (see launch.Channel.serve)."""
    fd = None


def log_to_report_pipe(fd):
    """In a forked child: send every log record to the parent over the
    sync channel ``fd`` instead of the parent's handlers (whose stderr is
    now the container's, whose files are host fds); None stops it.
    Nothing to do when logging was never imported (the quiet CLI)."""
    _ReportHandler.fd = fd
    if "logging" not in sys.modules or fd is None:
        return
    import logging  # loaded already: no cost

    class Handler(logging.Handler):
        def emit(self, record):
            if _ReportHandler.fd is None:
                return
            line = json.dumps({"log": record.getMessage(), "logger": record.name,
                               "container": getattr(record, "container", ""),
                               "level": record.levelno})
            try:
                os.write(_ReportHandler.fd, (line + "\n").encode())
            except OSError:
                pass

    handler = Handler()
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for lg in loggers:
        if lg.handlers:
            lg.handlers = [handler]


def environ(proc):
    """process.env as the dict execve takes; HOME, when the spec's env has
    none, from the user's entry in the container's /etc/passwd, else "/"
    (as runc)."""
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in proc.env)
    if "HOME" not in env:
        env["HOME"] = _passwd_home(proc.user.uid)
    return env


def _passwd_home(uid):
    """The home directory of ``uid`` in the container's /etc/passwd (read
    from inside its root, at most 1 MiB, never through a symlink), or "/"."""
    try:
        fd = os.open("/etc/passwd", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return "/"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "/"
        data = os.read(fd, 1 << 20)
    except OSError:
        return "/"
    finally:
        os.close(fd)
    for line in data.decode("utf-8", "replace").splitlines():
        f = line.split(":")
        if len(f) >= 7 and f[2].isdigit() and int(f[2]) == uid and f[5].startswith("/"):
            return f[5].replace("\0", "")
    return "/"


def child_console(sock, size):
    """Inside the container: the pty whose master went out over ``sock``;
    returns the slave fd (None without a terminal)."""
    if sock is None:
        return None
    from .console import open_console
    try:
        return open_console(sock, size)
    except OSError as exc:
        raise Fail("create the console (pty in the container's devpts)", exc,
                   "/dev/ptmx") from None


def _exit_on_signal(sig, _frame):
    os._exit(128 + sig)


def prepare_process(proc, console_fd=None, seccomp=None):
    """rlimits, terminal, cwd, groups, uid/gid, capabilities, no_new_privs:
    shared by the init and by exec'd processes.  ``seccomp`` (a built
    filter) is loaded here only without no_new_privs: then loading needs
    CAP_SYS_ADMIN, so it comes before the capabilities are dropped (as
    runc); with no_new_privs the caller loads it just before execve."""
    for name, soft, hard in proc.rlimits:
        try:
            S.setrlimit(name, soft, hard)
        except OSError as exc:
            # the errno's own words too (runc's "operation not permitted"):
            # podman classifies the error by them
            message = exc.strerror or str(exc)
            if exc.errno and os.strerror(exc.errno).lower() not in message.lower():
                message += f" ({os.strerror(exc.errno)})"
            raise Fail(f"setrlimit {name}", exc, message=message) from None
    if console_fd is not None:
        from lowlevel import tty
        try:
            tty.set_controlling_tty(console_fd)  # begin_child made the session
            for i in (0, 1, 2):
                os.dup2(console_fd, i)
            if console_fd > 2:
                os.close(console_fd)
        except OSError as exc:
            raise Fail("set up the console", exc) from None
    user = proc.user
    if user.umask is not None:
        os.umask(user.umask)
    else:
        os.umask(0o022)
    # the cwd is checked right after chdir and before the spec's seccomp
    # filter is loaded (it may deny getcwd, as the OCI suite's does)
    cwd_checked = False
    try:
        os.chdir(proc.cwd)
        check_cwd_in_root()
        cwd_checked = True
    except OSError as exc:
        if user.uid == 0:
            raise Fail("chdir to process.cwd", exc, proc.cwd) from None
    if seccomp is not None and not proc.no_new_privileges:
        try:
            _seccomp.load(seccomp)
        except OSError as exc:
            raise Fail("seccomp", exc, "linux.seccomp") from None
    capset = proc.capabilities
    try:
        if capset is not None:
            C.bounding_drop(capset.get("bounding", []))
        C.set_keepcaps(True)
        os.setgroups(user.additional_gids)
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as exc:
        raise Fail("set user", exc, f"uid={user.uid} gid={user.gid}") from None
    if user.uid != 0:
        try:
            os.chdir(proc.cwd)
        except OSError as exc:
            raise Fail("chdir to process.cwd", exc, proc.cwd) from None
        if not cwd_checked:  # only this user could enter it
            check_cwd_in_root()
    if capset is not None:
        try:
            C.set_caps(effective=capset.get("effective", []),
                       permitted=capset.get("permitted", []),
                       inheritable=capset.get("inheritable", []))
            C.ambient_clear()
            # as runc: an ambient capability the process cannot hold
            # (not both permitted and inheritable) is skipped, not fatal
            allowed = set(capset.get("permitted", [])) & set(capset.get("inheritable", []))
            ambient = [c for c in capset.get("ambient", []) if c in allowed]
            if ambient:
                C.ambient_raise(ambient)
        except (OSError, ValueError) as exc:
            raise Fail("set capabilities", exc) from None
    C.set_keepcaps(False)
    if proc.no_new_privileges:
        C.set_no_new_privs()


def find_executable(proc):
    """Resolve process.args[0] through the PATH of process.env, as execvp
    would, and check it as execve will: a missing program, a directory or
    a file without execute permission fails create (or exec) naming the
    file and errno, not start (runc's `exec: "/etc": permission denied`,
    which podman classifies as 126 / 127)."""
    prog = proc.args[0]
    if "/" in prog:
        err = _exec_error(prog)
        if err:
            raise Fail("exec", OSError(err, os.strerror(err)), prog,
                       message=f"{prog!r}: {os.strerror(err)}")
        return prog
    path = DEFAULT_PATH
    for e in proc.env:
        if e.startswith("PATH="):
            path = e[5:]
    for d in path.split(":"):
        cand = os.path.join(d or ".", prog)
        if not _exec_error(cand):
            return cand
    raise Fail("exec", OSError(errno.ENOENT, "not found"), prog,
               message=f"{prog!r}: executable file not found in $PATH")


def _exec_error(path):
    """The errno execve(path) would fail with for what stat can tell: 0
    for a regular file with execute permission."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return exc.errno
    if not stat.S_ISREG(st.st_mode) or not os.access(path, os.X_OK):
        return errno.EACCES
    return 0


def close_stray_fds(keep, preserve_fds=0):
    """Close every fd not in ``keep`` (CVE-2024-21626 class: an inherited
    host directory fd, e.g. the cgroup dir opened for CLONE_INTO_CGROUP,
    reachable as /proc/self/fd/N from process.cwd, leads back to the host's
    /).  Closed, not only marked close-on-exec: the spec's values are used
    after this, and a process inside the container's namespaces holds
    nothing of the host.  The preserved fds (3 .. 3+preserve_fds-1) become
    inheritable."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep:
            if 3 <= fd < 3 + preserve_fds:
                os.set_inheritable(fd, True)
            continue
        try:
            os.close(fd)
        except OSError:
            pass  # the listing's own fd, already closed


def check_cwd_in_root():
    """After chdir(process.cwd): the cwd must be reachable from the
    container's root (CVE-2024-21626 class).  getcwd(2) names a directory
    outside the root "(unreachable)/..."; glibc then fails with ENOENT."""
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        cwd = None
    if cwd is None or not cwd.startswith("/"):
        raise Fail("chdir to process.cwd", OSError(errno.EPERM, "outside the container's root"),
                   "process.cwd", message="the current directory is outside the container's root")
