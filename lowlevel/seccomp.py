"""seccomp filters through libseccomp: a default action, rules per syscall
(optionally on its arguments), the architectures the filter covers, then
one load into the kernel (seccomp(SECCOMP_SET_MODE_FILTER)).

A loaded filter cannot be removed: it applies to this thread and to every
process it forks or execs.  Loading one needs either no_new_privs set or
CAP_SYS_ADMIN in the effective set.  libseccomp never sets no_new_privs
itself here (SCMP_FLTATR_CTL_NNP is 0): whether to set it is the caller's
decision (caps.set_no_new_privs).

Actions are libseccomp's 32-bit values: ALLOW, LOG, TRAP, KILL_THREAD,
KILL_PROCESS, act_errno(err), act_trace(msg).  Comparison operators are
the CMP table, keyed by libseccomp's names ("SCMP_CMP_EQ", ...).
Architectures are libseccomp's names ("x86_64", "x86", "x32", "aarch64").
Errors are OSError(errno, "seccomp <what> <which>: <strerror>").
"""

from __future__ import annotations

import errno
import os

from ._ffi import ffi, lib
from .tracing import error, trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Self

ALLOW: int = lib.SCMP_ACT_ALLOW
LOG: int = lib.SCMP_ACT_LOG
TRAP: int = lib.SCMP_ACT_TRAP
KILL_THREAD: int = lib.SCMP_ACT_KILL_THREAD
KILL_PROCESS: int = lib.SCMP_ACT_KILL_PROCESS
NOTIFY: int = lib.SCMP_ACT_NOTIFY

CMP: dict[str, int] = {
    "SCMP_CMP_NE": lib.SCMP_CMP_NE,
    "SCMP_CMP_LT": lib.SCMP_CMP_LT,
    "SCMP_CMP_LE": lib.SCMP_CMP_LE,
    "SCMP_CMP_EQ": lib.SCMP_CMP_EQ,
    "SCMP_CMP_GE": lib.SCMP_CMP_GE,
    "SCMP_CMP_GT": lib.SCMP_CMP_GT,
    "SCMP_CMP_MASKED_EQ": lib.SCMP_CMP_MASKED_EQ,
}
_CMP_NAMES = {v: k for k, v in CMP.items()}

# the filter attributes a caller may set (Filter.set_attr)
ATTRS: dict[str, int] = {
    "CTL_NNP": lib.SCMP_FLTATR_CTL_NNP,
    "CTL_TSYNC": lib.SCMP_FLTATR_CTL_TSYNC,
    "CTL_LOG": lib.SCMP_FLTATR_CTL_LOG,
    "CTL_SSB": lib.SCMP_FLTATR_CTL_SSB,
    "ACT_BADARCH": lib.SCMP_FLTATR_ACT_BADARCH,
}

MAX_ARGS = 6  # a syscall has at most six arguments
_U64 = 2**64


def act_errno(err: int) -> int:
    """The action "fail the syscall with errno ``err``" (0..65535)."""
    return lib.barerun_scmp_act_errno(_u16(err, "errno"))


def act_trace(msg: int = 0) -> int:
    """The action "notify a ptrace tracer with ``msg``" (0..65535; without a
    tracer the syscall fails with ENOSYS)."""
    return lib.barerun_scmp_act_trace(_u16(msg, "trace message"))


def _u16(v: object, what: str) -> int:
    if not isinstance(v, int) or not 0 <= v <= 0xFFFF:
        raise OSError(errno.EINVAL, f"seccomp action: {what} {v!r} is not in 0..65535")
    return v


def action_name(action: int) -> str:
    """"SCMP_ACT_ERRNO(1)", "SCMP_ACT_ALLOW", ... for a message or a trace."""
    fixed = {ALLOW: "SCMP_ACT_ALLOW", LOG: "SCMP_ACT_LOG", TRAP: "SCMP_ACT_TRAP",
             KILL_THREAD: "SCMP_ACT_KILL_THREAD", KILL_PROCESS: "SCMP_ACT_KILL_PROCESS",
             NOTIFY: "SCMP_ACT_NOTIFY"}
    if action in fixed:
        return fixed[action]
    if action & 0xFFFF0000 == act_errno(0):
        return f"SCMP_ACT_ERRNO({action & 0xFFFF})"
    if action & 0xFFFF0000 == act_trace(0):
        return f"SCMP_ACT_TRACE({action & 0xFFFF})"
    return hex(action)


def version() -> tuple[int, int, int]:
    """libseccomp's version as (major, minor, micro)."""
    v = lib.seccomp_version()
    return (v.major, v.minor, v.micro)


def arch_token(name: str) -> int | None:
    """libseccomp's token for an architecture name, or None if unknown."""
    token = lib.seccomp_arch_resolve_name(name.encode())
    return token or None


def arch_known(name: str) -> bool:
    return arch_token(name) is not None


def syscall_number(name: str) -> int | None:
    """The number of syscall ``name`` on the native architecture (negative
    for a "pseudo syscall" that exists only on other architectures), or
    None when libseccomp does not know the name."""
    num = lib.seccomp_syscall_resolve_name(name.encode())
    return None if num == lib.__NR_SCMP_ERROR else num


def mode(pid: int | str = "self") -> int:
    """The seccomp mode of a process (/proc/<pid>/status "Seccomp:"):
    0 none, 1 strict, 2 filter."""
    from ._proc import status_fields
    return int(status_fields(pid).get("Seccomp", "0").split()[0])


def _check(ret: int, what: str) -> int:
    """libseccomp returns -errno on failure."""
    if ret < 0:
        raise error(-ret, what)
    return ret


class Filter:
    """A seccomp filter under construction (a libseccomp context).

    ``Filter(act_errno(errno.EPERM))``, then ``add_arch``/``add_rule``, then
    ``load()``.  The context is released by ``release()`` (or the ``with``
    block, or garbage collection); a loaded filter stays in the kernel.
    """

    _ctx: Any  # the scmp_filter_ctx, None once released
    default_action: int

    def __init__(self, default_action: int) -> None:
        trace("seccomp_init", default_action=action_name(default_action))
        ctx = lib.seccomp_init(default_action)
        if ctx == ffi.NULL:
            raise error(errno.EINVAL, f"seccomp init default action {action_name(default_action)}")
        self._ctx = ctx
        self.default_action = default_action
        # no_new_privs is the caller's decision, not a side effect of load()
        try:
            self.set_attr("CTL_NNP", 0)
        except OSError:
            self.release()
            raise
        # report the kernel's own errno from load(), not ECANCELED
        lib.seccomp_attr_set(ctx, lib.SCMP_FLTATR_API_SYSRAWRC, 1)

    def _live(self) -> Any:
        if self._ctx is None:
            raise OSError(errno.EBADF, "seccomp: the filter context was released")
        return self._ctx

    def set_attr(self, name: str, value: int) -> None:
        """Set a filter attribute: "CTL_NNP", "CTL_TSYNC", "CTL_LOG" (log
        every action but ALLOW), "CTL_SSB" (no speculative store bypass
        mitigation), "ACT_BADARCH" (action for a foreign architecture)."""
        try:
            attr = ATTRS[name]
        except KeyError:
            raise OSError(errno.EINVAL, f"seccomp attr set {name}: unknown attribute") from None
        trace("seccomp_attr_set", attr=name, value=value)
        _check(lib.seccomp_attr_set(self._live(), attr, value), f"seccomp attr set {name}={value}")

    def add_arch(self, name: str) -> bool:
        """Make the filter cover architecture ``name`` (the native one is
        always there).  True if added, False if it was there already."""
        token = arch_token(name)
        if token is None:
            raise OSError(errno.EINVAL, f"seccomp arch add {name}: {os.strerror(errno.EINVAL)} "
                                        f"(an architecture libseccomp "
                                        f"{'.'.join(map(str, version()))} does not know)")
        trace("seccomp_arch_add", arch=name)
        ret = lib.seccomp_arch_add(self._live(), token)
        if ret == -errno.EEXIST:
            return False
        _check(ret, f"seccomp arch add {name}")
        return True

    def add_rule(self, action: int, syscall: str,
                 args: Sequence[Sequence[int | str]] = ()) -> bool:
        """Apply ``action`` to ``syscall`` (a name) when every comparison in
        ``args`` holds: (index, op, value, value_two) with op a CMP name or
        value; for SCMP_CMP_MASKED_EQ ``value`` is the mask and
        ``value_two`` the value the masked argument must equal.

        Returns False, adding nothing, when libseccomp does not know the
        syscall (profiles list syscalls of other kernels and
        architectures); the caller chooses to skip it or fail.
        """
        num = syscall_number(syscall)
        if num is None:
            trace("seccomp_rule_add", syscall=syscall, skipped="unknown syscall")
            return False
        what = f"seccomp rule add {syscall}"
        cmps = ffi.new("struct scmp_arg_cmp[]", max(len(args), 1))
        shown: list[tuple[int, str, int | str, int | str]] = []
        for i, arg in enumerate(args):
            arg = tuple(arg)
            if len(arg) == 3:
                arg += (0,)
            if len(arg) != 4:
                raise OSError(errno.EINVAL, f"{what}: a comparison is (index, op, value"
                                            f"[, value_two]), not {arg!r}")
            index, op, value, value_two = arg
            if isinstance(op, str):
                if op not in CMP:
                    raise OSError(errno.EINVAL, f"{what}: unknown comparison {op!r}")
                op = CMP[op]
            if op not in _CMP_NAMES:
                raise OSError(errno.EINVAL, f"{what}: unknown comparison {op!r}")
            if not (isinstance(index, int) and 0 <= index < MAX_ARGS):
                raise OSError(errno.EINVAL, f"{what}: argument index {index!r} is not in 0..5")
            for v in (value, value_two):
                if not (isinstance(v, int) and 0 <= v < _U64):
                    raise OSError(errno.EINVAL, f"{what}: argument {index} value {v!r} "
                                                "is not a 64-bit unsigned integer")
            cmps[i].arg = index
            cmps[i].op = op
            cmps[i].datum_a = value
            cmps[i].datum_b = value_two
            shown.append((index, _CMP_NAMES[op], value, value_two))
        trace("seccomp_rule_add", syscall=syscall, nr=num, action=action_name(action),
              **({"args": shown} if shown else {}))
        ret = lib.seccomp_rule_add_array(self._live(), action, num, len(args), cmps)
        if ret == -errno.EACCES and action == self.default_action:
            raise OSError(errno.EACCES, f"{what}: {os.strerror(errno.EACCES)} (the rule's action "
                                        f"{action_name(action)} is the default action)")
        _check(ret, what)
        return True

    def load(self) -> None:
        """Load the filter into the kernel for this thread (and all it
        forks and execs from now on)."""
        trace("seccomp_load", default_action=action_name(self.default_action))
        ret = lib.seccomp_load(self._live())
        if ret == -errno.EACCES:
            raise OSError(errno.EACCES, "seccomp load filter: Permission denied (without "
                                        "no_new_privs loading a filter needs CAP_SYS_ADMIN)")
        _check(ret, "seccomp load filter")

    def release(self) -> None:
        if self._ctx is not None:
            lib.seccomp_release(self._ctx)
            self._ctx = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        if getattr(self, "_ctx", None) is not None:
            self.release()
