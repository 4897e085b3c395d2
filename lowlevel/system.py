"""Small per-namespace and per-process settings: hostname, domainname,
rlimits, sysctl files, oom_score_adj."""

from __future__ import annotations

import errno
import math
import os
import resource

from ._ffi import lib
from .tracing import check, error, proc_error, trace

RLIMITS: dict[str, int] = {name: getattr(resource, name) for name in dir(resource)
                           if name.startswith("RLIMIT_")}


def sethostname(name: str) -> None:
    """sethostname(2): the hostname of the current UTS namespace."""
    trace("sethostname", name=name)
    b = name.encode()
    check(lib.sethostname(b, len(b)), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    """setdomainname(2): the NIS domain name of the current UTS namespace."""
    trace("setdomainname", name=name)
    b = name.encode()
    check(lib.setdomainname(b, len(b)), f"setdomainname {name!r}")


def getdomainname() -> str:
    """The NIS domain name of the current UTS namespace."""
    return get_sysctl("kernel.domainname")


def rlimit_number(name: str) -> int:
    try:
        return RLIMITS[name]
    except KeyError:
        raise ValueError(f"unknown rlimit {name!r}") from None


def _limit(v: int) -> float:
    return math.inf if v == resource.RLIM_INFINITY else v


def _fmt(v: int) -> str:
    return "unlimited" if v == resource.RLIM_INFINITY else str(v)


def setrlimit(name: str, soft: int, hard: int, pid: int = 0) -> None:
    """prlimit(2) of ``pid`` (0: this process).

    Without CAP_SYS_RESOURCE a hard limit can only be lowered; raising it
    fails with EPERM, and the error says which limit and what the hard
    limit currently is.  ``resource.RLIM_INFINITY`` means unlimited.
    """
    res = rlimit_number(name)
    what = (f"setrlimit {name}{f' of pid {pid}' if pid else ''} "
            f"to soft={_fmt(soft)} hard={_fmt(hard)}")
    trace("prlimit", pid=pid, resource=name, soft=soft, hard=hard)
    if _limit(soft) > _limit(hard):
        raise OSError(errno.EINVAL, f"{what}: the soft limit is above the hard limit")
    try:
        resource.prlimit(pid, res, (soft, hard))
    except (ValueError, OverflowError):  # Python's word for EINVAL, or a bad number
        raise error(errno.EINVAL, what) from None
    except OSError as exc:
        if exc.errno == errno.EPERM:
            try:
                cur_hard = resource.prlimit(pid, res)[1]
            except OSError:
                cur_hard = None
            if cur_hard is not None and _limit(hard) > _limit(cur_hard):
                raise OSError(errno.EPERM,
                              f"{what}: the hard limit is {_fmt(cur_hard)} and raising "
                              f"it needs CAP_SYS_RESOURCE") from None
        raise error(exc.errno, what) from None


def getrlimit(name: str, pid: int = 0) -> tuple[int, int]:
    """(soft, hard) of rlimit ``name`` of ``pid`` (0: this process)."""
    res = rlimit_number(name)
    try:
        return resource.prlimit(pid, res)
    except OSError as exc:
        raise error(exc.errno, f"getrlimit {name}{f' of pid {pid}' if pid else ''}") from None


def write_proc_file(path: str, value: object) -> None:
    """Write a /proc or /proc/sys file (sysctl, oom_score_adj ...)."""
    trace("write", path=path, value=value)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise error(exc.errno, f"open {path}") from None
    try:
        os.write(fd, str(value).encode())
    except OSError as exc:
        raise error(exc.errno, f"write {value!r} to {path}") from None
    finally:
        os.close(fd)


def sysctl_path(key: str) -> str:
    """The /proc/sys file of a sysctl key.

    "net.ipv4.ip_forward" separates with dots; a key holding a "/"
    ("net/ipv4/conf/eth0.100/forwarding") separates with slashes and keeps
    its dots, as sysctl(8) does.  Keys come from a container spec: empty,
    "." and ".." components are refused, so the path stays in /proc/sys.
    """
    parts = key.strip("/").split("/") if "/" in key else key.split(".")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid sysctl key {key!r}")
    return "/proc/sys/" + "/".join(parts)


def set_sysctl(key: str, value: object) -> None:
    """A sysctl such as "net.ipv4.ip_forward" through /proc/sys."""
    write_proc_file(sysctl_path(key), value)


def get_sysctl(key: str) -> str:
    """The current value of a sysctl (stripped)."""
    path = sysctl_path(key)
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as exc:
        raise error(exc.errno, f"read {path}") from None


def set_oom_score_adj(value: int, pid: int | str = "self") -> None:
    """/proc/<pid>/oom_score_adj: -1000 (never killed) .. 1000."""
    path = f"/proc/{pid}/oom_score_adj"
    try:
        write_proc_file(path, value)
    except OSError as exc:
        raise proc_error(exc.errno, pid, f"set oom_score_adj {value!r} of pid {pid}") from None


def link_up(name: str = "lo") -> None:
    """Bring a network interface up (SIOCGIFFLAGS/SIOCSIFFLAGS on a socket,
    IFF_UP), in the current network namespace: a new one starts with `lo`
    down."""
    import fcntl
    import socket
    import struct
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    trace("ioctl", op="SIOCSIFFLAGS", interface=name, flags="IFF_UP")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            ifr = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", name.encode(), 0))
            flags = struct.unpack("16sH14x", ifr)[1]
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(),
                                                              flags | IFF_UP))
        except OSError as exc:
            raise error(exc.errno, f"bring interface {name} up") from None
