"""barerun's command line, shaped like runc's so containerd and podman can
drive it (see README.md, "Using barerun from containerd and podman").

    barerun [--root DIR] [--log FILE] [--log-format text|json] [--debug|--trace]
            COMMAND [OPTIONS] ID ...

Errors are one line on stderr (and a JSON record in --log with
--log-format json) and exit status 1: never a traceback.  Go-style single
dash long flags (``-no-subreaper``, ``-bundle``) are accepted as runc does.
"""

import argparse
import json
import os
import signal
import sys
import time

import runtime

from . import spec as _spec
from .errors import ContainerError, InvalidState, NotFound, one_line, os_message
from .status import Status

# go-runc (containerd) reads the "commit: " and "spec: " lines by prefix;
# podman shows the text as it is
VERSION_TEXT = ("barerun version {v}\ncommit: {commit}\nspec: {spec}\n"
                "python: {py}\n")
OCI_VERSION = "1.0.2-dev"  # the runtime-spec release barerun implements
_LEVELS = {"WARNING": "warning", "CRITICAL": "fatal"}


class Usage(Exception):
    """A command-line mistake (exit status 1 with a usage hint)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Usage(f"{self.prog}: {message}")


# ---------------------------------------------------------------- logging

def rfc3339(ns=None):
    """A time as RFC 3339 in UTC with microseconds, as logrus writes it."""
    ns = time.time_ns() if ns is None else ns
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        f".{ns // 1000 % 1_000_000:06d}Z"


def log_line(level, msg, fmt, ns=None):
    """One log record: a JSON object as runc's logrus writes (containerd
    decodes a stream of {"level","msg","time"}; podman reads one object),
    or logrus's text form."""
    if fmt == "json":
        return json.dumps({"level": level, "msg": msg, "time": rfc3339(ns)})
    return f'time="{rfc3339(ns)}" level={level} msg={json.dumps(msg)}'


def write_log(path, level, msg, fmt):
    try:
        with open(path, "a") as f:
            f.write(log_line(level, msg, fmt) + "\n")
        return True
    except OSError as exc:
        sys.stderr.write(f"barerun: cannot open log file {path}: {exc.strerror}\n")
        return False


def _setup_logging(args):
    """Only --debug/--trace need Python's logging (the library reports its
    steps there); otherwise barerun never imports it: errors are written by
    _fail, and tracing is switched off."""
    if not (args.debug or args.trace):
        from lowlevel import tracing
        tracing.quiet()
        return
    import logging

    class JSONFormatter(logging.Formatter):
        def format(self, record):
            level = _LEVELS.get(record.levelname, record.levelname.lower())
            return log_line(level, record.getMessage(), "json", int(record.created * 1e9))

    root = logging.getLogger("barerun")
    root.handlers.clear()
    root.propagate = False
    root.setLevel(logging.DEBUG)
    handler = None
    if args.log:
        try:
            handler = logging.FileHandler(args.log, mode="a")
        except OSError as exc:
            sys.stderr.write(f"barerun: cannot open log file {args.log}: {exc.strerror}\n")
            args.log = None  # errors go to stderr, once, as without --log
    if handler is not None:
        handler.setFormatter(JSONFormatter() if args.log_format == "json" else
                             logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        # errors are written by _fail; the handler takes the debug records
        handler.addFilter(lambda record: record.levelno < logging.ERROR)
        root.addHandler(handler)
    if args.trace:
        # --trace shows every kernel step on stderr, each with the container
        # it was for and the (host) pid of the process that made it
        t = logging.StreamHandler(sys.stderr)

        def container_of(record):
            record.container = getattr(record, "container", "") or "-"
            return True
        t.addFilter(container_of)
        t.setFormatter(logging.Formatter("trace %(container)s %(process)d: %(message)s"))
        tlog = logging.getLogger("barerun.trace")
        tlog.addHandler(t)
        tlog.setLevel(logging.DEBUG)
        tlog.propagate = bool(args.debug)  # --debug also sends them to --log


# ---------------------------------------------------------------- commands

def _load(args):
    return runtime.load(args.id, root=args.root)


def cmd_spec(args):
    path = os.path.join(args.bundle or ".", "config.json")
    if os.path.exists(path):
        raise ContainerError(f"{path} already exists; remove it first")
    spec = default_spec()
    with open(path, "w") as f:
        json.dump(spec, f, indent="\t")
        f.write("\n")


def _create(args):
    """create and run: the caller's stdio passes straight through."""
    return runtime.create(args.id, args.bundle or os.getcwd(), root=args.root,
                          io=runtime.IO.inherit(), pid_file=args.pid_file,
                          preserve_fds=args.preserve_fds, console_socket=args.console_socket)


def cmd_create(args):
    _create(args)


def cmd_start(args):
    _load(args).start()


def cmd_run(args):
    c = _create(args)
    if args.detach:
        c.start()
        return 0
    # forward the usual signals to the container's init, as runc does
    def forward(sig, _frame):
        try:
            c.kill(sig)
        except ContainerError:
            pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
        signal.signal(sig, forward)
    try:
        c.start()
        status = c.wait()
    finally:
        if not args.keep:
            try:
                c.delete(force=True)
            except ContainerError:
                pass
    return status


def state_json(c):
    st = c.state()
    raw = c.record
    return {
        "ociVersion": "1.0.2",
        "id": c.id,
        "pid": st.pid,
        "status": st.status.oci,
        "bundle": raw.get("bundle", ""),
        "rootfs": raw.get("rootfs", ""),
        "created": raw.get("created", ""),
        "annotations": raw.get("annotations") or {},
        "owner": raw.get("owner", ""),
    }


def cmd_state(args):
    print(json.dumps(state_json(_load(args)), indent="  "))


def cmd_list(args):
    from .store import list_ids
    rows = []
    for cid in list_ids(args.root):
        try:
            rows.append(state_json(runtime.load(cid, root=args.root)))
        except ContainerError:
            continue  # deleted meanwhile
    if args.quiet:
        for r in rows:
            print(r["id"])
    elif args.format == "json":
        print(json.dumps(rows))
    else:
        fmt = "{:<20} {:<8} {:<10} {:<40} {:<30} {}"
        print(fmt.format("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"))
        for r in rows:
            print(fmt.format(r["id"], r["pid"], r["status"], r["bundle"], r["created"],
                             r["owner"] or "root"))


def cmd_kill(args):
    c = _load(args)
    c.kill(args.signal or "SIGTERM", all=args.all)


def cmd_delete(args):
    try:
        c = _load(args)
    except NotFound:
        if args.force:
            return 0
        raise
    c.delete(force=args.force)


def cmd_pause(args):
    _load(args).pause()


def cmd_resume(args):
    _load(args).resume()


def cmd_ps(args):
    pids = _load(args).processes()
    if args.format == "json":
        print(json.dumps(pids))
        return
    import subprocess
    try:
        out = subprocess.run(["ps", "-ef", *args.ps_args], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        print("PID")
        for pid in pids:
            print(pid)
        return
    print(out[0])
    col = out[0].split().index("PID")
    for line in out[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            print(line)


def exec_spec(args, c):
    """The process JSON for exec: --process FILE, or args + flags over the
    container's own process (env, cwd, user, capabilities)."""
    if args.process:
        try:
            with open(args.process, "rb") as f:
                return f.read()
        except OSError as exc:
            raise ContainerError(f"--process {args.process}: {exc.strerror}") from None
    if not args.command:
        raise ContainerError("exec: give --process FILE or the command to run")
    try:
        with open(os.path.join(c.bundle, "config.json")) as f:
            base = json.load(f).get("process", {})
    except (OSError, ValueError):
        base = {}
    proc = dict(base)
    proc["args"] = list(args.command)
    proc["terminal"] = bool(args.tty)
    if args.tty and not args.console_socket:
        raise ContainerError("exec --tty needs --console-socket")
    if args.cwd:
        proc["cwd"] = args.cwd
    env = list(proc.get("env", []))
    for e in args.env or []:
        key = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [e]
    proc["env"] = env
    if args.user:
        uid, _, gid = args.user.partition(":")
        try:
            proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise ContainerError(f"--user {args.user!r}: want UID[:GID] as numbers") from None
    if args.no_new_privs:
        proc["noNewPrivileges"] = True
    proc.pop("consoleSize", None)
    return json.dumps(proc).encode()


def cmd_exec(args):
    c = _load(args)
    spec = exec_spec(args, c)
    try:
        p = c.exec(runtime.ExecOpts(spec, runtime.IO.inherit()), pid_file=args.pid_file,
                   preserve_fds=args.preserve_fds, console_socket=args.console_socket)
    except runtime.ChildError as exc:
        # as runc: a process that could not be started is status 255
        _fail(args, f"exec failed: {exc}")
        return 255
    if args.detach:
        return 0
    return p.wait()


def _checkpoint_options(args):
    return dict(allow_tcp=args.tcp_established, allow_unix_sockets=args.ext_unix_sk,
                allow_terminal=args.shell_job, file_locks=args.file_locks,
                empty_namespaces=args.empty_ns or [],
                manage_cgroups_mode=args.manage_cgroups_mode)


def cmd_checkpoint(args):
    c = _load(args)
    opts = runtime.CheckpointOpts(exit=not args.leave_running,
                                  path=args.image_path or os.path.join(os.getcwd(), "checkpoint"),
                                  work_path=args.work_path, **_checkpoint_options(args))
    c.checkpoint(opts)
    if not args.leave_running:
        # as runc: a container checkpointed without --leave-running is gone
        c.delete(force=True)


def cmd_restore(args):
    image = args.image_path or os.path.join(os.getcwd(), "checkpoint")
    c = runtime.create(args.id, args.bundle or os.getcwd(), root=args.root,
                       io=runtime.IO.inherit(), checkpoint=image, pid_file=args.pid_file,
                       console_socket=args.console_socket,
                       restore_options={**{k: v for k, v in _checkpoint_options(args).items()
                                           if v}, "work_path": args.work_path})
    try:
        c.start()
    except ContainerError:
        c.delete(force=True)
        raise
    if args.detach:
        return 0
    try:
        return c.wait()
    finally:
        try:
            c.delete(force=True)
        except ContainerError:
            pass


def _criu_flags(p):
    p.add_argument("--image-path", default=None, help="CRIU images directory")
    p.add_argument("--work-path", default=None, help="CRIU logs directory")
    p.add_argument("--tcp-established", action="store_true")
    p.add_argument("--ext-unix-sk", action="store_true")
    p.add_argument("--shell-job", action="store_true")
    p.add_argument("--file-locks", action="store_true")
    p.add_argument("--empty-ns", action="append", help="namespace to restore empty (network)")
    p.add_argument("--manage-cgroups-mode", default=None,
                   choices=("soft", "full", "strict", "ignore", "props"))


def _git_commit():
    """The commit barerun runs from (its source checkout), else "unknown"."""
    git = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".git")
    try:
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        try:
            with open(os.path.join(git, ref)) as f:
                return f.read().strip()
        except FileNotFoundError:
            with open(os.path.join(git, "packed-refs")) as f:
                for line in f:
                    if line.rstrip().endswith(" " + ref):
                        return line.split()[0]
    except OSError:
        pass
    return "unknown"


def cmd_version(_args):
    sys.stdout.write(VERSION_TEXT.format(v=runtime.__version__, commit=_git_commit(),
                                         spec=OCI_VERSION, py=sys.version.split()[0]))


# ---------------------------------------------------------------- update

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(flag, text):
    """A size as runc takes it (docker's RAMInBytes): "-1" (unlimited) or
    a number with an optional binary unit: 512, 100k, 64m, 1.5g, 2GiB."""
    import re
    text = text.strip()
    if text == "-1":
        return -1
    m = re.fullmatch(r"(\d+(?:\.\d+)?) ?([kKmMgGtTpP]?)(?:[iI]?[bB])?", text)
    if not m:
        raise ContainerError(f"update: {flag} {text!r}: not a size (e.g. 512m, 1g or -1)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _int_flag(flag, text, minimum=None):
    try:
        v = int(text)
    except ValueError:
        raise ContainerError(f"update: {flag} {text!r}: not an integer") from None
    if minimum is not None and v < minimum:
        raise ContainerError(f"update: {flag} {v}: must be at least {minimum}")
    return v


def _read_resources(src):
    """LinuxResources JSON from a file, or from stdin for "-" (containerd)."""
    what = "stdin" if src == "-" else src
    try:
        if src == "-":
            text = sys.stdin.read()
        else:
            with open(src) as f:
                text = f.read()
    except OSError as exc:
        raise ContainerError(f"update: --resources {what}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ContainerError(f"update: --resources {what}: not text: {exc}") from None
    try:
        raw = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ContainerError(f"update: --resources {what}: invalid JSON: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ContainerError(f"update: --resources {what}: must hold a JSON object "
                             f"(LinuxResources), not {type(raw).__name__}")
    return raw


def update_resources(args):
    """The Resources asked for: --resources JSON first, then the flags
    (a flag given on the command line wins over the same JSON field)."""
    from .errors import InvalidSpec
    raw = _read_resources(args.resources) if args.resources else {}
    try:
        res = _spec.parse_resources(raw, "resources")
    except InvalidSpec as exc:
        src = "stdin" if args.resources == "-" else args.resources
        raise ContainerError(f"update: --resources {src}: {exc}") from None
    for flag, attr in (("--memory", "memory_limit"), ("--memory-swap", "memory_swap"),
                       ("--memory-reservation", "memory_reservation")):
        value = getattr(args, attr)
        if value is not None:
            setattr(res, attr, parse_bytes(flag, value))
    for flag, attr, minimum in (("--cpu-shares", "cpu_shares", 0),
                                ("--cpu-quota", "cpu_quota", -1),
                                ("--cpu-period", "cpu_period", 0),
                                ("--pids-limit", "pids_limit", None)):
        value = getattr(args, attr)
        if value is not None:
            setattr(res, attr, _int_flag(flag, value, minimum))
    if args.cpuset_cpus is not None:
        res.cpuset_cpus = args.cpuset_cpus
    if args.cpuset_mems is not None:
        res.cpuset_mems = args.cpuset_mems
    return res


def cmd_update(args):
    c = _load(args)
    c.update(update_resources(args))


# ---------------------------------------------------------------- events


def parse_duration(text):
    """A Go duration ("5s", "500ms", "1m30s", "2h") in seconds; a bare
    number is seconds."""
    import re
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ContainerError(f"events: --interval {text!r}: not a duration (e.g. 5s, 500ms)")
    return sum(float(n) * scale[u] for n, u in parts)


def runc_stats(raw):
    """cgroup stats (lowlevel names) in runc's `events` shape, which
    go-runc decodes: cpu.usage/throttling, memory.usage/swap, pids."""
    def pick(src, pairs):
        return {k: src[s] for k, s in pairs if isinstance(src.get(s), int) and src[s] >= 0}
    cpu, mem, pids = raw.get("cpu", {}), raw.get("memory", {}), raw.get("pids", {})
    out = {
        "cpu": {"usage": pick(cpu, (("total", "usage"), ("kernel", "system"), ("user", "user"))),
                "throttling": pick(cpu, (("periods", "periods"),
                                         ("throttledPeriods", "throttled_periods"),
                                         ("throttledTime", "throttled_time")))},
        "memory": {"usage": pick(mem, (("usage", "usage"), ("limit", "limit"),
                                       ("max", "max_usage"), ("failcnt", "failcnt")))},
        "pids": pick(pids, (("current", "current"), ("limit", "limit"))),
    }
    if isinstance(mem.get("swap_limit"), int):
        out["memory"]["swap"] = {"limit": mem["swap_limit"]}
    return out


def _emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def cmd_events(args):
    """--stats: one stats line.  Otherwise a stats line every --interval
    and an "oom" line when the kernel OOM-kills in the container, until
    the container stops."""
    import time
    c = _load(args)
    status = c.status()
    if status == Status.STOPPED:
        raise ContainerError(f"container {c.id}: container not running (status: stopped)")
    cg = c.cgroup
    stats = c.stats
    try:
        if args.stats:
            _emit({"type": "stats", "id": c.id, "data": runc_stats(stats())})
            return 0
        interval = parse_duration(args.interval)
        if interval <= 0:
            raise ContainerError(f"events: --interval {args.interval!r}: must be positive")
        step = min(interval, 0.2)
        ooms = stats().get("memory", {}).get("oom_kill") or 0
        next_tick = time.monotonic() + interval
        while True:
            time.sleep(step)
            if c.status() in (Status.STOPPED, Status.DELETED) or not cg or not cg.exists():
                return 0
            try:
                raw = stats()
            except InvalidState:    # stopped since the check above
                return 0
            now_ooms = raw.get("memory", {}).get("oom_kill") or 0
            if now_ooms > ooms:
                _emit({"type": "oom", "id": c.id})
            ooms = now_ooms
            if time.monotonic() >= next_tick:
                _emit({"type": "stats", "id": c.id, "data": runc_stats(raw)})
                next_tick += interval
    except BrokenPipeError:
        # the reader went away: as runc, that ends the stream quietly
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


# ---------------------------------------------------------------- features


def _seccomp_features():
    try:
        from lowlevel import seccomp as S

        from . import seccomp as _unused  # noqa: F401 - barerun enforces it
        actions, arches, flags = (_spec.SECCOMP_ACTIONS, _spec.SECCOMP_ARCHES,
                                  _spec.SECCOMP_FLAGS)
        archs = sorted(a for a, name in arches.items() if S.arch_known(name))
        operators = sorted(S.CMP)
    except Exception:  # noqa: BLE001 - no seccomp support in this build
        return {"enabled": False}
    return {"enabled": True, "actions": list(actions), "operators": operators,
            "archs": archs, "knownFlags": list(flags), "supportedFlags": list(flags)}


def features():
    """What this barerun really implements, in runc's `features` shape."""
    from lowlevel import caps

    from .errors import ContainerError as _E
    namespaces = []
    for ns in _spec.NAMESPACES:
        try:
            _spec.parse_namespaces({"namespaces": [{"type": ns}]})
        except _E:
            continue
        namespaces.append(ns)
    options = set(_spec.MOUNT_FLAGS) | set(_spec.PROPAGATION)
    for opt in ("tmpcopyup", "notmpcopyup"):
        try:
            m = _spec.parse_mount({"destination": "/x", "type": "tmpfs", "source": "tmpfs",
                                   "options": [opt]}, "mounts[0]")
        except _E:
            continue
        if hasattr(m, "copyup"):  # understood, not passed to the kernel as data
            options.add(opt)
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(_spec.HOOK_STAGES),
        "mountOptions": sorted(options),
        "linux": {
            "namespaces": namespaces,
            "capabilities": sorted(caps.NAMES, key=caps.NAMES.__getitem__),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": _seccomp_features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        # what a spec may hold that barerun still refuses, by field
        "annotations": {"org.barerun.refused": ", ".join(REFUSED)},
    }


REFUSED = ("linux.namespaces user (user namespaces)", "linux.uidMappings",
           "linux.gidMappings", "a shared or joined mount namespace",
           "linux.personality", "linux.intelRdt", "linux.timeOffsets",
           "process.ioPriority", "process.scheduler", "process.execCPUAffinity",
           "apparmor/selinux labels where that LSM is active")


def cmd_features(_args):
    print(json.dumps(features(), indent="    "))


# ---------------------------------------------------------------- parser

def _create_flags(p, detach=False):
    p.add_argument("--bundle", "-b", default=None, help="bundle directory (default: cwd)")
    p.add_argument("--pid-file", default=None, help="write the init's pid here")
    p.add_argument("--console-socket", default=None,
                   help="unix socket that receives the pty master")
    p.add_argument("--preserve-fds", type=int, default=0,
                   help="pass fds 3..3+N-1 into the container")
    p.add_argument("--no-pivot", action="store_true", help="accepted; barerun always pivots")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted")
    if detach:
        p.add_argument("--detach", "-d", action="store_true")
        p.add_argument("--keep", action="store_true", help="do not delete after exit")
    p.add_argument("id")


def build_parser():
    p = _Parser(prog="barerun", description="an OCI container runtime in Python")
    p.add_argument("--root", default=runtime.DEFAULT_ROOT, help="state directory")
    p.add_argument("--log", default=None, help="log file")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true", help="log every kernel step")
    p.add_argument("--trace", action="store_true",
                   help="show every kernel operation on stderr, in order")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--criu", default=None, help="path of the criu binary")
    p.add_argument("--rootless", default=None)
    p.add_argument("--version", "-v", action="store_true")
    # not dest="command": exec has a positional of that name (its command line)
    sub = p.add_subparsers(dest="subcommand", parser_class=_Parser)

    s = sub.add_parser("spec", help="write a default config.json")
    s.add_argument("--bundle", "-b", default=None)
    s.add_argument("--rootless", action="store_true")
    s.set_defaults(func=cmd_spec)

    s = sub.add_parser("create", help="create a container (its init waits for start)")
    _create_flags(s)
    s.set_defaults(func=cmd_create)

    s = sub.add_parser("start", help="start a created container")
    s.add_argument("id")
    s.set_defaults(func=cmd_start)

    s = sub.add_parser("run", help="create, start and wait for a container")
    _create_flags(s, detach=True)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("state", help="print a container's state as JSON")
    s.add_argument("id")
    s.set_defaults(func=cmd_state)

    s = sub.add_parser("list", help="list containers")
    s.add_argument("--format", "-f", default="table", choices=("table", "json"))
    s.add_argument("--quiet", "-q", action="store_true")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("kill", help="send a signal to a container's init (or all)")
    s.add_argument("--all", "-a", action="store_true")
    s.add_argument("id")
    s.add_argument("signal", nargs="?", default=None)
    s.set_defaults(func=cmd_kill)

    s = sub.add_parser("pause", help="freeze every process of a container")
    s.add_argument("id")
    s.set_defaults(func=cmd_pause)

    s = sub.add_parser("resume", help="thaw a paused container")
    s.add_argument("id")
    s.set_defaults(func=cmd_resume)

    s = sub.add_parser("ps", help="the processes of a container")
    s.add_argument("--format", "-f", default="table", choices=("table", "json"))
    s.add_argument("id")
    s.add_argument("ps_args", nargs="*")
    s.set_defaults(func=cmd_ps)

    s = sub.add_parser("exec", help="run a process in a running container")
    s.add_argument("--process", "-p", default=None, help="process.json to run")
    s.add_argument("--detach", "-d", action="store_true")
    s.add_argument("--pid-file", default=None)
    s.add_argument("--tty", "-t", action="store_true")
    s.add_argument("--console-socket", default=None)
    s.add_argument("--env", "-e", action="append")
    s.add_argument("--cwd", default=None)
    s.add_argument("--user", "-u", default=None, help="UID[:GID]")
    s.add_argument("--no-new-privs", action="store_true")
    s.add_argument("--preserve-fds", type=int, default=0)
    s.add_argument("id")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_exec)

    s = sub.add_parser("checkpoint", help="dump a container with CRIU")
    _criu_flags(s)
    s.add_argument("--leave-running", action="store_true")
    s.add_argument("--page-server", default=None, help="not supported")
    s.add_argument("--pre-dump", action="store_true", help="not supported")
    s.add_argument("id")
    s.set_defaults(func=cmd_checkpoint)

    s = sub.add_parser("restore", help="restore a container from a CRIU checkpoint")
    _criu_flags(s)
    s.add_argument("--bundle", "-b", default=None)
    s.add_argument("--pid-file", default=None)
    s.add_argument("--console-socket", default=None)
    s.add_argument("--detach", "-d", action="store_true")
    s.add_argument("--no-subreaper", action="store_true")
    s.add_argument("--no-pivot", action="store_true")
    s.add_argument("--lsm-mount-context", default=None)
    s.add_argument("--lsm-profile", default=None)
    s.add_argument("id")
    s.set_defaults(func=cmd_restore)

    s = sub.add_parser("delete", help="delete a container")
    s.add_argument("--force", "-f", action="store_true")
    s.add_argument("id")
    s.set_defaults(func=cmd_delete)

    s = sub.add_parser("update", help="change a container's resource limits")
    s.add_argument("--resources", "-r", default=None,
                   help="LinuxResources JSON file, or - for stdin")
    s.add_argument("--memory", dest="memory_limit", default=None, help="memory limit (e.g. 64m)")
    s.add_argument("--memory-swap", dest="memory_swap", default=None,
                   help="memory plus swap limit (-1: unlimited)")
    s.add_argument("--memory-reservation", dest="memory_reservation", default=None,
                   help="memory soft limit")
    s.add_argument("--cpu-shares", "--cpu-share", dest="cpu_shares", default=None,
                   help="CPU shares (relative weight)")
    s.add_argument("--cpu-quota", dest="cpu_quota", default=None,
                   help="CFS quota in microseconds per period (-1: none)")
    s.add_argument("--cpu-period", dest="cpu_period", default=None,
                   help="CFS period in microseconds")
    s.add_argument("--cpuset-cpus", default=None, help="CPUs to run on (0-2,4)")
    s.add_argument("--cpuset-mems", default=None, help="memory nodes to use")
    s.add_argument("--pids-limit", dest="pids_limit", default=None,
                   help="maximum number of processes (0 or -1: no limit)")
    s.add_argument("id")
    s.set_defaults(func=cmd_update)

    s = sub.add_parser("events", help="a container's resource usage, as JSON lines")
    s.add_argument("--stats", action="store_true", help="print one stats line and exit")
    s.add_argument("--interval", default="5s", help="time between stats lines (Go duration)")
    s.add_argument("id")
    s.set_defaults(func=cmd_events)

    s = sub.add_parser("features", help="what this runtime implements, as JSON")
    s.set_defaults(func=cmd_features)
    return p


def _options(parser):
    """{option string: takes a value} for one parser, and its sub-parsers."""
    opts, subs = {}, {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            subs = dict(action.choices)
            continue
        for o in action.option_strings:
            opts[o] = action.nargs != 0
    return opts, subs


def normalize_argv(argv, parser=None):
    """Go's flag package takes -flag as --flag: map single-dash long flags.

    Only a flag the current (sub)command knows is mapped (``-root`` ->
    ``--root``, ``-no-subreaper=x`` -> ``--no-subreaper=x``); values of
    flags, and everything from the container's own command on (``exec ID
    ls -la``) or after ``--``, pass through untouched.
    """
    parser = parser or build_parser()
    opts, subs = _options(parser)
    positionals, remainder_at = 0, None
    out = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            out.append(a)
            out.extend(argv[i:])
            break
        if len(a) > 2 and a[0] == "-" and a[1] != "-" and a[1].isalpha():
            name = a.split("=", 1)[0]
            if "-" + name in opts:
                a = "-" + a
        if a.startswith("-") and a != "-":
            out.append(a)
            name = a.split("=", 1)[0]
            if opts.get(name) and "=" not in a and i < len(argv):
                out.append(argv[i])  # the flag's value, whatever it looks like
                i += 1
            continue
        out.append(a)
        if a in subs and not positionals and remainder_at is None:
            sub = subs[a]
            opts, subs = _options(sub)
            pos = [x for x in sub._actions if not x.option_strings]
            remainder_at = next((n for n, x in enumerate(pos)
                                 if x.nargs == argparse.REMAINDER), -1)
            continue
        positionals += 1
        if remainder_at is not None and remainder_at >= 0 and positionals >= remainder_at:
            out.extend(argv[i:])  # the container's command line: verbatim
            break
    return out


def default_spec():
    from .spec_default import DEFAULT
    return DEFAULT


def main(argv=None):
    parser = build_parser()
    argv = normalize_argv(sys.argv[1:] if argv is None else argv, parser)
    try:
        args = parser.parse_args(argv)
    except Usage as exc:
        sys.stderr.write(f"{one_line(str(exc))}\n")
        _log_usage_error(argv, str(exc), parser)
        return 1
    except SystemExit as exc:  # --help
        return exc.code or 0
    if args.version:
        cmd_version(args)
        return 0
    if not args.subcommand:
        parser.print_help(sys.stderr)
        return 1
    _setup_logging(args)
    if args.criu:
        from .container import Container
        Container.criu_path = args.criu
    if getattr(args, "page_server", None) or getattr(args, "pre_dump", False):
        return _fail(args, "checkpoint: --page-server and --pre-dump are not supported")
    try:
        rc = args.func(args)
        return rc or 0
    except ContainerError as exc:
        tail = getattr(exc, "log_tail", "")
        if tail and args.log:
            # CRIU's own last lines, before the one-line error (the last
            # record is what containerd shows)
            for line in tail.splitlines():
                write_log(args.log, "debug", f"criu: {line}", args.log_format)
        return _fail(args, str(exc))
    except OSError as exc:
        return _fail(args, os_message(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a user never sees a traceback
        if args.debug:
            import traceback
            traceback.print_exc()
        return _fail(args, f"internal error: {type(exc).__name__}: {exc}")


def _log_usage_error(argv, message, parser):
    """A command-line mistake is found before logging is set up: still put
    it in --log as a JSON record when one was asked for (containerd shows
    the last error of log.json, else "unable to retrieve OCI runtime error")."""
    path, fmt = None, "text"
    takes_value, _ = _options(parser)
    i = 0
    while i < len(argv):
        a = argv[i]
        name, eq, value = a.partition("=")
        if name in ("--log", "--log-format"):
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            if name == "--log":
                path = value
            else:
                fmt = value
        elif takes_value.get(name) and not eq:
            i += 1  # another global flag's value
        elif not a.startswith("-"):
            break  # the subcommand: global flags come before it
        i += 1
    if not path or fmt != "json":
        return
    try:
        with open(path, "a") as f:
            f.write(log_line("error", message, "json") + "\n")
    except OSError:
        pass


def _fail(args, message):
    """The one line a failure shows: on stderr, and as a record in --log."""
    message = one_line(message)
    if args.log and write_log(args.log, "error", message, args.log_format):
        sys.stderr.write(f"{message}\n")
    else:
        sys.stderr.write(f"barerun: {message}\n")
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
