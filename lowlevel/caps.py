"""Capabilities and process controls, through python-prctl.

The five capability sets of a process: bounding (what can ever be gained),
permitted, effective, inheritable, and ambient (kept across execve for a
non-root user).  Names are the kernel's, "CAP_SYS_ADMIN" etc.
"""

from __future__ import annotations

import errno

import prctl

from ._ffi import lib
from ._proc import status_fields
from .tracing import check, error, trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

# prctl(2) options for the bounding set (stable kernel ABI since 2.6.25);
# called directly so that capabilities newer than python-prctl's table work
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24

_LAST: int | None = None


def last_cap() -> int:
    """The highest capability number the running kernel knows."""
    global _LAST
    if _LAST is None:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            _LAST = int(f.read())
    return _LAST


# capability name -> number, python-prctl's table plus newer kernel ones
NAMES: dict[str, int] = {
    "CAP_" + n.upper(): v for n, v in zip(prctl.ALL_CAP_NAMES, prctl.ALL_CAPS, strict=True)
    if not n.startswith("unknown") and n != "last_cap"}
for _name, _num in (("CAP_PERFMON", 38), ("CAP_BPF", 39), ("CAP_CHECKPOINT_RESTORE", 40)):
    NAMES.setdefault(_name, _num)
NUMBERS: dict[int, str] = {v: k for k, v in NAMES.items()}


def number(name: str) -> int:
    """The number of a capability name; ValueError for an unknown one."""
    try:
        return NAMES[name]
    except KeyError:
        raise ValueError(f"unknown capability {name!r}") from None


def _nums(names: Iterable[str]) -> list[int]:
    return sorted({number(n) for n in names})


def bounding_drop(keep: Iterable[str]) -> None:
    """Drop every capability not in ``keep`` from the bounding set
    (needs CAP_SETPCAP in the effective set)."""
    keepn = set(_nums(keep))
    for cap in range(last_cap() + 1):
        if cap not in keepn:
            trace("prctl", op="PR_CAPBSET_DROP", cap=NUMBERS.get(cap, cap))
            check(lib.barerun_prctl(PR_CAPBSET_DROP, cap, 0, 0, 0),
                  f"prctl PR_CAPBSET_DROP {NUMBERS.get(cap, cap)}")


def bounding_has(name: str) -> bool:
    """Whether capability ``name`` is in this process's bounding set."""
    n = number(name)
    return bool(check(lib.barerun_prctl(PR_CAPBSET_READ, n, 0, 0, 0),
                      f"prctl PR_CAPBSET_READ {name}"))


def set_caps(*, effective: Collection[str], permitted: Collection[str],
             inheritable: Collection[str]) -> None:
    """capset(2) of the effective, permitted and inheritable sets."""
    e, p, i = _nums(effective), _nums(permitted), _nums(inheritable)
    trace("capset", effective=[NUMBERS.get(c) for c in e],
          permitted=[NUMBERS.get(c) for c in p], inheritable=[NUMBERS.get(c) for c in i])
    top = min(last_cap(), prctl.CAP_LAST_CAP)
    beyond = [c for c in (*e, *p, *i) if c > top]
    if beyond:
        unknown = ", ".join(NUMBERS.get(c, str(c)) for c in sorted(set(beyond)))
        raise ValueError(f"capset: {unknown} unknown to this kernel or to python-prctl")
    every = range(top + 1)
    try:
        prctl.set_caps(
            ([c for c in every if c in e], prctl.CAP_EFFECTIVE, True),
            ([c for c in every if c not in e], prctl.CAP_EFFECTIVE, False),
            ([c for c in every if c in p], prctl.CAP_PERMITTED, True),
            ([c for c in every if c not in p], prctl.CAP_PERMITTED, False),
            ([c for c in every if c in i], prctl.CAP_INHERITABLE, True),
            ([c for c in every if c not in i], prctl.CAP_INHERITABLE, False),
        )
    except OSError as exc:
        # EPERM: a permitted capability we do not hold, or an inheritable
        # one beyond the permitted/bounding sets without CAP_SETPCAP
        held = get_caps()
        extra = sorted((set(effective) | set(permitted)) - held["permitted"])
        hint = f" (not permitted now: {', '.join(extra)})" if extra else ""
        raise error(exc.errno, f"capset effective={_short(e)} permitted={_short(p)} "
                               f"inheritable={_short(i)}{hint}") from None
    if last_cap() > top:
        # the kernel knows capabilities python-prctl cannot name: they must
        # not silently stay raised
        now = get_caps()
        left = {c for c in range(top + 1, last_cap() + 1)
                for k in ("effective", "permitted", "inheritable")
                if NUMBERS.get(c, f"CAP_{c}") in now[k]}
        if left:
            raise error(errno.ENOTSUP, f"capset: cannot drop capabilities {sorted(left)} "
                                       f"(newer than python-prctl {prctl.CAP_LAST_CAP})")


def _short(nums: Iterable[int]) -> str:
    """"chown,kill" for a message (numbers for unnamed capabilities)."""
    return ",".join(NUMBERS[c][4:].lower() if c in NUMBERS else str(c) for c in nums) or "-"


def get_caps(pid: int | str = "self") -> dict[str, set[str]]:
    """The five sets of a process as names, read from /proc/<pid>/status."""
    out: dict[str, set[str]] = {}
    keys = {"CapInh": "inheritable", "CapPrm": "permitted", "CapEff": "effective",
            "CapBnd": "bounding", "CapAmb": "ambient"}
    for k, v in status_fields(pid).items():
        if k in keys:
            mask = int(v, 16)
            out[keys[k]] = {NUMBERS.get(c, f"CAP_{c}") for c in range(64) if mask >> c & 1}
    return out


def ambient_clear() -> None:
    """Empty the ambient set."""
    trace("prctl", op="PR_CAP_AMBIENT_CLEAR_ALL")
    check(lib.barerun_prctl(lib.PR_CAP_AMBIENT, lib.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
          "prctl PR_CAP_AMBIENT_CLEAR_ALL")


def ambient_raise(names: Iterable[str]) -> None:
    """Raise capabilities in the ambient set (each must be permitted and inheritable).

    A change of uid from 0 to non-zero (setuid/setresuid) clears the
    ambient set, even with keepcaps: switch user first, then set the
    capabilities and raise the ambient ones, then execve.
    """
    for c in _nums(names):
        trace("prctl", op="PR_CAP_AMBIENT_RAISE", cap=NUMBERS.get(c))
        check(lib.barerun_prctl(lib.PR_CAP_AMBIENT, lib.PR_CAP_AMBIENT_RAISE, c, 0, 0),
              f"prctl PR_CAP_AMBIENT_RAISE {NUMBERS.get(c, c)}")


# --- process controls (prctl) -------------------------------------------

def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: execve can never grant more privileges."""
    trace("prctl", op="PR_SET_NO_NEW_PRIVS")
    prctl.set_no_new_privs(1)


def get_no_new_privs() -> bool:
    return bool(prctl.get_no_new_privs())


def set_keepcaps(on: bool = True) -> None:
    """PR_SET_KEEPCAPS: keep permitted caps across setuid to non-root."""
    trace("prctl", op="PR_SET_KEEPCAPS", value=int(on))
    prctl.set_keepcaps(bool(on))


def get_keepcaps() -> bool:
    return bool(prctl.get_keepcaps())


def set_pdeathsig(sig: int) -> None:
    """PR_SET_PDEATHSIG: signal sent to us when our parent thread dies."""
    trace("prctl", op="PR_SET_PDEATHSIG", signal=int(sig))
    prctl.set_pdeathsig(int(sig))


def get_pdeathsig() -> int:
    return prctl.get_pdeathsig()


def set_child_subreaper(on: bool = True) -> None:
    """PR_SET_CHILD_SUBREAPER: orphaned descendants are re-parented to us."""
    trace("prctl", op="PR_SET_CHILD_SUBREAPER", value=int(on))
    prctl.set_child_subreaper(bool(on))


def get_child_subreaper() -> bool:
    return bool(prctl.get_child_subreaper())


def set_dumpable(on: bool) -> None:
    """PR_SET_DUMPABLE: when off, /proc/<pid> of this process is owned by
    root and ptrace/proc-fd access from a container is refused."""
    trace("prctl", op="PR_SET_DUMPABLE", value=int(on))
    prctl.set_dumpable(bool(on))


def get_dumpable() -> bool:
    return bool(prctl.get_dumpable())


def set_process_title(title: str) -> None:
    """PR_SET_NAME (/proc/<pid>/comm) and the argv area (/proc/<pid>/cmdline).

    A forked runtime process shows the caller's command line to anyone who
    can read /proc, the container included, until it execs.
    """
    trace("prctl", op="PR_SET_NAME", name=title)
    prctl.set_name(title[:15])
    prctl.set_proctitle(title)
