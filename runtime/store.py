"""The state store: one directory per container under the root.

    <root>/<id>/state.json   what barerun knows of the container (atomic:
                             written to a temp file, then renamed)
    <root>/<id>/lock         flock()ed by any process that changes it
    <root>/<id>/exec.fifo    the init waits on it until `start`

The id is checked against a strict pattern before any path is built.
"""

import fcntl
import json
import os
import re

from .errors import AlreadyExists, ContainerError, InvalidId, NotFound

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
DEFAULT_ROOT = "/run/barerun"


def rfc3339_now():
    """Now as RFC 3339 with nanoseconds, from one clock reading (runc's form)."""
    import time
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        f".{ns % 1_000_000_000:09d}Z"


def validate_id(cid):
    if not isinstance(cid, str) or not ID_RE.fullmatch(cid):
        shown = cid if isinstance(cid, str) and len(cid) <= 140 else f"{str(cid)[:40]}..."
        raise InvalidId(f"invalid container id {shown!r}: an id is 1-128 characters of "
                        "A-Z a-z 0-9 _ . - and starts with a letter or digit")
    return cid


def write_file(path, data, mode=0o644):
    """Replace ``path`` atomically with ``data``: a temp file beside it,
    then rename(2).  The temp file is opened O_CREAT|O_EXCL|O_NOFOLLOW, so
    a symlink (or a file) planted under its name by whoever can write that
    directory is never followed or truncated; it is removed (unlink never
    follows) and the open tried once more.  rename replaces ``path`` itself,
    a symlink there included, without following it."""
    tmp = f"{path}.tmp{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Store:
    """The state directory of one container id."""

    def __init__(self, root, cid):
        self.root = os.path.abspath(root or DEFAULT_ROOT)
        self.id = validate_id(cid)
        self.dir = os.path.join(self.root, cid)
        self.state_path = os.path.join(self.dir, "state.json")
        self.fifo_path = os.path.join(self.dir, "exec.fifo")
        self._lock_fd = None
        self._depth = 0

    def create(self):
        """Make the directory; AlreadyExists if the id is taken."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container {self.id} already exists") from None

    def exists(self):
        return os.path.isdir(self.dir)

    def lock(self):
        """Take the per-container lock (blocks while another process holds
        it).  Reentrant: each lock() needs its unlock()."""
        if self._lock_fd is not None:
            self._depth += 1
            return self
        try:
            fd = os.open(os.path.join(self.dir, "lock"),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise NotFound(f"container {self.id} does not exist") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd
        self._depth = 1
        return self

    @property
    def lock_fd(self):
        return self._lock_fd

    def unlock(self, all=False):
        if self._lock_fd is None:
            return
        self._depth -= 1
        if all or self._depth <= 0:
            os.close(self._lock_fd)
            self._lock_fd = None
            self._depth = 0

    def __enter__(self):
        return self.lock()

    def __exit__(self, *exc):
        self.unlock()

    def read(self):
        try:
            with open(self.state_path) as f:
                return json.load(f)
        except FileNotFoundError:
            if not self.exists():
                raise NotFound(f"container {self.id} does not exist") from None
            # a runtime killed before its first state write: the directory
            # exists but holds no state; delete --force removes it
            return {"id": self.id, "status": "stopped", "pid": 0, "incomplete": True}
        except ValueError:
            # no usable state (state.json is written with a rename, so this
            # is not a half-written file); delete --force removes it
            return {"id": self.id, "status": "stopped", "pid": 0, "incomplete": True}

    def write(self, state):
        """Atomically replace state.json (temp file + rename)."""
        write_file(self.state_path, json.dumps(state, indent=1, sort_keys=True).encode(),
                   0o600)

    def remove(self):
        self.unlock(all=True)
        import shutil  # only here: a measurable part of every CLI start
        shutil.rmtree(self.dir, ignore_errors=True)


def list_ids(root):
    root = os.path.abspath(root or DEFAULT_ROOT)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise ContainerError(f"state root {root} is not a directory") from None
    except OSError as exc:
        raise ContainerError(f"state root {root}: {exc.strerror}") from None
    return sorted(n for n in names if ID_RE.fullmatch(n)
                  and os.path.isdir(os.path.join(root, n)))
