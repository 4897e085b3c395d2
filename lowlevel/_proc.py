"""Reading /proc/<pid>/status, shared by the modules that report on it."""

from ._trace import proc_error


def status_fields(pid="self"):
    """/proc/<pid>/status as {field: value text}; ESRCH names a gone pid."""
    path = f"/proc/{pid}/status"
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError as exc:
        raise proc_error(exc.errno, pid, f"read {path}") from None
    out = {}
    for line in lines:
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out
