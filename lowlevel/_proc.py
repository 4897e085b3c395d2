"""Reading /proc/<pid>/status, shared by the modules that report on it."""

from __future__ import annotations

from .tracing import proc_error


def status_fields(pid: int | str = "self") -> dict[str, str]:
    """/proc/<pid>/status as {field: value text}; ESRCH names a gone pid."""
    path = f"/proc/{pid}/status"
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError as exc:
        raise proc_error(exc.errno, pid, f"read {path}") from None
    out: dict[str, str] = {}
    for line in lines:
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out
