"""Reading an OCI runtime spec (config.json) into a plan barerun can run.

Everything taken from the spec is checked here, before anything is made on
the machine, so that bad input is refused with the JSON field it came from
(``InvalidSpec("process.args", "...")``) and nothing is left behind.
Fields barerun does not implement are refused by name rather than
silently ignored.
"""

import json
import os
import resource
import stat

from lowlevel import caps as _caps
from lowlevel import mounts as _mounts
from lowlevel import seccomp as _seccomp
from lowlevel.cgroups import resources as _cgroups
from lowlevel.record import Record

from .errors import InvalidSpec, NotFound

NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "cgroup", "user", "time")

# mount option -> (set flags, clear flags)
_MS = _mounts.MS
MOUNT_FLAGS = {
    "ro": (_MS["MS_RDONLY"], 0), "rw": (0, _MS["MS_RDONLY"]),
    "nosuid": (_MS["MS_NOSUID"], 0), "suid": (0, _MS["MS_NOSUID"]),
    "nodev": (_MS["MS_NODEV"], 0), "dev": (0, _MS["MS_NODEV"]),
    "noexec": (_MS["MS_NOEXEC"], 0), "exec": (0, _MS["MS_NOEXEC"]),
    "sync": (_MS["MS_SYNCHRONOUS"], 0), "async": (0, _MS["MS_SYNCHRONOUS"]),
    "dirsync": (_MS["MS_DIRSYNC"], 0),
    "remount": (_MS["MS_REMOUNT"], 0),
    "mand": (_MS["MS_MANDLOCK"], 0), "nomand": (0, _MS["MS_MANDLOCK"]),
    "atime": (0, _MS["MS_NOATIME"]), "noatime": (_MS["MS_NOATIME"], 0),
    "diratime": (0, _MS["MS_NODIRATIME"]), "nodiratime": (_MS["MS_NODIRATIME"], 0),
    "relatime": (_MS["MS_RELATIME"], 0), "norelatime": (0, _MS["MS_RELATIME"]),
    "strictatime": (_MS["MS_STRICTATIME"], 0), "nostrictatime": (0, _MS["MS_STRICTATIME"]),
    "lazytime": (_MS["MS_LAZYTIME"], 0), "nolazytime": (0, _MS["MS_LAZYTIME"]),
    "nosymfollow": (_MS["MS_NOSYMFOLLOW"], 0), "symfollow": (0, _MS["MS_NOSYMFOLLOW"]),
    "bind": (_MS["MS_BIND"], 0), "rbind": (_MS["MS_BIND"] | _MS["MS_REC"], 0),
}
# recursive mount attributes (mount_setattr with AT_RECURSIVE, as runc):
# option -> (attribute, set?)
RECURSIVE_ATTRS = {
    "rro": ("ro", True), "rrw": ("ro", False), "rnosuid": ("nosuid", True),
    "rsuid": ("nosuid", False), "rnodev": ("nodev", True), "rdev": ("nodev", False),
    "rnoexec": ("noexec", True), "rexec": ("noexec", False),
}
PROPAGATION = {
    "private": _MS["MS_PRIVATE"], "rprivate": _MS["MS_PRIVATE"] | _MS["MS_REC"],
    "shared": _MS["MS_SHARED"], "rshared": _MS["MS_SHARED"] | _MS["MS_REC"],
    "slave": _MS["MS_SLAVE"], "rslave": _MS["MS_SLAVE"] | _MS["MS_REC"],
    "unbindable": _MS["MS_UNBINDABLE"], "runbindable": _MS["MS_UNBINDABLE"] | _MS["MS_REC"],
}

DEFAULT_DEVICES = (
    # path, type, major, minor, mode
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
)


class Mount(Record):
    # copyup: tmpcopyup: the tmpfs starts with the covered directory's contents
    # recursive: {attribute: set?} for the whole mount tree (rro, rnosuid ...)
    _fields = ("destination", "type", "source", "flags", "propagation", "data", "bind", "field",
               "copyup", "recursive")
    _defaults = {"flags": 0, "propagation": list, "data": "", "bind": False, "field": "",
                 "copyup": False, "recursive": dict}
    __slots__ = _fields

    destination: str
    type: str
    source: str
    flags: int
    propagation: list
    data: str
    bind: bool
    field: str
    copyup: bool
    recursive: dict


class Device(Record):
    _fields = ("path", "type", "major", "minor", "mode", "uid", "gid")
    _defaults = {"mode": 0o666, "uid": 0, "gid": 0}
    __slots__ = _fields

    path: str
    type: str
    major: int
    minor: int
    mode: int
    uid: int
    gid: int


class User(Record):
    _fields = ("uid", "gid", "additional_gids", "umask")
    _defaults = {"uid": 0, "gid": 0, "additional_gids": list, "umask": None}
    __slots__ = _fields

    uid: int
    gid: int
    additional_gids: list
    umask: int | None


class Process(Record):
    # console_size: (rows, cols)
    # capabilities: set name -> [CAP_...]
    # rlimits: (name, soft, hard)
    _fields = ("args", "env", "cwd", "user", "terminal", "console_size", "capabilities", "rlimits",
               "no_new_privileges", "oom_score_adj")
    _defaults = {"env": list, "cwd": "/", "user": User, "terminal": False, "console_size": None,
                 "capabilities": None, "rlimits": list, "no_new_privileges": False,
                 "oom_score_adj": None}
    __slots__ = _fields

    args: list
    env: list
    cwd: str
    user: User
    terminal: bool
    console_size: tuple | None
    capabilities: dict | None
    rlimits: list
    no_new_privileges: bool
    oom_score_adj: int | None


class Resources(_cgroups.Resources):
    """linux.resources: the cgroup limits (lowlevel.cgroups.Resources,
    the same fields) and the device rules, (allow, type, major, minor,
    access) each."""
    _fields = (*_cgroups.Resources._fields, "devices")
    _defaults = {**_cgroups.Resources._defaults, "devices": list}
    __slots__ = ("devices",)

    devices: list

    def empty(self):
        return all(getattr(self, f) in (None, []) for f in self._fields)


class Spec(Record):
    """The checked, typed form of config.json that the runtime acts on."""
    # namespaces: oci name -> path or None (new)
    # seccomp: Seccomp (linux.seccomp) or None
    # hooks: stage name -> [Hook], only the stages that have some
    _fields = ("raw", "bundle", "rootfs", "readonly_root", "process", "hostname", "domainname",
               "namespaces", "mounts", "devices", "masked_paths", "readonly_paths",
               "rootfs_propagation", "cgroups_path", "resources", "sysctl", "annotations",
               "seccomp", "hooks", "oci_version")
    _defaults = {"seccomp": None, "hooks": {}, "oci_version": ""}
    __slots__ = _fields


class Hook(Record):
    """One OCI hook: path (absolute, resolved where its stage runs), args
    (argv, args[0] included; [path] when empty), env (its whole
    environment), timeout (seconds, or None) and fld (its spec field)."""
    _fields = ("path", "args", "env", "timeout", "fld")
    __slots__ = _fields

    path: str
    args: list[str]
    env: list[str]
    timeout: int | None
    fld: str


HOOK_STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
               "poststop")


def parse_hooks(raw):
    """``hooks`` of config.json: {stage: [Hook]} for the stages given."""
    hooks = _get(raw, "hooks", dict, "hooks", {})
    out = {}
    for stage in hooks:
        fld = f"hooks.{stage}"
        if stage not in HOOK_STAGES:
            raise InvalidSpec(fld, f"unknown hook stage (one of {', '.join(HOOK_STAGES)})")
        got = []
        for i, h in enumerate(_get(hooks, stage, list, fld, [])):
            hf = f"{fld}[{i}]"
            path = _get(h, "path", str, f"{hf}.path")
            if not path or not path.startswith("/"):
                raise InvalidSpec(f"{hf}.path", f"must be an absolute path, not {path!r}")
            timeout = _get(h, "timeout", int, f"{hf}.timeout")
            if timeout is not None and timeout <= 0:
                raise InvalidSpec(f"{hf}.timeout", f"must be more than 0 seconds, not {timeout}")
            got.append(Hook(path=path, args=_strlist(h, "args", f"{hf}.args") or [path],
                            env=_strlist(h, "env", f"{hf}.env"), timeout=timeout, fld=hf))
        if got:
            out[stage] = got
    return out


def _get(d, key, kind, fld, default=None):
    if not isinstance(d, dict):
        raise InvalidSpec(fld.rpartition(".")[0], "must be an object")
    v = d.get(key, default)
    if v is None:
        return default
    if kind is int and isinstance(v, bool):
        raise InvalidSpec(fld, f"must be an integer, not {v!r}")
    if not isinstance(v, kind):
        name = {str: "a string", int: "an integer", list: "a list", dict: "an object",
                bool: "true or false"}.get(kind, str(kind))
        raise InvalidSpec(fld, f"must be {name}, not {type(v).__name__} {v!r}"[:200])
    if kind is str:
        _check_text(v, fld)
    return v


def _check_text(v, fld):
    """A string the kernel can take: no NUL byte (C strings end there) and
    encodable (a lone surrogate from JSON's \ud800 is not)."""
    if "\0" in v:
        raise InvalidSpec(fld, "contains a NUL byte")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSpec(fld, "is not valid text (a lone surrogate)") from None


def _strlist(d, key, fld):
    v = _get(d, key, list, fld, [])
    for i, item in enumerate(v):
        if not isinstance(item, str):
            raise InvalidSpec(f"{fld}[{i}]", f"must be a string, not {item!r}")
        _check_text(item, f"{fld}[{i}]")
    return v


ID_MAX = 0xFFFFFFFE  # uid/gid: 32 bits, (uid_t)-1 means "no change"
NGROUPS_MAX = 65536


def _check_id(v, fld):
    if not 0 <= v <= ID_MAX:
        raise InvalidSpec(fld, f"must be 0 to {ID_MAX}, not {v}")


def load_bundle(bundle):
    """Read <bundle>/config.json and check it; raises NotFound / InvalidSpec."""
    bundle = os.path.abspath(bundle)
    if not os.path.isdir(bundle):
        raise NotFound(f"bundle {bundle} does not exist or is not a directory")
    path = os.path.join(bundle, "config.json")
    try:
        # O_NONBLOCK: a FIFO planted as config.json must not hang us in open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle} has no config.json") from None
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidSpec("", f"{path} is not a regular file")
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSpec("", f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidSpec("", f"{path} is nested too deeply to be a runtime spec") from None
    return parse(raw, bundle)


def parse(raw, bundle):
    if not isinstance(raw, dict):
        raise InvalidSpec("", "config.json must hold a JSON object")
    root = _get(raw, "root", dict, "root")
    if not root:
        raise InvalidSpec("root", "missing (root.path names the container's root filesystem)")
    rpath = _get(root, "path", str, "root.path")
    if not rpath:
        raise InvalidSpec("root.path", "missing")
    rootfs = os.path.normpath(os.path.join(bundle, rpath))
    if not os.path.isdir(rootfs):
        raise NotFound(f"root.path: rootfs {rootfs} does not exist or is not a directory")
    linux = _get(raw, "linux", dict, "linux", {})
    proc = _get(raw, "process", dict, "process")
    if proc is None:
        raise InvalidSpec("process", "missing")
    namespaces = parse_namespaces(linux)
    hostname = _get(raw, "hostname", str, "hostname")
    domainname = _get(raw, "domainname", str, "domainname")
    if (hostname or domainname) and "uts" not in namespaces:
        raise InvalidSpec("hostname", "setting a hostname needs a new uts namespace")
    rprop = _get(linux, "rootfsPropagation", str, "linux.rootfsPropagation")
    if rprop is not None and rprop not in PROPAGATION:
        raise InvalidSpec("linux.rootfsPropagation", f"unknown propagation {rprop!r}")
    _lsm_label(linux, "mountLabel", "linux.mountLabel", "selinux")
    for key in ("intelRdt", "personality", "uidMappings", "gidMappings", "timeOffsets"):
        if linux.get(key):
            raise InvalidSpec(f"linux.{key}", "not supported by barerun")
    cgpath = _get(linux, "cgroupsPath", str, "linux.cgroupsPath")
    if cgpath is not None:
        cgpath = cgpath.strip()
        if ".." in cgpath.split("/") or ":" in cgpath:
            raise InvalidSpec("linux.cgroupsPath", f"{cgpath!r} must be a plain path "
                              "without '..' (systemd slices are not supported)")
        cgpath = cgpath.strip("/") or None
    annotations = _get(raw, "annotations", dict, "annotations", {})
    if "mount" not in namespaces or namespaces["mount"]:
        # without a new mount namespace the init only chroots: nothing
        # below can be done, and it is refused rather than ignored
        for fld, given in (("mounts", raw.get("mounts")),
                           ("linux.maskedPaths", linux.get("maskedPaths")),
                           ("linux.readonlyPaths", linux.get("readonlyPaths")),
                           ("linux.devices", linux.get("devices")),
                           ("root.readonly", root.get("readonly"))):
            if given:
                raise InvalidSpec(fld, "needs a new mount namespace "
                                  "(linux.namespaces has no \"mount\" without a path)")
    return Spec(
        raw=raw, bundle=bundle, rootfs=rootfs,
        readonly_root=_get(root, "readonly", bool, "root.readonly", False),
        process=parse_process(proc, "process"),
        hostname=hostname, domainname=domainname,
        namespaces=namespaces,
        mounts=[parse_mount(m, f"mounts[{i}]")
                for i, m in enumerate(_get(raw, "mounts", list, "mounts", []))],
        devices=parse_devices(linux),
        masked_paths=_strlist(linux, "maskedPaths", "linux.maskedPaths"),
        readonly_paths=_strlist(linux, "readonlyPaths", "linux.readonlyPaths"),
        rootfs_propagation=PROPAGATION[rprop] if rprop else 0,
        cgroups_path=cgpath,
        resources=parse_resources(_get(linux, "resources", dict, "linux.resources", {}),
                                  "linux.resources"),
        sysctl=parse_sysctl(linux, namespaces),
        annotations=annotations,
        seccomp=parse_seccomp(linux),
        hooks=parse_hooks(raw),
        oci_version=_get(raw, "ociVersion", str, "ociVersion", ""),
    )


def parse_namespaces(linux):
    out = {}
    for i, ns in enumerate(_get(linux, "namespaces", list, "linux.namespaces", [])):
        fld = f"linux.namespaces[{i}]"
        kind = _get(ns, "type", str, fld + ".type")
        if kind not in NAMESPACES:
            raise InvalidSpec(fld + ".type", f"unknown namespace type {kind!r}")
        if kind in out:
            raise InvalidSpec(fld + ".type", f"namespace {kind!r} listed twice")
        if kind in ("user", "time"):
            raise InvalidSpec(fld + ".type", f"{kind} namespaces are not supported by barerun")
        path = _get(ns, "path", str, fld + ".path") or None
        if path is not None and not os.path.exists(path):
            raise InvalidSpec(fld + ".path", f"{path} does not exist")
        out[kind] = path
    return out


def lsm_enabled(name):
    """Whether the running kernel enforces the LSM ``name`` ("apparmor",
    "selinux")."""
    if name == "selinux":
        return os.path.isdir("/sys/fs/selinux") and os.path.exists("/sys/fs/selinux/enforce")
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def _lsm_label(d, key, fld, lsm):
    """An AppArmor profile or SELinux label: barerun cannot apply one yet,
    so where that LSM is active it is refused (never silently dropped);
    where the kernel has no such LSM there is nothing to apply, and it is
    ignored with a warning, as runc does."""
    value = _get(d, key, str, fld)
    if not value:
        return
    if lsm_enabled(lsm):
        raise InvalidSpec(fld, f"{lsm} labels are not supported by barerun yet, and "
                          f"{lsm} is active on this host")
    from .hooks import warn
    warn(f"{fld} {value!r} ignored: {lsm} is not enabled on this host")


def parse_mount(m, fld):
    dest = _get(m, "destination", str, fld + ".destination")
    if not dest:
        raise InvalidSpec(fld + ".destination", "missing")
    if not dest.startswith("/"):
        # as runc 1.1: a relative destination is under the container's /
        # (a Dockerfile's VOLUME ['/a', '/b'] makes one)
        dest = "/" + dest
    mtype = _get(m, "type", str, fld + ".type") or None
    source = _get(m, "source", str, fld + ".source")
    flags = 0
    prop = []
    data = []
    bind = mtype == "bind"
    copyup = False
    recursive = {}
    for opt in _strlist(m, "options", fld + ".options"):
        if opt in MOUNT_FLAGS:
            fset, fclr = MOUNT_FLAGS[opt]
            flags = (flags | fset) & ~fclr
            if opt in ("bind", "rbind"):
                bind = True
        elif opt in PROPAGATION:
            prop.append(PROPAGATION[opt])
        elif opt in RECURSIVE_ATTRS:
            attr, on = RECURSIVE_ATTRS[opt]
            recursive[attr] = on
        elif opt in ("tmpcopyup", "notmpcopyup"):
            # runc/crun extensions (podman sends tmpcopyup for --tmpfs,
            # --read-only and --systemd): not kernel options
            copyup = opt == "tmpcopyup"
        elif opt in ("idmap", "ridmap") or opt.startswith("X-"):
            if opt.startswith("X-"):
                continue  # userspace-only hints (mount(8) ignores them too)
            raise InvalidSpec(fld + ".options", f"option {opt!r} is not supported by barerun")
        else:
            data.append(opt)
    if bind:
        flags |= _MS["MS_BIND"]
        if not source:
            raise InvalidSpec(fld + ".source", "a bind mount needs a source")
    elif not mtype:
        raise InvalidSpec(fld + ".type", "missing (and the mount is not a bind mount)")
    if copyup and (bind or mtype != "tmpfs"):
        raise InvalidSpec(fld + ".options", "option 'tmpcopyup' applies to tmpfs mounts only, "
                          f"not to a {'bind' if bind else mtype} mount")
    return Mount(dest, mtype, source, flags, prop, ",".join(data), bind, fld, copyup, recursive)


def parse_devices(linux):
    out = []
    for i, d in enumerate(_get(linux, "devices", list, "linux.devices", [])):
        fld = f"linux.devices[{i}]"
        path = _get(d, "path", str, fld + ".path")
        if not path or not path.startswith("/dev/"):
            raise InvalidSpec(fld + ".path", f"must be a path under /dev, not {path!r}")
        kind = _get(d, "type", str, fld + ".type")
        if kind not in ("c", "b", "u", "p"):
            raise InvalidSpec(fld + ".type", f"must be c, b, u or p, not {kind!r}")
        major = _get(d, "major", int, fld + ".major", 0)
        minor = _get(d, "minor", int, fld + ".minor", 0)
        mode = _get(d, "fileMode", int, fld + ".fileMode", 0o666)
        out.append(Device(path, kind, major, minor, mode, _get(d, "uid", int, fld + ".uid", 0),
                          _get(d, "gid", int, fld + ".gid", 0)))
    return out


def parse_process(p, fld):
    args = _strlist(p, "args", fld + ".args")
    if not args or not args[0]:
        raise InvalidSpec(fld + ".args", "must name the program to run")
    env = _strlist(p, "env", fld + ".env")
    cwd = _get(p, "cwd", str, fld + ".cwd", "/")
    if not cwd.startswith("/"):
        raise InvalidSpec(fld + ".cwd", f"must be an absolute path, not {cwd!r}")
    u = _get(p, "user", dict, fld + ".user", {})
    user = User(uid=_get(u, "uid", int, fld + ".user.uid", 0),
                gid=_get(u, "gid", int, fld + ".user.gid", 0),
                additional_gids=[g for g in _get(u, "additionalGids", list,
                                                 fld + ".user.additionalGids", [])],
                umask=_get(u, "umask", int, fld + ".user.umask"))
    if u.get("username"):
        raise InvalidSpec(fld + ".user.username", "is Windows-only")
    _check_id(user.uid, fld + ".user.uid")
    _check_id(user.gid, fld + ".user.gid")
    if user.umask is not None and not 0 <= user.umask <= 0o777:
        raise InvalidSpec(fld + ".user.umask", f"must be 0 to 0o777, not {user.umask:#o}"
                          if user.umask >= 0 else f"must be 0 to 0o777, not {user.umask}")
    if len(user.additional_gids) > NGROUPS_MAX:
        raise InvalidSpec(fld + ".user.additionalGids",
                          f"has {len(user.additional_gids)} groups, at most {NGROUPS_MAX}")
    for i, g in enumerate(user.additional_gids):
        if not isinstance(g, int) or isinstance(g, bool):
            raise InvalidSpec(f"{fld}.user.additionalGids[{i}]", f"must be an integer, not {g!r}")
        _check_id(g, f"{fld}.user.additionalGids[{i}]")
    capabilities = None
    c = _get(p, "capabilities", dict, fld + ".capabilities")
    if c is not None:
        capabilities = {}
        for kind in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            names = _strlist(c, kind, f"{fld}.capabilities.{kind}")
            for i, name in enumerate(names):
                if name not in _caps.NAMES:
                    raise InvalidSpec(f"{fld}.capabilities.{kind}[{i}]",
                                      f"unknown capability {name!r}")
            capabilities[kind] = names
    rlimits = []
    for i, r in enumerate(_get(p, "rlimits", list, fld + ".rlimits", [])):
        rf = f"{fld}.rlimits[{i}]"
        kind = _get(r, "type", str, rf + ".type")
        if not kind or not hasattr(resource, kind):
            raise InvalidSpec(rf + ".type", f"unknown rlimit {kind!r}")
        hard = _get(r, "hard", int, rf + ".hard")
        soft = _get(r, "soft", int, rf + ".soft")
        if hard is None or soft is None:
            raise InvalidSpec(rf, "needs both soft and hard")
        if soft > hard:
            raise InvalidSpec(rf + ".soft", f"{soft} is above the hard limit {hard}")
        rlimits.append((kind, _rlim(soft), _rlim(hard)))
    size = _get(p, "consoleSize", dict, fld + ".consoleSize")
    console = None
    if size:
        console = (_get(size, "height", int, fld + ".consoleSize.height", 0),
                   _get(size, "width", int, fld + ".consoleSize.width", 0))
        for name, v in zip(("height", "width"), console, strict=True):
            if not 0 <= v <= 0xFFFF:
                raise InvalidSpec(f"{fld}.consoleSize.{name}", f"must be 0 to 65535, not {v}")
    _lsm_label(p, "apparmorProfile", f"{fld}.apparmorProfile", "apparmor")
    _lsm_label(p, "selinuxLabel", f"{fld}.selinuxLabel", "selinux")
    for key in ("ioPriority", "scheduler", "execCPUAffinity"):
        if p.get(key):
            raise InvalidSpec(f"{fld}.{key}", "not supported by barerun")
    oom = _get(p, "oomScoreAdj", int, fld + ".oomScoreAdj")
    if oom is not None and not -1000 <= oom <= 1000:
        raise InvalidSpec(f"{fld}.oomScoreAdj", f"must be -1000 to 1000, not {oom}")
    return Process(args=args, env=env, cwd=cwd, user=user,
                   terminal=_get(p, "terminal", bool, fld + ".terminal", False),
                   console_size=console, capabilities=capabilities, rlimits=rlimits,
                   no_new_privileges=_get(p, "noNewPrivileges", bool,
                                          fld + ".noNewPrivileges", False),
                   oom_score_adj=oom)


def _rlim(v):
    return resource.RLIM_INFINITY if v >= 2**63 - 1 or v < 0 else v


def parse_resources(r, fld):
    """linux.resources (``fld`` names it: "linux.resources", or "resources"
    for an update) -> Resources.  Zero and absent both mean "unset", as in
    runc (Docker sends blockIO.weight 0 and memory.kernel 0): nothing is
    written for them.  Values are checked against the kernel's ranges
    here; whether the host has the controller, the file, the device or the
    page size is found out when they are applied (runtime/resources.py)."""
    res = Resources()
    mem = _get(r, "memory", dict, fld + ".memory", {})
    res.memory_limit = _pos(mem, "limit", fld + ".memory") or None
    res.memory_reservation = _pos(mem, "reservation", fld + ".memory") or None
    res.memory_swap = _pos(mem, "swap", fld + ".memory") or None
    res.memory_swappiness = _get(mem, "swappiness", int, fld + ".memory.swappiness")
    if res.memory_swappiness is not None and not 0 <= res.memory_swappiness <= 100:
        raise InvalidSpec(f"{fld}.memory.swappiness",
                          f"must be 0 to 100, not {res.memory_swappiness}")
    res.memory_kernel = _ranged(mem, "kernel", f"{fld}.memory.kernel", -1, _S64) or None
    res.memory_kernel_tcp = _ranged(mem, "kernelTCP", f"{fld}.memory.kernelTCP",
                                    -1, _S64) or None
    # podman's --oom-kill-disable; false is the kernel's default: unset
    res.memory_disable_oom_killer = _get(mem, "disableOOMKiller", bool,
                                         fld + ".memory.disableOOMKiller") or None
    cpu = _get(r, "cpu", dict, fld + ".cpu", {})
    # docker update sends every cpu and memory value, 0 for those not given
    res.cpu_shares = _pos(cpu, "shares", fld + ".cpu") or None
    res.cpu_quota = _get(cpu, "quota", int, fld + ".cpu.quota") or None
    res.cpu_period = _pos(cpu, "period", fld + ".cpu") or None
    # burst and idle are written when given, 0 too (their defaults, so an
    # update can turn them back off), as runc
    res.cpu_burst = _ranged(cpu, "burst", f"{fld}.cpu.burst", 0, _U64)
    res.cpu_idle = _ranged(cpu, "idle", f"{fld}.cpu.idle", 0, 1)
    # podman's --cpu-rt-runtime / --cpu-rt-period (runtime -1: no limit)
    res.cpu_rt_runtime = _ranged(cpu, "realtimeRuntime", f"{fld}.cpu.realtimeRuntime",
                                 -1, _S64) or None
    res.cpu_rt_period = _ranged(cpu, "realtimePeriod", f"{fld}.cpu.realtimePeriod",
                                0, _U64) or None
    res.cpuset_cpus = _get(cpu, "cpus", str, fld + ".cpu.cpus") or None
    res.cpuset_mems = _get(cpu, "mems", str, fld + ".cpu.mems") or None
    pids = _get(r, "pids", dict, fld + ".pids", {})
    res.pids_limit = _get(pids, "limit", int, fld + ".pids.limit") or None  # -1: no limit
    for i, d in enumerate(_get(r, "devices", list, fld + ".devices", [])):
        df = f"{fld}.devices[{i}]"
        allow = _get(d, "allow", bool, df + ".allow", False)
        kind = _get(d, "type", str, df + ".type", "a")
        if kind not in ("a", "c", "b"):
            raise InvalidSpec(df + ".type", f"must be a, c or b, not {kind!r}")
        access = _get(d, "access", str, df + ".access", "rwm")
        if not access or set(access) - set("rwm"):
            raise InvalidSpec(df + ".access", f"must be made of r, w and m, not {access!r}")
        major = _get(d, "major", int, df + ".major")
        minor = _get(d, "minor", int, df + ".minor")
        for name, v in (("major", major), ("minor", minor)):
            if v is not None and not -1 <= v <= 0x7fffffff:
                raise InvalidSpec(f"{df}.{name}", f"must be -1 (any) to 2147483647, not {v}")
        res.devices.append((allow, kind, major, minor, access))
    _parse_block_io(_get(r, "blockIO", dict, fld + ".blockIO", {}), fld + ".blockIO", res)
    limits = []
    for i, h in enumerate(_get(r, "hugepageLimits", list, fld + ".hugepageLimits", [])):
        hf = f"{fld}.hugepageLimits[{i}]"
        size = _get(h, "pageSize", str, hf + ".pageSize")
        if size is None:
            raise InvalidSpec(hf + ".pageSize", "missing")
        if not _is_page_size(size):
            raise InvalidSpec(hf + ".pageSize", f"must be a huge page size as the kernel "
                              f"names it, like 2MB, 1GB or 64KB, not {size!r}")
        limit = _ranged(h, "limit", hf + ".limit", 0, _U64)
        if limit is None:
            raise InvalidSpec(hf + ".limit", "missing")
        limits.append((size, limit))
    res.hugetlb_limits = limits or None
    net = _get(r, "network", dict, fld + ".network", {})
    res.net_cls_classid = _ranged(net, "classID", fld + ".network.classID", 0, _U32) or None
    prios = []
    for i, p in enumerate(_get(net, "priorities", list, fld + ".network.priorities", [])):
        pf = f"{fld}.network.priorities[{i}]"
        name = _get(p, "name", str, pf + ".name")
        if name is None:
            raise InvalidSpec(pf + ".name", "missing")
        _check_plain_name(name, pf + ".name", "an interface name")
        if len(name.encode()) > 15:
            raise InvalidSpec(pf + ".name", f"must be at most 15 bytes (IFNAMSIZ), not {name!r}")
        prio = _ranged(p, "priority", pf + ".priority", 0, _U32)
        if prio is None:
            raise InvalidSpec(pf + ".priority", "missing")
        prios.append((name, prio))
    res.net_prio_ifpriomap = prios or None
    rdma = []
    for dev, v in _get(r, "rdma", dict, fld + ".rdma", {}).items():
        rf = f"{fld}.rdma.{dev}"
        _check_plain_name(dev, rf, "an RDMA device name")
        if not isinstance(v, dict):
            raise InvalidSpec(rf, f"must be an object, not {v!r}"[:200])
        handles = _ranged(v, "hcaHandles", rf + ".hcaHandles", 0, _S32)
        objects = _ranged(v, "hcaObjects", rf + ".hcaObjects", 0, _S32)
        if handles is not None or objects is not None:
            rdma.append((dev, handles, objects))
    res.rdma_limits = rdma or None
    unified = []
    for key, value in _get(r, "unified", dict, fld + ".unified", {}).items():
        uf = f"{fld}.unified.{key}"
        _check_plain_name(key, uf, "a cgroup file name like memory.high")
        if ".." in key:
            raise InvalidSpec(uf, "must be a cgroup file name like memory.high, not "
                              f"{key!r}")
        if not isinstance(value, str):
            raise InvalidSpec(uf, f"must be a string, not {value!r}"[:200])
        _check_text(value, uf)
        unified.append((key, value))
    res.unified = unified or None
    return res


_S32, _U32, _S64, _U64 = 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1


def _ranged(d, key, fld, lo, hi):
    """An integer field within [lo, hi], or None when absent."""
    v = _get(d, key, int, fld)
    if v is not None and not lo <= v <= hi:
        raise InvalidSpec(fld, f"must be {lo} to {hi}, not {v}")
    return v


def _weight(d, key, fld):
    """A blkio weight: 10 to 1000, or None for absent and 0 (unset)."""
    v = _get(d, key, int, fld)
    if v and not 10 <= v <= 1000:
        raise InvalidSpec(fld, f"must be 10 to 1000 (or 0: unset), not {v}")
    return v or None


def _device_number(d, fld):
    """(major, minor) of a blockIO device entry: both required, 32 bits."""
    out = []
    for key in ("major", "minor"):
        v = _ranged(d, key, f"{fld}.{key}", 0, _U32)
        if v is None:
            raise InvalidSpec(f"{fld}.{key}", "missing")
        out.append(v)
    return out


_THROTTLE_FIELDS = (("throttleReadBpsDevice", "blkio_throttle_read_bps"),
                    ("throttleWriteBpsDevice", "blkio_throttle_write_bps"),
                    ("throttleReadIOPSDevice", "blkio_throttle_read_iops"),
                    ("throttleWriteIOPSDevice", "blkio_throttle_write_iops"))


def _parse_block_io(b, fld, res):
    res.blkio_weight = _weight(b, "weight", fld + ".weight")
    res.blkio_leaf_weight = _weight(b, "leafWeight", fld + ".leafWeight")
    devices = []
    for i, d in enumerate(_get(b, "weightDevice", list, fld + ".weightDevice", [])):
        df = f"{fld}.weightDevice[{i}]"
        major, minor = _device_number(d, df)
        weight = _weight(d, "weight", df + ".weight")
        leaf = _weight(d, "leafWeight", df + ".leafWeight")
        if weight is not None or leaf is not None:
            devices.append((major, minor, weight, leaf))
    res.blkio_weight_device = devices or None
    for key, attr in _THROTTLE_FIELDS:
        throttles = []
        for i, d in enumerate(_get(b, key, list, f"{fld}.{key}", [])):
            df = f"{fld}.{key}[{i}]"
            major, minor = _device_number(d, df)
            # rate 0 removes the device's limit (the kernel's meaning)
            throttles.append((major, minor, _ranged(d, "rate", df + ".rate", 0, _U64) or 0))
        setattr(res, attr, throttles or None)


def _is_page_size(text):
    """"2MB", "1GB", "64KB": the form of the hugetlb.<size>.* file names."""
    return (len(text) > 2 and text[-2:] in ("KB", "MB", "GB") and text[:-2].isdigit()
            and text[:-2].isascii() and text[0] != "0")


def _check_plain_name(name, fld, what):
    """A name the kernel takes as one word of a file line or one file name:
    not empty, no '/', NUL or whitespace, not . or .."""
    _check_text(name, fld)
    if not name or name in (".", "..") or "/" in name or any(c.isspace() for c in name):
        raise InvalidSpec(fld, f"must be {what} (no '/', NUL or whitespace), not {name!r}")


def _pos(d, key, fld):
    v = _get(d, key, int, f"{fld}.{key}")
    if v is not None and v < -1:
        raise InvalidSpec(f"{fld}.{key}", f"must be positive (or -1 for unlimited), not {v}")
    return v


_NS_SYSCTL = (("kernel.shm", "ipc"), ("kernel.msg", "ipc"), ("kernel.sem", "ipc"),
              ("fs.mqueue.", "ipc"), ("net.", "network"),
              ("kernel.hostname", "uts"), ("kernel.domainname", "uts"))


def sysctl_namespace(key):
    """The OCI namespace a (namespaced) sysctl key belongs to."""
    return next((ns for prefix, ns in _NS_SYSCTL if key.startswith(prefix)), None)


def parse_sysctl(linux, namespaces):
    out = _get(linux, "sysctl", dict, "linux.sysctl", {})
    for key, value in out.items():
        fld = f"linux.sysctl.{key}"
        if not isinstance(value, str):
            raise InvalidSpec(fld, f"value must be a string, not {value!r}")
        if "/" in key or ".." in key:
            raise InvalidSpec(fld, "not a sysctl name")
        need = sysctl_namespace(key)
        if need is None:
            raise InvalidSpec(fld, "not a namespaced sysctl: it would change the host")
        if need not in namespaces:
            raise InvalidSpec(fld, f"needs a {need} namespace of the container's own")
    return out


# ------------------------------------------------------------------ seccomp

class SeccompArg(Record):
    # op: "SCMP_CMP_EQ" ...
    _fields = ("index", "value", "value_two", "op")
    __slots__ = _fields

    index: int
    value: int
    value_two: int
    op: str


class SeccompSyscall(Record):
    # action: "SCMP_ACT_ERRNO" ...
    # args: [SeccompArg]
    # field: "linux.seccomp.syscalls[3]", for messages
    _fields = ("names", "action", "errno_ret", "args", "field")
    _defaults = {"errno_ret": None, "args": list, "field": ""}
    __slots__ = _fields

    names: list
    action: str
    errno_ret: int | None
    args: list
    field: str


class Seccomp(Record):
    """linux.seccomp, checked: runtime/seccomp.py turns it into a filter."""
    # architectures: libseccomp names: "x86_64"
    # flags: "SECCOMP_FILTER_FLAG_LOG" ...
    # syscalls: [SeccompSyscall]
    _fields = ("default_action", "default_errno_ret", "architectures", "flags", "syscalls")
    _defaults = {"default_errno_ret": None, "architectures": list, "flags": list, "syscalls": list}
    __slots__ = _fields

    default_action: str
    default_errno_ret: int | None
    architectures: list
    flags: list
    syscalls: list


SECCOMP_ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS",
                   "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                   "SCMP_ACT_LOG")
# the OCI architecture names -> libseccomp's
SECCOMP_ARCHES = {
    "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm", "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips", "SCMP_ARCH_MIPS64": "mips64", "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel", "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc", "SCMP_ARCH_PPC64": "ppc64", "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390", "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc", "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64", "SCMP_ARCH_LOONGARCH64": "loongarch64",
    "SCMP_ARCH_M68K": "m68k", "SCMP_ARCH_SH": "sh", "SCMP_ARCH_SHEB": "sheb",
}
SECCOMP_FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW")


def _seccomp_action(d, key, fld):
    act = _get(d, key, str, fld)
    if act is None:
        raise InvalidSpec(fld, "missing")
    if act == "SCMP_ACT_NOTIFY":
        raise InvalidSpec(fld, "SCMP_ACT_NOTIFY (a seccomp user notification listener) "
                          "is not supported by barerun")
    if act not in SECCOMP_ACTIONS:
        raise InvalidSpec(fld, f"unknown seccomp action {act!r}")
    return act


def _errno_ret(d, key, fld):
    v = _get(d, key, int, fld)
    if v is not None and not 0 <= v <= 0xFFFF:
        raise InvalidSpec(fld, f"must be an errno number (0..65535), not {v}")
    return v


def _u64(d, key, fld):
    v = _get(d, key, int, fld, 0)
    if not 0 <= v < 2**64:
        raise InvalidSpec(fld, f"must be a 64-bit unsigned integer, not {v}")
    return v


def parse_seccomp(linux):
    """linux.seccomp -> Seccomp, or None when the spec has none."""
    fld = "linux.seccomp"
    s = _get(linux, "seccomp", dict, fld)
    if not s:
        return None
    for key in ("listenerPath", "listenerMetadata"):
        if s.get(key):
            raise InvalidSpec(f"{fld}.{key}", "a seccomp user notification listener "
                              "is not supported by barerun")
    out = Seccomp(default_action=_seccomp_action(s, "defaultAction", fld + ".defaultAction"),
                  default_errno_ret=_errno_ret(s, "defaultErrnoRet", fld + ".defaultErrnoRet"))
    for i, arch in enumerate(_strlist(s, "architectures", fld + ".architectures")):
        af = f"{fld}.architectures[{i}]"
        if arch not in SECCOMP_ARCHES:
            raise InvalidSpec(af, f"unknown architecture {arch!r}")
        name = SECCOMP_ARCHES[arch]
        if not _seccomp.arch_known(name):
            raise InvalidSpec(af, f"{arch} is unknown to libseccomp "
                              f"{'.'.join(map(str, _seccomp.version()))}")
        if name not in out.architectures:
            out.architectures.append(name)
    for i, flag in enumerate(_strlist(s, "flags", fld + ".flags")):
        if flag == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV":
            raise InvalidSpec(f"{fld}.flags[{i}]", f"{flag} applies to a seccomp user "
                              "notification listener, which barerun does not support")
        if flag not in SECCOMP_FLAGS:
            raise InvalidSpec(f"{fld}.flags[{i}]", f"unknown seccomp flag {flag!r}")
        out.flags.append(flag)
    for i, sc in enumerate(_get(s, "syscalls", list, fld + ".syscalls", [])):
        sf = f"{fld}.syscalls[{i}]"
        names = _strlist(sc, "names", sf + ".names")
        if not names:
            raise InvalidSpec(sf + ".names", "must list at least one syscall")
        rule = SeccompSyscall(names=names, action=_seccomp_action(sc, "action", sf + ".action"),
                              errno_ret=_errno_ret(sc, "errnoRet", sf + ".errnoRet"), field=sf)
        for j, a in enumerate(_get(sc, "args", list, sf + ".args", [])):
            af = f"{sf}.args[{j}]"
            index = _get(a, "index", int, af + ".index")
            if index is None or not 0 <= index < _seccomp.MAX_ARGS:
                raise InvalidSpec(af + ".index", f"must be an argument number 0..5, not {index!r}")
            op = _get(a, "op", str, af + ".op")
            if op not in _seccomp.CMP:
                raise InvalidSpec(af + ".op", f"unknown seccomp comparison {op!r}")
            rule.args.append(SeccompArg(index=index, value=_u64(a, "value", af + ".value"),
                                        value_two=_u64(a, "valueTwo", af + ".valueTwo"), op=op))
        out.syscalls.append(rule)
    return out
