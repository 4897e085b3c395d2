"""linux.seccomp: from the checked spec (spec.Seccomp) to a libseccomp
filter, and the moment it is loaded.

The filter is built in the runtime process before the fork (a rule
libseccomp refuses is an InvalidSpec naming its field, and nothing has been
made yet); the forked child inherits it and only loads it.  When it is
loaded follows runc:

- process.noNewPrivileges false: loading a filter needs CAP_SYS_ADMIN, so
  it is loaded before the capabilities are dropped (init.prepare_process);
  every syscall the runtime makes after that (setresuid, capset, prctl,
  the report, the wait for `start`, execve) goes through it;
- process.noNewPrivileges true: no_new_privs is set with the other process
  settings and the filter is loaded as late as possible, just before
  execve, so it sees as few of the runtime's own syscalls as possible.

As runc: a syscall libseccomp does not know (profiles list syscalls of
other kernels) is skipped; a rule whose action is the default action is
redundant and skipped; ERRNO and TRACE without errnoRet use EPERM.
"""

import errno

from lowlevel import seccomp as _seccomp

from .errors import InvalidSpec

_FIXED = {
    "SCMP_ACT_KILL": _seccomp.KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": _seccomp.KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _seccomp.KILL_PROCESS,
    "SCMP_ACT_TRAP": _seccomp.TRAP,
    "SCMP_ACT_ALLOW": _seccomp.ALLOW,
    "SCMP_ACT_LOG": _seccomp.LOG,
}
# spec flag -> filter attribute (TSYNC: the init and exec'd processes have
# one thread, it changes nothing but is what the spec asked)
_FLAG_ATTRS = {
    "SECCOMP_FILTER_FLAG_TSYNC": "CTL_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG": "CTL_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": "CTL_SSB",
}


def action(name, errno_ret=None):
    """libseccomp's value of a (checked) spec action."""
    if name == "SCMP_ACT_ERRNO":
        return _seccomp.act_errno(errno.EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return _seccomp.act_trace(errno.EPERM if errno_ret is None else errno_ret)
    return _FIXED[name]


def build(sc):
    """A lowlevel seccomp.Filter for spec.Seccomp ``sc`` (not loaded)."""
    default = action(sc.default_action, sc.default_errno_ret)
    try:
        f = _seccomp.Filter(default)
    except OSError as exc:
        raise InvalidSpec("linux.seccomp.defaultAction", str(exc)) from None
    try:
        for i, arch in enumerate(sc.architectures):
            try:
                f.add_arch(arch)
            except OSError as exc:
                raise InvalidSpec(f"linux.seccomp.architectures[{i}]", str(exc)) from None
        for flag in sc.flags:
            try:
                f.set_attr(_FLAG_ATTRS[flag], 1)
            except OSError as exc:
                raise InvalidSpec("linux.seccomp.flags", str(exc)) from None
        for rule in sc.syscalls:
            act = action(rule.action, rule.errno_ret)
            if act == default:
                continue
            args = [(a.index, a.op, a.value, a.value_two) for a in rule.args]
            # libseccomp refuses two comparisons of one argument in a rule:
            # as runc, they become one rule each (so they are ORed)
            indexes = [a[0] for a in args]
            groups = [[a] for a in args] if len(set(indexes)) < len(indexes) else [args]
            for name in rule.names:
                for group in groups:
                    try:
                        if not f.add_rule(act, name, group):
                            break  # unknown to libseccomp: skipped
                    except OSError as exc:
                        raise InvalidSpec(rule.field, str(exc)) from None
    except BaseException:
        f.release()
        raise
    return f


def load(f):
    """Load the built filter into this process (the forked child)."""
    f.load()
