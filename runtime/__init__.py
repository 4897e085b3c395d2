"""barerun: an OCI container runtime that talks to the Linux kernel directly.

The public API (containerd's original runtime Container interface)::

    import runtime
    c = runtime.create("web", "/path/to/bundle", io=runtime.IO(stdout="/tmp/out"))
    c.start(); c.state(); c.kill(15); c.wait(); c.delete()

Everything not exported here is private.
"""

from .container import ConsoleSize, Container, ContainerInfo, ContainerRecord, list_containers, load
from .create import create as _create  # `create` below is the API
from .errors import (
    AlreadyExists,
    CheckpointError,
    ChildError,
    ContainerError,
    InvalidId,
    InvalidSpec,
    InvalidState,
    NotFound,
)
from .io import IO
from .status import State, Status
from .store import DEFAULT_ROOT
from .version import VERSION

__version__ = VERSION

# imported on first use: a CLI call that does not exec or checkpoint should
# not pay for loading those modules
_LAZY = {"CheckpointOpts": "checkpoint", "ExecOpts": "exec", "Process": "exec"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")


def create(id: str, bundle: str, *, root: str = DEFAULT_ROOT, io: IO | None = None,
           checkpoint: str | None = None, **kwargs: object) -> Container:
    """Create container ``id`` from the OCI bundle at ``bundle``.

    Returns a Container in CREATED status: namespaces made, root pivoted,
    mounts and cgroups in place, its init waiting just before execve.
    ``io`` is an IO (paths, fds or None for /dev/null).  With
    ``checkpoint`` (a checkpoint directory) the container is restored from
    it on start().
    """
    return _create(id, bundle, root=root, io=io, checkpoint=checkpoint, **kwargs)


__all__ = [
    "create", "load", "list_containers", "Container", "ContainerInfo", "ContainerRecord",
    "State", "Status", "IO", "ExecOpts", "Process", "CheckpointOpts", "ConsoleSize",
    "ContainerError", "NotFound", "AlreadyExists",
    "InvalidSpec", "InvalidState", "InvalidId", "CheckpointError", "ChildError",
    "DEFAULT_ROOT",
]
