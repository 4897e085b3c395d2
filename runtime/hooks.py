"""OCI hooks: programs the spec's owner runs at fixed points of a
container's life, each given the container's state JSON on stdin.

Where each stage runs and what its failure does (the OCI runtime spec):

    prestart, createRuntime   create, in the runtime's namespaces, once the
                              init has made the container's namespaces and
                              mounts, before pivot_root (a launcher step the
                              init asks for); a failure fails create
    createContainer           the init, in the container's namespaces,
                              before pivot_root (the path resolves in the
                              runtime's mount tree); a failure fails create
    startContainer            the init, after `start`, just before the
                              program's execve (the path resolves in the
                              container); a failure ends the init (status 1)
    poststart                 `start`, in the runtime's namespaces, once the
                              program runs; a failure is a warning
    poststop                  `delete`, once the container is gone; a failure
                              is a warning

A hook runs with exactly its ``env`` and ``args`` (args[0] included), its
stdout and stderr captured (the last line of stderr goes into the error),
and is killed after ``timeout`` seconds.
"""

from __future__ import annotations

import json
import sys

from lowlevel.tracing import trace

from .errors import ContainerError

TYPE_CHECKING = False  # typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from .spec import Hook


class HookError(ContainerError):
    """A hook failed: ``fld`` names it (hooks.<stage>[i])."""

    def __init__(self, fld: str, message: str) -> None:
        self.fld = fld
        super().__init__(f"{fld}: {message}")


def state_json(cid: str, status: str, pid: int, bundle: str, annotations: dict,
               oci_version: str = "") -> str:
    """The container's state as the OCI spec has a hook read it."""
    st = {"ociVersion": oci_version or "1.0.2", "id": cid, "status": status, "pid": pid,
          "bundle": bundle}
    if annotations:
        st["annotations"] = annotations
    return json.dumps(st)


def _environ(env: list[str]) -> dict[str, str]:
    out = {}
    for item in env:
        key, eq, value = item.partition("=")
        if eq and key:
            out[key] = value
    return out


def run(hooks: list[Hook], state: str) -> None:
    """Run ``hooks`` in order, each with ``state`` on stdin; HookError for
    the first that fails (it cannot start, exits non-zero, is killed, or
    outlives its timeout)."""
    import subprocess  # only a spec with hooks pays for it
    for h in hooks:
        trace("hook", hook=h.fld, path=h.path, args=h.args, timeout=h.timeout)
        try:
            p = subprocess.Popen(h.args, executable=h.path, env=_environ(h.env),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, close_fds=True, cwd="/")
        except OSError as exc:
            raise HookError(h.fld, f"cannot run {h.path}: {exc.strerror or exc}") from None
        try:
            _out, err = p.communicate(state.encode(), timeout=h.timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise HookError(h.fld, f"{h.path} did not finish within its timeout of "
                            f"{h.timeout} s: killed") from None
        if p.returncode != 0:
            how = (f"killed by signal {-p.returncode}" if p.returncode < 0
                   else f"exit status {p.returncode}")
            last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            said = f": {last[0][:200]}" if last[0] else ""
            raise HookError(h.fld, f"{h.path}: {how}{said}")


def warn(message: str) -> None:
    """A failure the lifecycle goes on after (poststart, poststop): one
    line on stderr, as runc's warnings."""
    trace("warning", message=message)
    try:
        sys.stderr.write(f"barerun: warning: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def run_or_warn(hooks: list[Hook], state: str) -> None:
    """poststart/poststop: every hook runs; a failure is a warning."""
    for h in hooks:
        try:
            run([h], state)
        except HookError as exc:
            warn(str(exc))

